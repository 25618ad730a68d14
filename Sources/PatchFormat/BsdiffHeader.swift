/// The 32-byte header of a classic bsdiff 4.x patch:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `BSDIFF40` |
/// | 8 | 8 | compressed length of the control block (sign-magnitude) |
/// | 16 | 8 | compressed length of the diff block (sign-magnitude) |
/// | 24 | 8 | new size (sign-magnitude) |
///
/// Then three bzip2 streams: control (24-byte tuples), diff, and extra, which runs to the end of the file.
public struct BsdiffHeader: Equatable, Sendable {
    public static let magic: [UInt8] = Array("BSDIFF40".utf8)
    public static let size = 32

    public var controlLength: UInt64
    public var diffLength: UInt64
    public var newSize: UInt64

    public init(controlLength: UInt64, diffLength: UInt64, newSize: UInt64) {
        self.controlLength = controlLength
        self.diffLength = diffLength
        self.newSize = newSize
    }

    public var controlOffset: UInt64 { UInt64(Self.size) }
    public var diffOffset: UInt64 { controlOffset + controlLength }
    public var extraOffset: UInt64 { diffOffset + diffLength }

    public func encode() -> [UInt8] {
        var out = Self.magic
        SignMagnitude64.encode(Int64(controlLength), into: &out)
        SignMagnitude64.encode(Int64(diffLength), into: &out)
        SignMagnitude64.encode(Int64(newSize), into: &out)
        return out
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer, fileLength: UInt64?, limits: PatchLimits) throws -> BsdiffHeader {
        _ = try PatchKind.detect(bytes)
        guard bytes.count >= size else {
            throw PatchFormatError.truncated(part: "BSDIFF40 header", needed: UInt64(size), available: UInt64(bytes.count))
        }
        func field(_ offset: Int, _ name: String) throws -> UInt64 {
            let v = SignMagnitude64.decode(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + 8]))
            guard v >= 0 else {
                throw PatchFormatError.invalidField(field: "\(name) (offset \(offset))", value: "\(v)", reason: "negative")
            }
            return UInt64(v)
        }
        let header = BsdiffHeader(controlLength: try field(8, "control block length"),
                                  diffLength: try field(16, "diff block length"),
                                  newSize: try field(24, "new size"))
        guard header.newSize <= limits.maxOutputSize else {
            throw PatchFormatError.limitExceeded(field: "declared new size", value: header.newSize, limit: limits.maxOutputSize)
        }
        if let fileLength {
            // Both lengths are < 2^63, so the sum cannot overflow a UInt64.
            let needed = UInt64(size) + header.controlLength + header.diffLength
            guard needed <= fileLength else {
                throw PatchFormatError.truncated(part: "control and diff blocks", needed: needed, available: fileLength)
            }
        }
        return header
    }

    public static func decode(_ bytes: [UInt8], fileLength: UInt64?, limits: PatchLimits) throws -> BsdiffHeader {
        try bytes.withUnsafeBytes { try decode($0, fileLength: fileLength, limits: limits) }
    }
}
