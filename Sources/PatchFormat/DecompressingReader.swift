/// Reads one compressed stream through a fixed-size window: memory is two buffers of `bufferSize`
/// bytes plus the codec's state, whatever the stream's length. Every failure names the stream.
public final class DecompressingReader {
    public let streamName: String
    private let decoder: any StreamDecoder
    private let source: any ByteSource
    private var input: UnsafeMutableRawBufferPointer
    @exclusivity(unchecked) private var inputStart = 0
    @exclusivity(unchecked) private var inputEnd = 0
    @exclusivity(unchecked) private var sourceExhausted = false
    private var output: UnsafeMutableRawBufferPointer
    @exclusivity(unchecked) private var outputStart = 0
    @exclusivity(unchecked) private var outputEnd = 0
    @exclusivity(unchecked) private var streamEnded = false
    /// Decompressed bytes handed out so far.
    @exclusivity(unchecked) public private(set) var delivered: UInt64 = 0

    public init(streamName: String, codec: CodecID, source: any ByteSource, bufferSize: Int = 1 << 16) throws {
        precondition(bufferSize > 0, "bufferSize must be positive, got \(bufferSize)")
        self.streamName = streamName
        self.decoder = try codec.makeDecoder()
        self.source = source
        self.input = .allocate(byteCount: bufferSize, alignment: 16)
        self.output = .allocate(byteCount: bufferSize, alignment: 16)
    }

    deinit {
        input.deallocate()
        output.deallocate()
    }

    private func refillInput() throws {
        if inputStart == inputEnd { inputStart = 0; inputEnd = 0 }
        if sourceExhausted || inputEnd == input.count { return }
        let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: input[inputEnd...]))
        if n == 0 { sourceExhausted = true } else { inputEnd += n }
    }

    /// Decodes more output into the (empty) output window. Returns false when the stream has ended.
    private func fillOutput() throws -> Bool {
        precondition(outputStart == outputEnd, "fillOutput with \(outputEnd - outputStart) bytes still buffered")
        outputStart = 0
        outputEnd = 0
        while outputEnd == 0 {
            if streamEnded { return false }
            if inputStart == inputEnd { try refillInput() }
            let available = UnsafeRawBufferPointer(rebasing: input[inputStart..<inputEnd])
            let step: DecodeStep
            do {
                step = try decoder.decode(input: available, output: output,
                                          inputIsLast: sourceExhausted)
            } catch let PatchFormatError.corruptStream(_, detail) {
                throw PatchFormatError.corruptStream(stream: streamName, detail: detail + " (after \(delivered) decompressed bytes)")
            }
            inputStart += step.consumed
            outputEnd = step.produced
            if step.ended {
                streamEnded = true
                return outputEnd > 0
            }
            if step.consumed == 0 && step.produced == 0 {
                if sourceExhausted && inputStart == inputEnd {
                    // No input left and the codec has not seen its end marker.
                    throw PatchFormatError.corruptStream(
                        stream: streamName,
                        detail: "compressed data ends before the end of the stream (after \(delivered) decompressed bytes)")
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
        return true
    }

    private func compactInput() {
        if inputStart > 0 {
            let n = inputEnd - inputStart
            if n > 0 { input.baseAddress!.copyMemory(from: input.baseAddress!.advanced(by: inputStart), byteCount: n) }
            inputStart = 0
            inputEnd = n
        }
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
        if leftover > 0 {
            throw PatchFormatError.trailingData(location: "after the \(streamName) stream",
                                                detail: "\(leftover)\(leftover > 1 << 20 ? "+" : "") bytes follow its end marker")
        }
    }
}
