import CZstd

/// zstd streaming encoder.
final class ZstdEncoder: StreamEncoder {
    private let ctx: OpaquePointer
    private var out: [UInt8] = []
    private var chunk = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())

    init(level: Int, threads: Int, lowMemory: Bool = false) throws {
        guard let ctx = ZSTD_createCCtx() else {
            throw PatchFormatError.compressionFailed(codec: "zstd", detail: "cannot allocate a compression context")
        }
        self.ctx = ctx
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, Int32(level)))
        // No per-frame checksum: a phx patch carries the SHA-256 of the result, checked before use.
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_checksumFlag, 0))
        // Patch streams are mostly zeros (diff) or short literals (extra): the level's search strategy
        // matters, huge match tables do not. Capping them keeps a level-19 context near 40 MB instead
        // of 110 MB at the same output size (measured on the ruff pair: 1,564,352 vs 1,564,367 bytes).
        let defaults = ZSTD_getCParams(Int32(level), 0, 0)
        if lowMemory {
            // About 5 MiB in all: a 2 MiB window, 1 MiB chain and hash tables, no worker buffers. The
            // bytes still do not depend on `threads` (always single-threaded).
            try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_windowLog, Int32(min(defaults.windowLog, 21))))
            try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_chainLog, Int32(min(defaults.chainLog, 18))))
            try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_hashLog, Int32(min(defaults.hashLog, 18))))
            return
        }
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_chainLog, Int32(min(defaults.chainLog, 22))))
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_hashLog, Int32(min(defaults.hashLog, 20))))
        // zstd's multi-threaded output depends only on whether workers are used, not on how many, so the
        // worker mode is always on: the patch bytes are the same for any `threads` (tested).
        _ = ZSTD_CCtx_setParameter(ctx, ZSTD_c_nbWorkers, Int32(max(1, threads)))
        // Fixed 4 MiB jobs: workers compress while the matcher is still producing the stream, and the job
        // boundaries (hence the bytes) do not depend on the thread count. Costs ~0.03% in size.
        _ = ZSTD_CCtx_setParameter(ctx, ZSTD_c_jobSize, 4 << 20)
    }

    deinit { ZSTD_freeCCtx(ctx) }

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
        try run(input, end: false)
    }

    func finish() throws -> [UInt8] {
        try run(UnsafeRawBufferPointer(start: nil, count: 0), end: true)
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
