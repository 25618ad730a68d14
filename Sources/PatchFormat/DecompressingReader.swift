#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// Reads one compressed stream through a fixed-size window: memory is two buffers of `bufferSize`
/// bytes plus the codec's state, whatever the stream's length. Every failure names the stream.
///
/// With `readAhead`, the stream is decoded on a thread of its own into 16 blocks of `bufferSize`
/// bytes, at most 15 blocks ahead of the reader (so a patch's streams decompress side by side with
/// the apply; memory: the 16 blocks and an input window of at most 64 KiB); what the reader sees, errors
/// included, is the same either way. If no thread can be started it reads on the caller's thread.
public final class DecompressingReader {
    public let streamName: String
    private let blocks: BlockDecoder?
    private let pipe: ReadAheadPipe?
    private let ownWindow: UnsafeMutableRawBufferPointer?
    /// The current window of decompressed bytes: `ownWindow`, or the pipe's block being read.
    private var output: UnsafeMutableRawBufferPointer
    @exclusivity(unchecked) private var outputStart = 0
    @exclusivity(unchecked) private var outputEnd = 0
    /// Decompressed bytes handed out so far.
    @exclusivity(unchecked) public private(set) var delivered: UInt64 = 0

    public init(streamName: String, codec: CodecID, source: any ByteSource, bufferSize: Int = 1 << 16,
                readAhead: Bool = false) throws {
        precondition(bufferSize > 0, "bufferSize must be positive, got \(bufferSize)")
        self.streamName = streamName
        let decoder = BlockDecoder(streamName: streamName, decoder: try codec.makeDecoder(), source: source,
                                   inputSize: readAhead ? min(bufferSize, 1 << 16) : bufferSize)
        if readAhead, let pipe = ReadAheadPipe(decoder: decoder, blockSize: bufferSize) {
            self.pipe = pipe
            blocks = nil
            ownWindow = nil
            output = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        } else {
            pipe = nil
            blocks = decoder
            ownWindow = .allocate(byteCount: bufferSize, alignment: 16)
            output = ownWindow!
        }
    }

    deinit {
        ownWindow?.deallocate()
    }

    /// The state the read-ahead thread holds while it runs (tests watch it go away).
    var readAheadState: AnyObject? { pipe?.state }

    /// Moves to the next window of decompressed bytes (the current one must be used up). Returns false
    /// when the stream has ended.
    private func fillOutput() throws -> Bool {
        precondition(outputStart == outputEnd, "fillOutput with \(outputEnd - outputStart) bytes still buffered")
        outputStart = 0
        outputEnd = 0
        if let blocks {
            outputEnd = try blocks.decode(into: output)
            return outputEnd > 0
        }
        guard let (block, count) = try pipe!.next() else { return false }
        output = block
        outputEnd = count
        return true
    }

    /// Copies exactly `buffer.count` decompressed bytes, or throws `truncatedStream`.
    public func readExactly(into buffer: UnsafeMutableRawBufferPointer) throws {
        var filled = 0
        while filled < buffer.count {
            if outputStart == outputEnd {
                guard try fillOutput() else {
                    throw PatchFormatError.truncatedStream(stream: streamName, producedBytes: delivered,
                                                           neededMore: UInt64(buffer.count - filled))
                }
            }
            let n = min(buffer.count - filled, outputEnd - outputStart)
            buffer.baseAddress!.advanced(by: filled).copyMemory(from: output.baseAddress!.advanced(by: outputStart), byteCount: n)
            outputStart += n
            filled += n
            delivered += UInt64(n)
        }
    }

    /// Reads one byte, or nil at the end of the stream.
    public func readByte() throws -> UInt8? {
        if outputStart == outputEnd {
            guard try fillOutput() else { return nil }
        }
        let b = output.load(fromByteOffset: outputStart, as: UInt8.self)
        outputStart += 1
        delivered += 1
        return b
    }

    /// Reads and discards the rest of the stream a window at a time; returns how many bytes that was.
    public func skipToEnd() throws -> UInt64 {
        var skipped: UInt64 = 0
        repeat {
            let n = outputEnd - outputStart
            skipped += UInt64(n)
            delivered += UInt64(n)
            outputStart = outputEnd
        } while try fillOutput()
        return skipped
    }

    /// Reads one unsigned LEB128 varint (see `Varint`), decoding straight from the window when the
    /// whole varint is there. Errors are `Varint`'s, naming `index` and `field`.
    public func readVarint(index: UInt64, field: String) throws -> UInt64 {
        if outputEnd - outputStart >= Varint.maxLength {
            let p = output.baseAddress!.assumingMemoryBound(to: UInt8.self) + outputStart
            var result: UInt64 = 0
            var shift: UInt64 = 0
            for i in 0..<Varint.maxLength {
                let b = p[i]
                if i == Varint.maxLength - 1 && b > 1 {
                    throw PatchFormatError.invalidControl(index: index, reason: "has a \(field) varint above 2^64-1")
                }
                result |= UInt64(b & 0x7f) << shift
                if b & 0x80 == 0 {
                    outputStart += i + 1
                    delivered += UInt64(i + 1)
                    return result
                }
                shift += 7
            }
            throw PatchFormatError.invalidControl(index: index, reason: "has a \(field) varint longer than \(Varint.maxLength) bytes")
        }
        return try Varint.readUnsigned(index: index, field: field) { try self.readByte() }
    }

    /// Checks that the stream is used up exactly: no decompressed bytes left over and no compressed
    /// bytes after the stream's end marker.
    public func finish() throws {
        let leftoverOutput = try outputStart < outputEnd || fillOutput()
        if leftoverOutput {
            var extra = UInt64(outputEnd - outputStart)
            outputStart = outputEnd
            while try fillOutput() {
                extra += UInt64(outputEnd - outputStart)
                outputStart = outputEnd
                if extra > 1 << 20 { break }
            }
            throw PatchFormatError.trailingData(
                location: "in the \(streamName) stream",
                detail: "\(extra)\(extra > 1 << 20 ? "+" : "") decompressed bytes after the \(delivered) the control tuples use")
        }
        let leftover = try blocks?.trailingBytes() ?? pipe!.trailingBytes()
        if leftover > 0 {
            throw PatchFormatError.trailingData(location: "after the \(streamName) stream",
                                                detail: "\(leftover)\(leftover > 1 << 20 ? "+" : "") bytes follow its end marker")
        }
    }
}

/// The decode loop of one stream: fills a window with the next decompressed bytes. Used by one thread
/// at a time (the reader's, or its read-ahead thread).
final class BlockDecoder {
    let streamName: String
    private let decoder: any StreamDecoder
    private let source: any ByteSource
    private var input: UnsafeMutableRawBufferPointer
    private var inputStart = 0
    private var inputEnd = 0
    private var sourceExhausted = false
    private var streamEnded = false
    /// Decompressed bytes produced so far (where an error happened, in its message).
    private var produced: UInt64 = 0

    init(streamName: String, decoder: any StreamDecoder, source: any ByteSource, inputSize: Int) {
        self.streamName = streamName
        self.decoder = decoder
        self.source = source
        input = .allocate(byteCount: inputSize, alignment: 16)
    }

    deinit { input.deallocate() }

    private func refillInput() throws {
        if inputStart == inputEnd { inputStart = 0; inputEnd = 0 }
        if sourceExhausted || inputEnd == input.count { return }
        let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: input[inputEnd...]))
        if n == 0 { sourceExhausted = true } else { inputEnd += n }
    }

    /// Decodes the next bytes into `output`; returns how many (at least one), or 0 once the stream has
    /// ended.
    func decode(into output: UnsafeMutableRawBufferPointer) throws -> Int {
        var outputEnd = 0
        while outputEnd == 0 {
            if streamEnded { return 0 }
            if inputStart == inputEnd { try refillInput() }
            let available = UnsafeRawBufferPointer(rebasing: input[inputStart..<inputEnd])
            let step: DecodeStep
            do {
                step = try decoder.decode(input: available, output: output,
                                          inputIsLast: sourceExhausted)
            } catch let PatchFormatError.corruptStream(_, detail) {
                throw PatchFormatError.corruptStream(stream: streamName, detail: detail + " (after \(produced) decompressed bytes)")
            }
            inputStart += step.consumed
            outputEnd = step.produced
            produced += UInt64(step.produced)
            if step.ended {
                streamEnded = true
                return outputEnd
            }
            if step.consumed == 0 && step.produced == 0 {
                if sourceExhausted && inputStart == inputEnd {
                    // No input left and the codec has not seen its end marker.
                    throw PatchFormatError.corruptStream(
                        stream: streamName,
                        detail: "compressed data ends before the end of the stream (after \(produced) decompressed bytes)")
                }
                if sourceExhausted {
                    throw PatchFormatError.corruptStream(
                        stream: streamName, detail: "decoder makes no progress on the last \(inputEnd - inputStart) bytes")
                }
                // Make room, then read more.
                compactInput()
                if inputEnd == input.count {
                    throw PatchFormatError.corruptStream(
                        stream: streamName, detail: "decoder makes no progress on a full \(input.count)-byte input window")
                }
                try refillInput()
            }
        }
        return outputEnd
    }

    private func compactInput() {
        if inputStart > 0 {
            let n = inputEnd - inputStart
            if n > 0 { input.baseAddress!.copyMemory(from: input.baseAddress!.advanced(by: inputStart), byteCount: n) }
            inputStart = 0
            inputEnd = n
        }
    }

    /// After the stream's end: how many compressed bytes follow its end marker (counting stops past 1 MiB).
    func trailingBytes() throws -> UInt64 {
        var leftover = UInt64(inputEnd - inputStart)
        inputStart = inputEnd
        if !sourceExhausted {
            while true {
                inputStart = 0; inputEnd = 0
                try refillInput()
                if inputEnd == 0 { break }
                leftover += UInt64(inputEnd)
                inputStart = inputEnd
                if leftover > 1 << 20 { break }
            }
        }
        return leftover
    }
}

/// Runs a `BlockDecoder` on another thread, 16 blocks deep: the decoder fills a block while the
/// reader uses another, and stops at the stream's end or its first error, which the reader receives
/// in order, after the blocks before it. Dropping the pipe stops the thread and waits for it.
final class ReadAheadPipe {
    fileprivate enum Outcome {
        case data(Int)
        /// The stream ended (no bytes in this block); the compressed bytes after its end marker.
        case end(trailing: Result<UInt64, any Error>)
        case failed(any Error)
    }

    /// What the decoding thread and the reader share. The thread holds it, not the pipe, so that
    /// dropping the pipe can stop the thread.
    private final class Shared: @unchecked Sendable {
        static let depth = 16
        let decoder: BlockDecoder
        let blockSize: Int
        let storage: UnsafeMutableRawBufferPointer
        /// Slot i is written by the thread before it signals `ready`, read by the reader after waiting.
        let outcomes: UnsafeMutablePointer<Outcome?>
        /// Counts free blocks. Created at 0 and raised to `depth`: libdispatch traps when a semaphore
        /// is released below its initial value, which a cancelled pipe may leave.
        let free = DispatchSemaphore(value: 0)
        let ready = DispatchSemaphore(value: 0)
        let stopped = DispatchSemaphore(value: 0)
        let cancelled = Atomic<Bool>(false)

        init(decoder: BlockDecoder, blockSize: Int) {
            self.decoder = decoder
            self.blockSize = blockSize
            storage = .allocate(byteCount: blockSize * Self.depth, alignment: 16)
            outcomes = .allocate(capacity: Self.depth)
            outcomes.initialize(repeating: nil, count: Self.depth)
            for _ in 0..<Self.depth { free.signal() }
        }

        deinit {
            outcomes.deinitialize(count: Self.depth)
            outcomes.deallocate()
            storage.deallocate()
        }

        func block(_ i: Int) -> UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(rebasing: storage[(i * blockSize)..<((i + 1) * blockSize)])
        }

        func produce() {
            var i = 0
            while true {
                free.wait()
                if cancelled.load(ordering: .sequentiallyConsistent) { break }
                let outcome: Outcome
                do {
                    let n = try decoder.decode(into: block(i))
                    outcome = n > 0 ? .data(n) : .end(trailing: Result { try decoder.trailingBytes() })
                } catch {
                    outcome = .failed(error)
                }
                outcomes[i] = outcome
                ready.signal()
                if case .data = outcome { i = (i + 1) % Self.depth } else { break }
            }
            stopped.signal()
        }
    }

    private let shared: Shared
    var state: AnyObject { shared }
    /// The block the reader holds (released at the next call), and the outcome once it is final.
    private var current = 0
    private var holding = false
    private var final: Outcome?

    /// Fails when no thread can be started (the caller then reads on its own thread).
    init?(decoder: BlockDecoder, blockSize: Int) {
        let shared = Shared(decoder: decoder, blockSize: blockSize)
        // Its own thread, not a dispatch queue: the decoder blocks while the reader is behind, and
        // libdispatch on Linux adds workers for blocked ones only after a delay (seconds, measured).
        guard DetachedThread.start({ shared.produce() }) else { return nil }
        self.shared = shared
    }

    deinit {
        shared.cancelled.store(true, ordering: .sequentiallyConsistent)
        shared.free.signal()
        shared.stopped.wait()
    }

    /// The next block and how many bytes it holds, or nil at the end of the stream.
    func next() throws -> (UnsafeMutableRawBufferPointer, Int)? {
        if let final { return try settle(final) }
        if holding {
            holding = false
            current = (current + 1) % Shared.depth
            shared.free.signal()
        }
        shared.ready.wait()
        let outcome = shared.outcomes[current]!
        if case .data(let n) = outcome {
            holding = true
            return (shared.block(current), n)
        }
        final = outcome
        return try settle(outcome)
    }

    private func settle(_ outcome: Outcome) throws -> (UnsafeMutableRawBufferPointer, Int)? {
        if case .failed(let error) = outcome { throw error }
        return nil
    }

    /// After `next()` returned nil: the compressed bytes after the stream's end marker.
    func trailingBytes() throws -> UInt64 {
        guard case .end(let trailing) = final else {
            preconditionFailure("trailingBytes before the end of the \(shared.decoder.streamName) stream")
        }
        return try trailing.get()
    }
}
