/// The two patch formats. Both are specified byte by byte in FORMAT.md.
public enum PatchKind: String, CaseIterable, Sendable {
    /// Our own format: checksummed header, SHA-256 of old and new, choice of codec.
    case phx
    /// Classic bsdiff 4.x (`BSDIFF40`, three bzip2 streams), readable by Debian's bspatch.
    case bsdiff

    public static let magicLength = 8

    /// Detects the format from the first 8 bytes of a patch.
    public static func detect(_ magic: UnsafeRawBufferPointer) throws -> PatchKind {
        guard magic.count >= magicLength else {
            throw PatchFormatError.truncated(part: "magic", needed: UInt64(magicLength), available: UInt64(magic.count))
        }
        let m = Array(magic.prefix(magicLength))
        if m == PhxHeader.magic { return .phx }
        if m == BsdiffHeader.magic { return .bsdiff }
        throw PatchFormatError.badMagic(found: m)
    }

    public static func detect(_ magic: [UInt8]) throws -> PatchKind {
        try magic.withUnsafeBytes { try detect($0) }
    }
}

/// Limits applied while reading a patch, before anything is allocated or written.
public struct PatchLimits: Sendable, Equatable {
    /// Largest output (new file) size accepted. Default 16 GiB.
    public var maxOutputSize: UInt64

    public static let defaultMaxOutputSize: UInt64 = 16 << 30

    public init(maxOutputSize: UInt64 = PatchLimits.defaultMaxOutputSize) {
        self.maxOutputSize = maxOutputSize
    }
}
