/// The fixed 156-byte header of a bundle (a patch between two directory trees). All integers are
/// little-endian and unsigned. FORMAT.md, "Bundles", is the specification.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `PHXBUNDL` |
/// | 8 | 2 | version (1) |
/// | 10 | 2 | flags: bit 0 = full bundle (made from the empty tree; applies over anything); bit 1 = each file's diff pattern in old-context order; bit 2 = each file's control tuples in the split layout |
/// | 12 | 1 | codec id |
/// | 13 | 1 | codec level (informational) |
/// | 14 | 2 | reserved, 0 |
/// | 16 | 32 | old tree digest |
/// | 48 | 32 | new tree digest |
/// | 80 | 8 | old entry count |
/// | 88 | 8 | new entry count |
/// | 96 | 8 | total bytes of the new tree's files |
/// | 104 | 8 | compressed length of the manifest |
/// | 112 | 8 | decompressed length of the manifest |
/// | 120 | 8 | compressed length of the control stream |
/// | 128 | 8 | compressed length of the diff-runs stream |
/// | 136 | 8 | compressed length of the diff-literals stream |
/// | 144 | 8 | compressed length of the extra stream |
/// | 152 | 4 | CRC-32 of bytes 0..<152 |
public struct BundleHeader: Equatable, Sendable {
    public static let magic: [UInt8] = Array("PHXBUNDL".utf8)
    public static let currentVersion: UInt16 = 1
    public static let size = 156
    public static let fullFlag: UInt16 = 1
    /// Each data file's diff-runs in old-context order (FORMAT.md, "Old-context order"), per file.
    public static let contextFlag: UInt16 = 2
    /// Each data file's control tuples in the split layout (FORMAT.md, "Split layout"), per file.
    public static let splitFlag: UInt16 = 4
    static let knownFlags = fullFlag | contextFlag | splitFlag

    public var isFull: Bool
    /// How every data file's diff pattern is coded (flag bit 1).
    public var diffOrder: DiffOrder = .natural
    /// Whether every data file's control tuples are in the split layout (flag bit 2).
    public var splitControl = false
    public var codec: CodecID
    public var level: UInt8
    public var oldDigest: [UInt8]
    public var newDigest: [UInt8]
    public var oldCount: UInt64
    public var newCount: UInt64
    public var newTotalBytes: UInt64
    public var manifestLength: UInt64
    public var manifestRawLength: UInt64
    public var controlLength: UInt64
    public var runsLength: UInt64
    public var literalsLength: UInt64
    public var extraLength: UInt64

    public init(isFull: Bool, codec: CodecID, level: UInt8, oldDigest: [UInt8], newDigest: [UInt8], oldCount: UInt64,
                newCount: UInt64, newTotalBytes: UInt64, manifestLength: UInt64, manifestRawLength: UInt64,
                controlLength: UInt64, runsLength: UInt64, literalsLength: UInt64, extraLength: UInt64) {
        precondition(oldDigest.count == 32 && newDigest.count == 32, "tree digests must be 32 bytes")
        self.isFull = isFull
        self.codec = codec
        self.level = level
        self.oldDigest = oldDigest
        self.newDigest = newDigest
        self.oldCount = oldCount
        self.newCount = newCount
        self.newTotalBytes = newTotalBytes
        self.manifestLength = manifestLength
        self.manifestRawLength = manifestRawLength
        self.controlLength = controlLength
        self.runsLength = runsLength
        self.literalsLength = literalsLength
        self.extraLength = extraLength
    }

    public var manifestOffset: UInt64 { UInt64(Self.size) }
    public var controlOffset: UInt64 { manifestOffset + manifestLength }
    public var runsOffset: UInt64 { controlOffset + controlLength }
    public var literalsOffset: UInt64 { runsOffset + runsLength }
    public var extraOffset: UInt64 { literalsOffset + literalsLength }
    public var totalLength: UInt64 { extraOffset + extraLength }

    /// The flags field.
    public var flags: UInt16 {
        (isFull ? Self.fullFlag : 0) | (diffOrder == .oldContext ? Self.contextFlag : 0) | (splitControl ? Self.splitFlag : 0)
    }

    public func encode() -> [UInt8] {
        var out = Self.magic
        LittleEndian.append(Self.currentVersion, to: &out)
        LittleEndian.append(flags, to: &out)
        out.append(codec.rawValue)
        out.append(level)
        LittleEndian.append(UInt16(0), to: &out)
        out.append(contentsOf: oldDigest)
        out.append(contentsOf: newDigest)
        for v in [oldCount, newCount, newTotalBytes, manifestLength, manifestRawLength, controlLength, runsLength,
                  literalsLength, extraLength] {
            LittleEndian.append(v, to: &out)
        }
        LittleEndian.append(CRC32.checksum(out), to: &out)
        precondition(out.count == Self.size, "bundle header encoded to \(out.count) bytes")
        return out
    }

    public static func decode(_ bytes: [UInt8], fileLength: UInt64?, limits: BundleLimits) throws -> BundleHeader {
        guard bytes.count >= 8 else {
            throw PatchFormatError.truncated(part: "magic", needed: 8, available: UInt64(bytes.count))
        }
        guard Array(bytes[0..<8]) == magic else { throw PatchFormatError.badMagic(found: Array(bytes[0..<8])) }
        guard bytes.count >= size else {
            throw PatchFormatError.truncated(part: "bundle header", needed: UInt64(size), available: UInt64(bytes.count))
        }
        return try bytes.withUnsafeBytes { b in
            let version = LittleEndian.read(UInt16.self, from: b, at: 8)
            guard version == currentVersion else { throw PatchFormatError.unsupportedVersion(version) }
            let stored = LittleEndian.read(UInt32.self, from: b, at: 152)
            let computed = CRC32.checksum(UnsafeRawBufferPointer(rebasing: b[0..<152]))
            guard stored == computed else { throw PatchFormatError.headerChecksumMismatch(stored: stored, computed: computed) }
            let flags = LittleEndian.read(UInt16.self, from: b, at: 10)
            guard flags & ~knownFlags == 0 else { throw PatchFormatError.unknownFlags(flags) }
            guard let codec = CodecID(rawValue: b[12]) else { throw PatchFormatError.unknownCodec(b[12]) }
            guard LittleEndian.read(UInt16.self, from: b, at: 14) == 0 else {
                throw PatchFormatError.invalidField(field: "reserved (offset 14)", value: "nonzero", reason: "must be 0")
            }
            func u64(_ o: Int) -> UInt64 { LittleEndian.read(UInt64.self, from: b, at: o) }
            var h = BundleHeader(
                isFull: flags & fullFlag != 0, codec: codec, level: b[13], oldDigest: Array(b[16..<48]),
                newDigest: Array(b[48..<80]), oldCount: u64(80), newCount: u64(88), newTotalBytes: u64(96),
                manifestLength: u64(104), manifestRawLength: u64(112), controlLength: u64(120), runsLength: u64(128),
                literalsLength: u64(136), extraLength: u64(144))
            h.diffOrder = flags & contextFlag != 0 ? .oldContext : .natural
            h.splitControl = flags & splitFlag != 0
            try h.validate(fileLength: fileLength, limits: limits)
            return h
        }
    }

    func validate(fileLength: UInt64?, limits: BundleLimits) throws {
        if oldCount > limits.maxEntries || newCount > limits.maxEntries {
            throw PatchFormatError.limitExceeded(field: "entry count", value: max(oldCount, newCount), limit: limits.maxEntries)
        }
        if manifestRawLength > limits.maxManifestBytes {
            throw PatchFormatError.limitExceeded(field: "manifest", value: manifestRawLength, limit: limits.maxManifestBytes)
        }
        if newTotalBytes > limits.maxTotalBytes {
            throw PatchFormatError.limitExceeded(field: "new tree", value: newTotalBytes, limit: limits.maxTotalBytes)
        }
        if isFull && (oldCount != 0 || oldDigest != TreeDigest.empty) {
            throw PatchFormatError.invalidField(field: "flags (offset 10)", value: "full",
                                                reason: "a full bundle must be made from the empty tree")
        }
        var total = UInt64(Self.size)
        for part in [manifestLength, controlLength, runsLength, literalsLength, extraLength] {
            let (t, o) = total.addingReportingOverflow(part)
            if o || part > UInt64(Int64.max) {
                throw PatchFormatError.invalidField(field: "stream lengths (offsets 104-151)", value: "\(part)", reason: "too large")
            }
            total = t
        }
        if let fileLength {
            if fileLength < total {
                throw PatchFormatError.truncated(part: "bundle (header, manifest and streams)", needed: total, available: fileLength)
            }
            if fileLength > total {
                throw PatchFormatError.trailingData(location: "after the extra stream",
                                                    detail: "\(fileLength - total) bytes past the declared end at offset \(total)")
            }
        }
    }
}

/// Limits checked before a bundle's parts are allocated.
public struct BundleLimits: Sendable, Equatable {
    public var maxEntries: UInt64
    public var maxManifestBytes: UInt64
    /// Largest total size of the new tree's files.
    public var maxTotalBytes: UInt64
    /// Largest single file.
    public var maxFileBytes: UInt64
    /// Largest total length of the manifest's paths once decoded. Paths are front-coded (each shares
    /// a prefix with the one before), so a few bytes of manifest can stand for a 4 KiB path: without
    /// this, 18 MB of manifest could decode to 12 GiB of paths. A million entries with 256-byte paths,
    /// each listed as touched and as an operation, stay under the default.
    public var maxPathBytes: UInt64

    public init(maxEntries: UInt64 = 1_000_000, maxManifestBytes: UInt64 = 512 << 20,
                maxTotalBytes: UInt64 = 256 << 30, maxFileBytes: UInt64 = PatchLimits.defaultMaxOutputSize,
                maxPathBytes: UInt64 = 512 << 20) {
        self.maxEntries = maxEntries
        self.maxManifestBytes = maxManifestBytes
        self.maxTotalBytes = maxTotalBytes
        self.maxFileBytes = maxFileBytes
        self.maxPathBytes = maxPathBytes
    }
}
