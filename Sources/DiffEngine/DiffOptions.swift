import PatchFormat

/// How `make` searches old for matches (`DiffOptions.index`).
public enum MatchIndexKind: String, Sendable, CaseIterable {
    /// Hash chains for old files the chains take (under 4 GiB), the suffix array from there.
    case auto
    /// The longest match at every position (libdivsufsort; from 16 MiB sorted in two halves side by
    /// side, found in either or both): the smallest patches on most files.
    case suffixArray = "suffix-array"
    /// No suffix sort (`ChainIndex`): a faster `make`, patches within ~2% either way on most files.
    case hashChains = "hash-chains"
    /// Files: the patch made with each index, one after the other, and the smaller kept (the chains'
    /// on a tie). About the time of both. Peak memory: the larger run's when large allocations are
    /// mapped (`POSIX.mapLargeAllocations`, as `phoenix-diff make` does for it); with glibc's default
    /// the second run starts on memory the first freed and glibc kept (ruff 182-197 MB against the
    /// chains' 168, pyarrow 351-370 against 351.5). Bundles take it as `auto`.
    case best

    /// Whether an old file of `oldCount` bytes is indexed by hash chains: asked for or by default, and
    /// under 4 GiB. (For `best`: whether the chains are one of the two tried.)
    func usesChains(oldCount: Int) -> Bool {
        switch self {
        case .auto, .hashChains, .best: oldCount <= ChainIndex.maxCount
        case .suffixArray: false
        }
    }

    /// The indexes a diff of an old file of `oldCount` bytes tries: one, or both for `best` (the chains
    /// first: the suffix array's run after them peaks lower than the other way round).
    func tried(oldCount: Int) -> [MatchIndexKind] {
        guard self == .best else { return [usesChains(oldCount: oldCount) ? .hashChains : .suffixArray] }
        return usesChains(oldCount: oldCount) ? [.hashChains, .suffixArray] : [.suffixArray]
    }
}

/// What kind of patch to make.
public struct DiffOptions: Sendable, Equatable {
    /// `phx` (default) or classic `bsdiff` (BSDIFF40, always bzip2).
    public var format: PatchKind
    /// Codec of the streams (default: xz for phx); `bsdiff` requires `.bzip2`.
    public var codec: CodecID
    /// Compression level; nil means the codec's default (xz 6, zstd 19, bzip2 9, zlib 9).
    public var level: Int?
    /// Cores the matcher and the compressor may use. The patch bytes do not depend on it.
    public var threads: Int
    /// Advanced: the size of the chunks of new matched in parallel (nil: 1 MiB or 1/32 of new, whichever
    /// is larger). Unlike `threads`, it changes the patch bytes.
    public var matchChunkSize: Int?
    /// phx: the order of the diff pattern (`DiffOrder`); nil = make both and keep the smaller patch
    /// (a sparse diff, fewer than one byte in 2,048 changed, keeps the natural order:
    /// `StreamChoices.sparseDiff`).
    /// Old-context order is often much smaller on executables and libraries, and costs the apply a
    /// second pass over the control stream and a count per diff byte.
    public var diffOrder: DiffOrder?
    /// phx: whether the control stream is in the split layout (`ControlLayout`); nil = make both and
    /// keep the smaller (the control stream is small, so that costs little).
    public var splitControl: Bool?
    /// How old is searched for matches (`MatchIndexKind`). By default (`.auto`) by hash chains
    /// (`ChainIndex`: no suffix sort) for old files under 4 GiB, by its suffix array (the longest match
    /// at every position) from there. Measured on the corpus pairs against the suffix array, the
    /// chains (after the block matches, `BlockMatches`) make `make` 1.4-2.6x faster (the suffix array
    /// sorted in halves on two cores), patches 0.1-2.9% larger on numpy, pyarrow and the Django tar,
    /// 1.2% smaller on ruff and 3.1% on the 221 MB polars library, and peak memory lower on every
    /// pair (13-41%). The low-memory mode (`memoryLimit`) has its own anchor index.
    public var index: MatchIndexKind = .auto
    /// `makePatchFile` only: the most resident memory, in bytes, the diff may use. When the in-memory
    /// engine would need more (`DiffEngine.estimatedPeakMemory`), the low-memory mode is used instead
    /// (at least `DiffEngine.minimumMemoryLimit`). nil: no limit.
    public var memoryLimit: Int?
    /// Tests: with a `memoryLimit`, take the low-memory mode even when the in-memory engine would fit
    /// (small inputs fit under any allowed limit).
    var alwaysLowMemory = false

    public init(format: PatchKind = .phx, codec: CodecID? = nil, level: Int? = nil, threads: Int = 1) {
        self.format = format
        // xz (LZMA2) makes the smallest patches (2-9% under zstd 19 on the corpus pairs); zstd applies
        // faster. Bundles keep zstd (`BundleOptions`).
        self.codec = codec ?? (format == .bsdiff ? .bzip2 : .xz)
        self.level = level
        self.threads = max(1, threads)
    }

    /// Whether old is indexed by hash chains (`MatchIndexKind.usesChains`).
    func usesChains(oldCount: Int) -> Bool { index.usesChains(oldCount: oldCount) }

    /// Checks the combination; the command line calls it from `validate()`.
    public func validate() throws {
        if format == .bsdiff && codec != .bzip2 {
            throw DiffEngineError.unsupportedCombination(
                "the bsdiff format always uses bzip2 (BSDIFF40 has no codec field); got --codec \(codec.name)")
        }
        if let level, !codec.levelRange.contains(level) {
            throw DiffEngineError.unsupportedCombination(
                "level \(level) is out of range for \(codec.name) (\(codec.levelRange.lowerBound)...\(codec.levelRange.upperBound))")
        }
    }
}
