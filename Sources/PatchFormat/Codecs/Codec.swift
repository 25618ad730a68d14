/// Codec ids as stored in byte 12 of a `phx` header. A codec is a plug-in: one file with an encoder and a
/// decoder, registered in `CodecID.makeEncoder` / `makeDecoder`.
public enum CodecID: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    case uncompressed = 0
    case zstd = 1
    case bzip2 = 2
    case zlib = 3
    case xz = 4

    public var name: String {
        switch self {
        case .uncompressed: "none"
        case .zstd: "zstd"
        case .bzip2: "bzip2"
        case .zlib: "zlib"
        case .xz: "xz"
        }
    }

    public var description: String { name }

    public init?(name: String) {
        guard let c = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = c
    }

    /// The level used when none is given: the strongest setting that stays fast on patch streams.
    public var defaultLevel: Int {
        switch self {
        case .uncompressed: 0
        case .zstd: 19
        case .bzip2: 9
        case .zlib: 9
        case .xz: 6
        }
    }

    public var levelRange: ClosedRange<Int> {
        switch self {
        case .uncompressed: 0...0
        case .zstd: 1...22
        case .bzip2: 1...9
        case .zlib: 0...9
        case .xz: 0...9
        }
    }

    /// Makes a streaming encoder. `threads` > 1 lets codecs that can (zstd) compress on several cores;
    /// the output bytes do not depend on it. `lowMemory` caps zstd's window and tables (a few MiB per
    /// stream, single-threaded) for the low-memory diff; bzip2 and zlib are small already.
    public func makeEncoder(level: Int? = nil, threads: Int = 1, lowMemory: Bool = false) throws -> any StreamEncoder {
        let level = level ?? defaultLevel
        switch self {
        case .uncompressed: return StoreEncoder()
        case .zstd: return try ZstdEncoder(level: level, threads: threads, lowMemory: lowMemory)
        case .bzip2: return try Bzip2Encoder(blockSize100k: level)
        case .zlib: return try ZlibEncoder(level: level)
        case .xz: return try XzEncoder(level: level, lowMemory: lowMemory)
        }
    }

    /// For memory planning: the most one encoder may use at `level`, and whether the raw streams are
    /// held in memory until they end (xz sizes its dictionary to each stream; the others stream).
    /// For planning zstd with workers (`makeEncoder(threads:)` above 1 thread): about what the context
    /// and each worker hold at `level`, two windows of the level and the capped match tables. At level
    /// 19 (an 8 MiB window) that is 36 MiB; measured on one busy stream: 67 MB with one worker, 100
    /// with two, 165 with four, 237 with eight, within (workers + 1) times it.
    public static func zstdWorkerMemory(level: Int) -> Int {
        (2 << ZstdEncoder.windowLog(level: level)) + (20 << 20)
    }

    public func encoderMemory(level: Int) -> (bytes: Int, holdsStreams: Bool) {
        switch self {
        case .uncompressed: (0, false)
        case .zstd: (48 << 20, false)
        case .bzip2: (8 << 20, false)
        case .zlib: (1 << 20, false)
        case .xz: (XzFormat.encoderMemory(level: level), true)
        }
    }

    public func makeDecoder() throws -> any StreamDecoder {
        switch self {
        case .uncompressed: return StoreDecoder()
        case .zstd: return try ZstdDecoder()
        case .bzip2: return try Bzip2Decoder()
        case .zlib: return try ZlibDecoder()
        case .xz: return XzDecoder()
        }
    }
}

/// Compresses one stream. Output accumulates inside the encoder until `finish()`.
/// Memory: the codec's state (zstd level 19: ~100 MB window state at most) plus the compressed output.
public protocol StreamEncoder: AnyObject {
    func write(_ input: UnsafeRawBufferPointer) throws
    /// Ends the stream and returns the compressed bytes not yet taken. The encoder must not be used
    /// afterwards.
    func finish() throws -> [UInt8]
    /// Hands over the compressed bytes produced so far (so that a long stream can be written out as it
    /// goes instead of accumulating in memory).
    func takeOutput() -> [UInt8]
    /// Raw input the encoder holds until `finish()` (xz), in bytes.
    var heldBytes: Int { get }
    /// What `finish()` will allocate beyond what the encoder holds now (xz: its whole state), in bytes;
    /// lets a caller finish several encoders at once without going over a memory budget.
    var finishMemory: Int { get }
    /// A quick estimate of the compressed size, for streams held until `finish()` (xz: zstd level 1
    /// of the held bytes, ~1% of xz's time); nil for encoders that compress as they go.
    func sizeEstimate() -> Int?
}

extension StreamEncoder {
    public var heldBytes: Int { 0 }
    public var finishMemory: Int { 0 }
    public func sizeEstimate() -> Int? { nil }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }
}

/// One step of a streaming decoder.
public struct DecodeStep: Sendable {
    public var consumed: Int
    public var produced: Int
    /// The compressed stream's end marker was reached and every byte of it was delivered.
    public var ended: Bool
    public init(consumed: Int, produced: Int, ended: Bool) {
        self.consumed = consumed
        self.produced = produced
        self.ended = ended
    }
}

/// Decompresses one stream. Errors are `PatchFormatError.corruptStream` with an empty stream name,
/// which `DecompressingReader` fills in.
public protocol StreamDecoder: AnyObject {
    /// Decodes from `input` into `output`. `inputIsLast` says no input follows `input`
    /// (only the `none` codec needs it to know where its stream ends).
    func decode(input: UnsafeRawBufferPointer, output: UnsafeMutableRawBufferPointer, inputIsLast: Bool) throws -> DecodeStep
}

/// Codec `none`: the stream is stored as is; it ends where its byte range ends.
final class StoreEncoder: StreamEncoder {
    private var out: [UInt8] = []
    func write(_ input: UnsafeRawBufferPointer) throws { out.append(contentsOf: input) }
    func finish() throws -> [UInt8] { takeOutput() }
    func takeOutput() -> [UInt8] {
        defer { out = [] }
        return out
    }
}

final class StoreDecoder: StreamDecoder {
    func decode(input: UnsafeRawBufferPointer, output: UnsafeMutableRawBufferPointer, inputIsLast: Bool) throws -> DecodeStep {
        let n = min(input.count, output.count)
        if n > 0 { output.baseAddress!.copyMemory(from: input.baseAddress!, byteCount: n) }
        return DecodeStep(consumed: n, produced: n, ended: inputIsLast && n == input.count)
    }
}
