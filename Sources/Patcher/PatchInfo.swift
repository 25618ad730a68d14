import PatchFormat

/// What `phoenix-diff inspect` shows about a patch.
public struct PatchInfo: Sendable, Equatable, Codable {
    public var format: String
    public var codec: String
    public var level: Int?
    public var patchSize: UInt64
    public var oldSize: UInt64?
    public var newSize: UInt64
    public var oldSHA256: String?
    public var newSHA256: String?
    public var controlTuples: UInt64
    public var controlStreamSize: UInt64
    public var diffStreamSize: UInt64
    public var extraStreamSize: UInt64
    public var diffBytes: UInt64?
    /// phx: how many of the diff bytes are non-zero (the rest are plain copies from old).
    public var diffLiteralBytes: UInt64?
    public var extraBytes: UInt64?
    /// phx: `natural` or `context` (the order of the diff pattern).
    public var diffOrder: String?
    /// phx: "interleaved" or "split" (`ControlLayout`).
    public var controlLayout: String?
}

extension PatchApplier {
    /// Reads and checks a patch's header; for BSDIFF40 also decompresses the control stream to count
    /// its tuples (O(control stream), fixed memory).
    public static func inspect(patchPath: String, limits: PatchLimits = PatchLimits()) throws -> PatchInfo {
        try inspect(input: try FilePatchInput(path: patchPath), limits: limits)
    }

    public static func inspect(patch: [UInt8], limits: PatchLimits = PatchLimits()) throws -> PatchInfo {
        try inspect(input: MemoryPatchInput(patch), limits: limits)
    }

    static func inspect(input: any PatchInput, limits: PatchLimits) throws -> PatchInfo {
        do {
            switch try PatchHeader.read(from: input, limits: limits) {
            case .phx(let h):
                return PatchInfo(format: "phx", codec: h.codec.name, level: Int(h.level), patchSize: input.length,
                                 oldSize: h.oldSize, newSize: h.newSize,
                                 oldSHA256: Hex.encode(h.oldSHA256), newSHA256: Hex.encode(h.newSHA256),
                                 controlTuples: h.controlCount, controlStreamSize: h.controlLength,
                                 diffStreamSize: h.runsLength + h.literalsLength, extraStreamSize: h.extraLength,
                                 diffBytes: h.diffRawLength, diffLiteralBytes: h.literalsRawLength,
                                 extraBytes: h.extraRawLength, diffOrder: h.diffOrder.rawValue,
                                 controlLayout: h.splitControl ? "split" : "interleaved")
            case .bsdiff(let h):
                let reader = try DecompressingReader(streamName: "control", codec: .bzip2,
                                                     source: input.source(offset: h.controlOffset, length: h.controlLength))
                let bytes = try reader.skipToEnd()
                guard bytes % 24 == 0 else {
                    throw PatchFormatError.trailingData(location: "in the control stream",
                                                        detail: "\(bytes) bytes is not a whole number of 24-byte tuples")
                }
                return PatchInfo(format: "bsdiff", codec: "bzip2", level: nil, patchSize: input.length,
                                 oldSize: nil, newSize: h.newSize, oldSHA256: nil, newSHA256: nil,
                                 controlTuples: bytes / 24, controlStreamSize: h.controlLength,
                                 diffStreamSize: h.diffLength, extraStreamSize: input.length - h.extraOffset,
                                 diffBytes: nil, diffLiteralBytes: nil, extraBytes: nil)
            }
        } catch let e as PatchFormatError {
            throw PatcherError.format(e)
        }
    }
}
