import CZstd

/// zstd streaming encoder.
final class ZstdEncoder: StreamEncoder {
    /// Freed by `finish()`: a patch's streams end one after another, and their contexts should not all
    /// be alive at once.
    private var ctx: OpaquePointer?
    private var out: [UInt8] = []
    private var chunk = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())
    /// Input held back until it reaches `holdBack` bytes. A stream that ends before then is compressed
    /// with its size declared, and zstd then sizes its window and tables to it: most patch streams are
    /// small, and five level-19 contexts at full size were half of `make`'s peak memory. The choice
    /// depends only on the stream's length, so the bytes still do not depend on `threads`.
    private var pending: [UInt8] = []
    private var streaming = false
    static let holdBack = 4 << 20

    /// The window (log2 bytes) of `level` for an input of unknown size, as streaming uses.
    static func windowLog(level: Int) -> Int { Int(ZSTD_getCParams(Int32(level), 0, 0).windowLog) }
    /// The level's parameters for an input of unknown size (the ones used when streaming).
    private var parameters: ZSTD_compressionParameters
    private let chainCap: UInt32
    private let hashCap: UInt32

    init(level: Int, threads: Int, lowMemory: Bool = false) throws {
        guard let ctx = ZSTD_createCCtx() else {
            throw PatchFormatError.compressionFailed(codec: "zstd", detail: "cannot allocate a compression context")
        }
        self.ctx = ctx
        parameters = ZSTD_getCParams(Int32(level), 0, 0)
        chainCap = lowMemory ? 18 : 22
        hashCap = lowMemory ? 18 : 20
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, Int32(level)))
        // No per-frame checksum: a phx patch carries the SHA-256 of the result, checked before use.
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_checksumFlag, 0))
        // Nor the content size (the phx header has each stream's raw length).
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_contentSizeFlag, 0))
        // Patch streams are mostly zeros (diff) or short literals (extra): the level's search strategy
        // matters, huge match tables do not. Capping them keeps a level-19 context near 40 MB instead
        // of 110 MB at the same output size (measured on the ruff pair: 1,564,352 vs 1,564,367 bytes).
        if lowMemory {
            // About 5 MiB in all: a 2 MiB window, 1 MiB chain and hash tables, no worker buffers. The
            // bytes still do not depend on `threads` (always single-threaded).
            parameters.windowLog = min(parameters.windowLog, 21)
        }
        parameters.chainLog = min(parameters.chainLog, chainCap)
        parameters.hashLog = min(parameters.hashLog, hashCap)
        try apply(parameters)
        if lowMemory { return }
        // zstd's multi-threaded output depends only on whether workers are used, not on how many, so the
        // worker mode is always on: the patch bytes are the same for any `threads` (tested).
        _ = ZSTD_CCtx_setParameter(ctx, ZSTD_c_nbWorkers, Int32(max(1, threads)))
        // Fixed 4 MiB jobs: workers compress while the matcher is still producing the stream, and the job
        // boundaries (hence the bytes) do not depend on the thread count. Costs ~0.03% in size.
        _ = ZSTD_CCtx_setParameter(ctx, ZSTD_c_jobSize, 4 << 20)
    }

    deinit { if let ctx { ZSTD_freeCCtx(ctx) } }

    /// Sets every compression parameter explicitly, so that zstd does not pick others from its table
    /// for small inputs when the size is pledged.
    private func apply(_ p: ZSTD_compressionParameters) throws {
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_windowLog, Int32(p.windowLog)))
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_chainLog, Int32(p.chainLog)))
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_hashLog, Int32(p.hashLog)))
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_searchLog, Int32(p.searchLog)))
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_minMatch, Int32(p.minMatch)))
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_targetLength, Int32(p.targetLength)))
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_strategy, Int32(p.strategy.rawValue)))
    }

    private func check(_ code: Int) throws {
        if ZSTD_isError(code) != 0 {
            throw PatchFormatError.compressionFailed(codec: "zstd", detail: String(cString: ZSTD_getErrorName(code)))
        }
    }

    private func run(_ input: UnsafeRawBufferPointer, end: Bool) throws {
        var inBuf = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        while true {
            let (remaining, produced) = try chunk.withUnsafeMutableBytes { buf -> (Int, Int) in
                var outBuf = ZSTD_outBuffer(dst: buf.baseAddress, size: buf.count, pos: 0)
                let r = ZSTD_compressStream2(ctx, &outBuf, &inBuf, end ? ZSTD_e_end : ZSTD_e_continue)
                try check(r)
                return (r, outBuf.pos)
            }
            out.append(contentsOf: chunk[0..<produced])
            if end {
                if remaining == 0 { return }
            } else if inBuf.pos == inBuf.size {
                return
            }
        }
    }

    func write(_ input: UnsafeRawBufferPointer) throws {
        if input.isEmpty { return }
        if streaming { return try run(input, end: false) }
        pending.append(contentsOf: input)
        if pending.count >= Self.holdBack {
            streaming = true
            try pending.withUnsafeBytes { try run($0, end: false) }
            pending = []
        }
    }

    func finish() throws -> [UInt8] {
        defer {
            if let ctx { ZSTD_freeCCtx(ctx) }
            ctx = nil
        }
        if streaming {
            try run(UnsafeRawBufferPointer(start: nil, count: 0), end: true)
        } else {
            // A window (and tables) no larger than the stream: the same output, a fraction of the memory.
            var small = parameters
            let need = UInt32(max(10, Int.bitWidth - max(1, pending.count - 1).leadingZeroBitCount))
            small.windowLog = min(small.windowLog, need)
            small.chainLog = min(small.chainLog, need + 1)
            small.hashLog = min(small.hashLog, need + 1)
            try apply(small)
            try check(ZSTD_CCtx_setPledgedSrcSize(ctx, UInt64(pending.count)))
            try pending.withUnsafeBytes { try run($0, end: true) }
            pending = []
        }
        return takeOutput()
    }

    func takeOutput() -> [UInt8] {
        defer { out = [] }
        return out
    }
}

/// zstd streaming decoder, limited to zstd's default window (2^27 bytes) so a hostile frame cannot ask
/// for more memory than that.
final class ZstdDecoder: StreamDecoder {
    private let ctx: OpaquePointer

    init() throws {
        guard let ctx = ZSTD_createDCtx() else {
            throw PatchFormatError.corruptStream(stream: "", detail: "cannot allocate a zstd decompression context")
        }
        self.ctx = ctx
        _ = ZSTD_DCtx_setParameter(ctx, ZSTD_d_windowLogMax, 27)
    }

    deinit { ZSTD_freeDCtx(ctx) }

    func decode(input: UnsafeRawBufferPointer, output: UnsafeMutableRawBufferPointer, inputIsLast: Bool) throws -> DecodeStep {
        var inBuf = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        var outBuf = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: 0)
        let r = ZSTD_decompressStream(ctx, &outBuf, &inBuf)
        if ZSTD_isError(r) != 0 {
            throw PatchFormatError.corruptStream(stream: "", detail: "zstd: " + String(cString: ZSTD_getErrorName(r)))
        }
        // r == 0: a frame is completely decoded and flushed.
        return DecodeStep(consumed: inBuf.pos, produced: outBuf.pos, ended: r == 0)
    }
}
