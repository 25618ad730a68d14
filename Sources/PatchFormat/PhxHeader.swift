/// The fixed 164-byte header of a `phx` patch. Layout (all integers little-endian, unsigned):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `PHXPATCH` |
/// | 8 | 2 | format version (1) |
/// | 10 | 2 | flags: bit 0 = the diff pattern is in old-context order (`DiffOrder`); bit 1 = the control stream is split (`ControlLayout`); others must be 0 |
/// | 12 | 1 | codec id (0 none, 1 zstd, 2 bzip2, 3 zlib) |
/// | 13 | 1 | codec level used (informational) |
/// | 14 | 2 | reserved, 0 |
/// | 16 | 8 | old size |
/// | 24 | 8 | new size |
/// | 32 | 32 | SHA-256 of old |
/// | 64 | 32 | SHA-256 of new |
/// | 96 | 8 | control tuple count |
/// | 104 | 8 | compressed length of the control stream |
/// | 112 | 8 | compressed length of the diff-runs stream |
/// | 120 | 8 | compressed length of the diff-literals stream |
/// | 128 | 8 | compressed length of the extra stream |
/// | 136 | 8 | diff bytes in all (sum of add lengths) |
/// | 144 | 8 | decompressed length of the diff-literals stream |
/// | 152 | 8 | decompressed length of the extra stream (sum of copy lengths) |
/// | 160 | 4 | CRC-32 of bytes 0..<160 |
///
/// The four streams follow in that order; the file ends exactly after the extra stream.
public struct PhxHeader: Equatable, Sendable {
    public static let magic: [UInt8] = Array("PHXPATCH".utf8)
    public static let currentVersion: UInt16 = 1
    public static let size = 164

    public var codec: CodecID
    public var level: UInt8
    public var oldSize: UInt64
    public var newSize: UInt64
    public var oldSHA256: [UInt8]
    public var newSHA256: [UInt8]
    public var controlCount: UInt64
    public var controlLength: UInt64
    public var runsLength: UInt64
    public var literalsLength: UInt64
    public var extraLength: UInt64
    public var diffRawLength: UInt64
    public var literalsRawLength: UInt64
    public var extraRawLength: UInt64
    /// Header flags (bit 0: `DiffOrder.contextFlag`, bit 1: `ControlLayout.splitFlag`).
    public var flags: UInt16 = 0
    /// Every flag this reader knows.
    public static let knownFlags = DiffOrder.contextFlag | ControlLayout.splitFlag

    public var diffOrder: DiffOrder { flags & DiffOrder.contextFlag != 0 ? .oldContext : .natural }
    /// Whether the control stream is in the split layout.
    public var splitControl: Bool { flags & ControlLayout.splitFlag != 0 }

    public init(codec: CodecID, level: UInt8, oldSize: UInt64, newSize: UInt64, oldSHA256: [UInt8], newSHA256: [UInt8],
                controlCount: UInt64, controlLength: UInt64, runsLength: UInt64, literalsLength: UInt64,
                extraLength: UInt64, diffRawLength: UInt64, literalsRawLength: UInt64, extraRawLength: UInt64) {
        precondition(oldSHA256.count == 32 && newSHA256.count == 32, "SHA-256 digests must be 32 bytes")
        self.codec = codec
        self.level = level
        self.oldSize = oldSize
        self.newSize = newSize
        self.oldSHA256 = oldSHA256
        self.newSHA256 = newSHA256
        self.controlCount = controlCount
        self.controlLength = controlLength
        self.runsLength = runsLength
        self.literalsLength = literalsLength
        self.extraLength = extraLength
        self.diffRawLength = diffRawLength
        self.literalsRawLength = literalsRawLength
        self.extraRawLength = extraRawLength
    }

    /// Offsets of the four streams in the patch file.
    public var controlOffset: UInt64 { UInt64(Self.size) }
    public var runsOffset: UInt64 { controlOffset + controlLength }
    public var literalsOffset: UInt64 { runsOffset + runsLength }
    public var extraOffset: UInt64 { literalsOffset + literalsLength }
    public var totalLength: UInt64 { extraOffset + extraLength }

    public func encode() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Self.size)
        out.append(contentsOf: Self.magic)
        LittleEndian.append(Self.currentVersion, to: &out)
        LittleEndian.append(flags, to: &out)
        out.append(codec.rawValue)
        out.append(level)
        LittleEndian.append(UInt16(0), to: &out)
        LittleEndian.append(oldSize, to: &out)
        LittleEndian.append(newSize, to: &out)
        out.append(contentsOf: oldSHA256)
        out.append(contentsOf: newSHA256)
        for v in [controlCount, controlLength, runsLength, literalsLength, extraLength,
                  diffRawLength, literalsRawLength, extraRawLength] {
            LittleEndian.append(v, to: &out)
        }
        LittleEndian.append(CRC32.checksum(out), to: &out)
        precondition(out.count == Self.size, "phx header encoded to \(out.count) bytes")
        return out
    }

    /// Parses and validates a header. `fileLength`, when known, must equal the header plus the four
    /// streams exactly (a shorter file is truncated, a longer one has trailing garbage).
    public static func decode(_ bytes: UnsafeRawBufferPointer, fileLength: UInt64?, limits: PatchLimits) throws -> PhxHeader {
        _ = try PatchKind.detect(bytes)
        guard bytes.count >= size else {
            throw PatchFormatError.truncated(part: "phx header", needed: UInt64(size), available: UInt64(bytes.count))
        }
        let version = LittleEndian.read(UInt16.self, from: bytes, at: 8)
        guard version == currentVersion else { throw PatchFormatError.unsupportedVersion(version) }
        let storedCRC = LittleEndian.read(UInt32.self, from: bytes, at: 160)
        let computedCRC = CRC32.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<160]))
        guard storedCRC == computedCRC else {
            throw PatchFormatError.headerChecksumMismatch(stored: storedCRC, computed: computedCRC)
        }
        let flags = LittleEndian.read(UInt16.self, from: bytes, at: 10)
        guard flags & ~Self.knownFlags == 0 else { throw PatchFormatError.unknownFlags(flags) }
        guard let codec = CodecID(rawValue: bytes[12]) else { throw PatchFormatError.unknownCodec(bytes[12]) }
        let reserved = LittleEndian.read(UInt16.self, from: bytes, at: 14)
        guard reserved == 0 else {
            throw PatchFormatError.invalidField(field: "reserved (offset 14)", value: "\(reserved)", reason: "must be 0")
        }
        func u64(_ offset: Int) -> UInt64 { LittleEndian.read(UInt64.self, from: bytes, at: offset) }
        var header = PhxHeader(
            codec: codec, level: bytes[13], oldSize: u64(16), newSize: u64(24),
            oldSHA256: Array(bytes[32..<64]), newSHA256: Array(bytes[64..<96]),
            controlCount: u64(96), controlLength: u64(104), runsLength: u64(112), literalsLength: u64(120),
            extraLength: u64(128), diffRawLength: u64(136), literalsRawLength: u64(144), extraRawLength: u64(152))
        header.flags = flags
        try header.validate(fileLength: fileLength, limits: limits)
        return header
    }

    public static func decode(_ bytes: [UInt8], fileLength: UInt64?, limits: PatchLimits) throws -> PhxHeader {
        try bytes.withUnsafeBytes { try decode($0, fileLength: fileLength, limits: limits) }
    }

    func validate(fileLength: UInt64?, limits: PatchLimits) throws {
        let signedMax = UInt64(Int64.max)
        for (name, v) in [("old size (offset 16)", oldSize), ("new size (offset 24)", newSize),
                          ("control length (offset 104)", controlLength), ("runs length (offset 112)", runsLength),
                          ("literals length (offset 120)", literalsLength), ("extra length (offset 128)", extraLength)]
        where v > signedMax {
            throw PatchFormatError.invalidField(field: name, value: "\(v)", reason: "above 2^63-1")
        }
        guard newSize <= limits.maxOutputSize else {
            throw PatchFormatError.limitExceeded(field: "declared new size", value: newSize, limit: limits.maxOutputSize)
        }
        let (rawSum, rawOverflow) = diffRawLength.addingReportingOverflow(extraRawLength)
        guard !rawOverflow && rawSum == newSize else {
            throw PatchFormatError.invalidField(
                field: "diff/extra byte counts (offsets 136, 152)", value: "\(diffRawLength) + \(extraRawLength)",
                reason: "must add up to the new size \(newSize)")
        }
        guard literalsRawLength <= diffRawLength else {
            throw PatchFormatError.invalidField(
                field: "literal byte count (offset 144)", value: "\(literalsRawLength)",
                reason: "above the diff byte count \(diffRawLength)")
        }
        // Every phx control tuple but the first writes at least one byte, so there are at most newSize + 1.
        guard controlCount <= newSize + 1 else {
            throw PatchFormatError.invalidField(
                field: "control tuple count (offset 96)", value: "\(controlCount)",
                reason: "above the new size + 1 = \(newSize + 1) (every tuple after the first writes at least one byte)")
        }
        var total = UInt64(Self.size)
        for part in [controlLength, runsLength, literalsLength, extraLength] {
            let (t, o) = total.addingReportingOverflow(part)
            guard !o else {
                throw PatchFormatError.invalidField(
                    field: "stream lengths (offsets 104-135)",
                    value: "\(controlLength)+\(runsLength)+\(literalsLength)+\(extraLength)", reason: "overflow 64 bits")
            }
            total = t
        }
        if let fileLength {
            if fileLength < total {
                throw PatchFormatError.truncated(part: "patch (header and streams)", needed: total, available: fileLength)
            }
            if fileLength > total {
                throw PatchFormatError.trailingData(location: "after the extra stream",
                                                    detail: "\(fileLength - total) bytes past the declared end at offset \(total)")
            }
        }
    }
}
