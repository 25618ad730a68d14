import CLzma
import CZstd

/// The `xz` codec (FORMAT.md, codec 4): one byte `d` (the LZMA2 dictionary is 2^d bytes, 12 <= d <= 26),
/// then a raw LZMA2 stream ended by its end marker. LZMA2 (liblzma) compresses patch streams 2-9%
/// smaller than zstd 19 at about the same speed, and decodes at ~50-100 MB/s instead of ~1 GB/s.
enum XzFormat {
    static let minDictionaryLog = 12
    static let maxDictionaryLog = 26

    static func lzma2Filters(_ options: UnsafeMutablePointer<lzma_options_lzma>) -> [lzma_filter] {
        [lzma_filter(id: phx_lzma_filter_lzma2, options: UnsafeMutableRawPointer(options)),
         lzma_filter(id: phx_lzma_vli_unknown, options: nil)]
    }

    /// What liblzma's encoder needs at `level` (its full dictionary; less for short streams).
    static func encoderMemory(level: Int) -> Int {
        Int(clamping: lzma_easy_encoder_memusage(UInt32(max(0, min(9, level)))))
    }

    static func describe(_ r: lzma_ret) -> String {
        switch r {
        case LZMA_MEM_ERROR: "out of memory"
        case LZMA_MEMLIMIT_ERROR: "memory limit reached"
        case LZMA_FORMAT_ERROR: "not LZMA2 data"
        case LZMA_OPTIONS_ERROR: "unsupported options"
        case LZMA_DATA_ERROR: "corrupt data"
        case LZMA_BUF_ERROR: "data ends too early"
        default: "liblzma error \(r.rawValue)"
        }
    }
}

/// Holds the whole raw stream and compresses it at `finish()` with a dictionary no larger than the
/// stream (memory ~7.5x the dictionary while compressing, `finishMemory`; `DiffEngine.finishAll` runs
/// several finishes at once only within a memory budget); `lowMemory` streams as it goes with a
/// 256 KiB dictionary instead (a few MB). The output does not depend on threads.
final class XzEncoder: StreamEncoder {
    private let preset: UInt32
    private let lowMemory: Bool
    private var pending: [UInt8] = []
    private var out: [UInt8] = []
    private var stream = lzma_stream()
    private var started = false
    /// lzma_code's output, kept: the low-memory mode calls `run` for every small write, and a fresh
    /// 64 KiB array each time (zero-filled) was a tenth of that mode's time.
    private var chunk = [UInt8](repeating: 0, count: 1 << 16)

    init(level: Int, lowMemory: Bool) throws {
        preset = UInt32(level)
        self.lowMemory = lowMemory
        if lowMemory { try start(dictionaryLog: 18) }
    }

    deinit { lzma_end(&stream) }

    /// The LZMA2 options of the preset with the dictionary capped at 2^`dictionaryLog` (and the log
    /// of the dictionary actually used).
    private func options(dictionaryLog: Int) throws -> (lzma_options_lzma, log: Int) {
        var options = lzma_options_lzma()
        guard lzma_lzma_preset(&options, preset) == 0 else {
            throw PatchFormatError.compressionFailed(codec: "xz", detail: "unknown preset \(preset)")
        }
        options.dict_size = min(options.dict_size, UInt32(1) << UInt32(dictionaryLog))
        let log = max(XzFormat.minDictionaryLog, Int.bitWidth - Int(options.dict_size - 1).leadingZeroBitCount)
        options.dict_size = UInt32(1) << UInt32(log)
        return (options, log)
    }

    /// The dictionary log for the held stream: the smallest power of two that covers it.
    private var heldDictionaryLog: Int {
        let log = Int.bitWidth - max(1, pending.count - 1).leadingZeroBitCount
        return min(XzFormat.maxDictionaryLog, max(XzFormat.minDictionaryLog, log))
    }

    private func start(dictionaryLog: Int) throws {
        var (options, log) = try options(dictionaryLog: dictionaryLog)
        // The filter chain points at `options`: both must outlive the call that reads them.
        let r = withUnsafeMutablePointer(to: &options) { o in
            var filters = XzFormat.lzma2Filters(o)
            return lzma_raw_encoder(&stream, &filters)
        }
        guard r == LZMA_OK else { throw PatchFormatError.compressionFailed(codec: "xz", detail: XzFormat.describe(r)) }
        out.append(UInt8(log))
        started = true
    }

    var heldBytes: Int { pending.count }

    func sizeEstimate() -> Int? {
        if started { return nil }
        var scratch = [UInt8](repeating: 0, count: ZSTD_compressBound(pending.count))
        let n = scratch.withUnsafeMutableBytes { out in
            pending.withUnsafeBytes { ZSTD_compress(out.baseAddress, out.count, $0.baseAddress, $0.count, 1) }
        }
        return ZSTD_isError(n) != 0 ? nil : n
    }

    var finishMemory: Int {
        if started { return 0 }
        guard var (options, _) = try? options(dictionaryLog: heldDictionaryLog) else { return 0 }
        let bytes = withUnsafeMutablePointer(to: &options) { o in
            var filters = XzFormat.lzma2Filters(o)
            return lzma_raw_encoder_memusage(&filters)
        }
        // UINT64_MAX means "unknown options"; finish() will report that.
        return bytes == UInt64.max ? 0 : Int(clamping: bytes)
    }

    private func run(_ input: UnsafeRawBufferPointer, action: lzma_action) throws {
        stream.next_in = input.baseAddress?.assumingMemoryBound(to: UInt8.self)
        stream.avail_in = input.count
        while true {
            let (r, produced) = chunk.withUnsafeMutableBufferPointer { buf -> (lzma_ret, Int) in
                stream.next_out = buf.baseAddress
                stream.avail_out = buf.count
                let r = lzma_code(&stream, action)
                return (r, buf.count - stream.avail_out)
            }
            out.append(contentsOf: chunk[0..<produced])
            if r == LZMA_STREAM_END { return }
            guard r == LZMA_OK else { throw PatchFormatError.compressionFailed(codec: "xz", detail: XzFormat.describe(r)) }
            if action == LZMA_RUN && stream.avail_in == 0 { return }
        }
    }

    func write(_ input: UnsafeRawBufferPointer) throws {
        if input.isEmpty { return }
        if lowMemory { try run(input, action: LZMA_RUN) } else { pending.append(contentsOf: input) }
    }

    func finish() throws -> [UInt8] {
        defer { lzma_end(&stream); stream = lzma_stream() }
        if !started { try start(dictionaryLog: heldDictionaryLog) }
        try pending.withUnsafeBytes { try run($0, action: LZMA_FINISH) }
        pending = []
        return takeOutput()
    }

    func takeOutput() -> [UInt8] {
        defer { out = [] }
        return out
    }
}

/// Reads the dictionary byte, refuses sizes outside 2^12...2^26 (a hostile stream cannot ask for more
/// than 64 MiB), then decodes raw LZMA2.
final class XzDecoder: StreamDecoder {
    private var stream = lzma_stream()
    private var started = false

    deinit { lzma_end(&stream) }

    func decode(input: UnsafeRawBufferPointer, output: UnsafeMutableRawBufferPointer, inputIsLast: Bool) throws -> DecodeStep {
        var consumed = 0
        if !started {
            guard let d = input.first else {
                if inputIsLast { throw PatchFormatError.corruptStream(stream: "", detail: "xz: empty stream") }
                return DecodeStep(consumed: 0, produced: 0, ended: false)
            }
            guard (XzFormat.minDictionaryLog...XzFormat.maxDictionaryLog).contains(Int(d)) else {
                throw PatchFormatError.corruptStream(
                    stream: "", detail: "xz: dictionary 2^\(d) is outside 2^\(XzFormat.minDictionaryLog)...2^\(XzFormat.maxDictionaryLog)")
            }
            var options = lzma_options_lzma()
            options.dict_size = UInt32(1) << UInt32(d)
            let r = withUnsafeMutablePointer(to: &options) { o in
                var filters = XzFormat.lzma2Filters(o)
                return lzma_raw_decoder(&stream, &filters)
            }
            guard r == LZMA_OK else { throw PatchFormatError.corruptStream(stream: "", detail: "xz: " + XzFormat.describe(r)) }
            started = true
            consumed = 1
        }
        let rest = UnsafeRawBufferPointer(rebasing: input[consumed...])
        stream.next_in = rest.baseAddress?.assumingMemoryBound(to: UInt8.self)
        stream.avail_in = rest.count
        stream.next_out = output.baseAddress?.assumingMemoryBound(to: UInt8.self)
        stream.avail_out = output.count
        let r = lzma_code(&stream, LZMA_RUN)
        let step = DecodeStep(consumed: consumed + rest.count - stream.avail_in, produced: output.count - stream.avail_out,
                              ended: r == LZMA_STREAM_END)
        guard r == LZMA_OK || r == LZMA_STREAM_END || (r == LZMA_BUF_ERROR && !inputIsLast) else {
            throw PatchFormatError.corruptStream(stream: "", detail: "xz: " + XzFormat.describe(r))
        }
        return step
    }
}
