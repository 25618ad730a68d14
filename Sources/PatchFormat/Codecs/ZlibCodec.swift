import CZlib

/// zlib (RFC 1950, with its Adler-32 trailer) streaming encoder.
final class ZlibEncoder: StreamEncoder {
    private var stream = z_stream()
    private var out: [UInt8] = []
    private var chunk = [UInt8](repeating: 0, count: 1 << 16)

    init(level: Int) throws {
        let r = deflateInit_(&stream, Int32(level), ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard r == Z_OK else {
            throw PatchFormatError.compressionFailed(codec: "zlib", detail: "deflateInit returned \(r)")
        }
    }

    deinit { deflateEnd(&stream) }

    private func run(_ input: UnsafeRawBufferPointer, finish: Bool) throws {
        var offset = 0
        repeat {
            let n = min(input.count - offset, 1 << 30)
            stream.next_in = input.baseAddress.map {
                UnsafeMutablePointer(mutating: $0.advanced(by: offset).assumingMemoryBound(to: Bytef.self))
            }
            stream.avail_in = uInt(n)
            let flush = finish && offset + n == input.count ? Z_FINISH : Z_NO_FLUSH
            while true {
                let (r, produced) = chunk.withUnsafeMutableBytes { buf -> (Int32, Int) in
                    stream.next_out = buf.baseAddress!.assumingMemoryBound(to: Bytef.self)
                    stream.avail_out = uInt(buf.count)
                    let r = deflate(&stream, flush)
                    return (r, buf.count - Int(stream.avail_out))
                }
                out.append(contentsOf: chunk[0..<produced])
                if r == Z_STREAM_END { break }
                guard r == Z_OK || r == Z_BUF_ERROR else {
                    throw PatchFormatError.compressionFailed(codec: "zlib", detail: "deflate returned \(r)")
                }
                if flush == Z_NO_FLUSH && stream.avail_in == 0 { break }
            }
            offset += n
        } while offset < input.count
    }

    func write(_ input: UnsafeRawBufferPointer) throws {
        if input.isEmpty { return }
        try run(input, finish: false)
    }

    func finish() throws -> [UInt8] {
        try run(UnsafeRawBufferPointer(start: nil, count: 0), finish: true)
        return takeOutput()
    }

    func takeOutput() -> [UInt8] {
        defer { out = [] }
        return out
    }
}

final class ZlibDecoder: StreamDecoder {
    private var stream = z_stream()
    private var done = false

    init() throws {
        let r = inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard r == Z_OK else {
            throw PatchFormatError.corruptStream(stream: "", detail: "zlib: inflateInit returned \(r)")
        }
    }

    deinit { inflateEnd(&stream) }

    func decode(input: UnsafeRawBufferPointer, output: UnsafeMutableRawBufferPointer, inputIsLast: Bool) throws -> DecodeStep {
        if done { return DecodeStep(consumed: 0, produced: 0, ended: true) }
        let inCount = min(input.count, Int(UInt32.max))
        let outCount = min(output.count, Int(UInt32.max))
        stream.next_in = input.baseAddress.map { UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: Bytef.self)) }
        stream.avail_in = uInt(inCount)
        stream.next_out = output.baseAddress?.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(outCount)
        let r = inflate(&stream, Z_NO_FLUSH)
        let consumed = inCount - Int(stream.avail_in)
        let produced = outCount - Int(stream.avail_out)
        switch r {
        case Z_OK, Z_BUF_ERROR:
            // Z_BUF_ERROR only means no progress was possible with these buffers.
            return DecodeStep(consumed: consumed, produced: produced, ended: false)
        case Z_STREAM_END:
            done = true
            return DecodeStep(consumed: consumed, produced: produced, ended: true)
        case Z_DATA_ERROR:
            let msg = stream.msg.map { String(cString: $0) } ?? "invalid data"
            throw PatchFormatError.corruptStream(stream: "", detail: "zlib: \(msg)")
        case Z_NEED_DICT:
            throw PatchFormatError.corruptStream(stream: "", detail: "zlib: stream asks for a preset dictionary")
        default:
            throw PatchFormatError.corruptStream(stream: "", detail: "zlib: inflate returned \(r)")
        }
    }
}
