import CBzip2

/// bzip2 streaming encoder (`blockSize100k` 1...9; 9 is what bsdiff uses).
final class Bzip2Encoder: StreamEncoder {
    private var stream = bz_stream()
    private var out: [UInt8] = []
    private var chunk = [UInt8](repeating: 0, count: 1 << 16)

    init(blockSize100k: Int) throws {
        let r = BZ2_bzCompressInit(&stream, Int32(blockSize100k), 0, 0)
        guard r == BZ_OK else {
            throw PatchFormatError.compressionFailed(codec: "bzip2", detail: "BZ2_bzCompressInit returned \(r)")
        }
    }

    deinit { BZ2_bzCompressEnd(&stream) }

    private func run(_ input: UnsafeRawBufferPointer, action: Int32) throws {
        // bzip2 takes `unsigned int` lengths: feed at most 1 GiB per call.
        var offset = 0
        repeat {
            let n = min(input.count - offset, 1 << 30)
            stream.next_in = input.baseAddress.map {
                UnsafeMutablePointer(mutating: $0.advanced(by: offset).assumingMemoryBound(to: CChar.self))
            }
            stream.avail_in = UInt32(n)
            let last = offset + n == input.count
            let act = last ? action : BZ_RUN
            while true {
                let (r, produced) = chunk.withUnsafeMutableBytes { buf -> (Int32, Int) in
                    stream.next_out = buf.baseAddress!.assumingMemoryBound(to: CChar.self)
                    stream.avail_out = UInt32(buf.count)
                    let r = BZ2_bzCompress(&stream, act)
                    return (r, buf.count - Int(stream.avail_out))
                }
                out.append(contentsOf: chunk[0..<produced])
                if act == BZ_FINISH {
                    if r == BZ_STREAM_END { break }
                    guard r == BZ_FINISH_OK else {
                        throw PatchFormatError.compressionFailed(codec: "bzip2", detail: "BZ2_bzCompress returned \(r)")
                    }
                } else {
                    guard r == BZ_RUN_OK else {
                        throw PatchFormatError.compressionFailed(codec: "bzip2", detail: "BZ2_bzCompress returned \(r)")
                    }
                    if stream.avail_in == 0 { break }
                }
            }
            offset += n
        } while offset < input.count
    }

    func write(_ input: UnsafeRawBufferPointer) throws {
        if input.isEmpty { return }
        try run(input, action: BZ_RUN)
    }

    func finish() throws -> [UInt8] {
        try run(UnsafeRawBufferPointer(start: nil, count: 0), action: BZ_FINISH)
        return takeOutput()
    }

    func takeOutput() -> [UInt8] {
        defer { out = [] }
        return out
    }
}

final class Bzip2Decoder: StreamDecoder {
    private var stream = bz_stream()
    private var done = false

    init() throws {
        let r = BZ2_bzDecompressInit(&stream, 0, 0)
        guard r == BZ_OK else {
            throw PatchFormatError.corruptStream(stream: "", detail: "bzip2: BZ2_bzDecompressInit returned \(r)")
        }
    }

    deinit { BZ2_bzDecompressEnd(&stream) }

    func decode(input: UnsafeRawBufferPointer, output: UnsafeMutableRawBufferPointer, inputIsLast: Bool) throws -> DecodeStep {
        if done { return DecodeStep(consumed: 0, produced: 0, ended: true) }
        let inCount = min(input.count, Int(UInt32.max))
        let outCount = min(output.count, Int(UInt32.max))
        stream.next_in = input.baseAddress.map { UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: CChar.self)) }
        stream.avail_in = UInt32(inCount)
        stream.next_out = output.baseAddress?.assumingMemoryBound(to: CChar.self)
        stream.avail_out = UInt32(outCount)
        let r = BZ2_bzDecompress(&stream)
        let consumed = inCount - Int(stream.avail_in)
        let produced = outCount - Int(stream.avail_out)
        switch r {
        case BZ_OK:
            return DecodeStep(consumed: consumed, produced: produced, ended: false)
        case BZ_STREAM_END:
            done = true
            return DecodeStep(consumed: consumed, produced: produced, ended: true)
        case BZ_DATA_ERROR, BZ_DATA_ERROR_MAGIC:
            throw PatchFormatError.corruptStream(stream: "", detail: "bzip2: invalid compressed data (error \(r))")
        case BZ_MEM_ERROR:
            throw PatchFormatError.corruptStream(stream: "", detail: "bzip2: out of memory")
        default:
            throw PatchFormatError.corruptStream(stream: "", detail: "bzip2: BZ2_bzDecompress returned \(r)")
        }
    }
}
