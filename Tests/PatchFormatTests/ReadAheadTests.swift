#if canImport(Glibc)
import Glibc
#endif
@testable import PatchFormat
import Testing
import TestSupport

/// `DecompressingReader(readAhead: true)`: the stream decoded on a thread of its own.
@Suite struct ReadAheadTests {
    /// Reads the stream 1,000 bytes at a time; returns the bytes read and the error that stopped it.
    func readAll(_ compressed: [UInt8], codec: CodecID, readAhead: Bool, bufferSize: Int) -> (bytes: Int, error: String?) {
        do {
            let reader = try DecompressingReader(streamName: "extra", codec: codec, source: MemorySource(compressed),
                                                 bufferSize: bufferSize, readAhead: readAhead)
            var piece = [UInt8](repeating: 0, count: 1000)
            var read = 0
            while true {
                do {
                    try piece.withUnsafeMutableBytes { try reader.readExactly(into: $0) }
                    read += piece.count
                } catch PatchFormatError.truncatedStream {
                    try reader.finish()
                    return (read, nil)
                } catch {
                    return (read, "\(error)")
                }
            }
        } catch {
            return (-1, "\(error)")
        }
    }

    /// A stream damaged in the middle fails at the same byte with the same message either way, after
    /// the same good bytes (or, where the codec cannot tell, reads the same bytes); so does one cut short.
    @Test(arguments: [CodecID.zstd, .xz, .bzip2, .zlib])
    func damageIsReportedTheSameWay(codec: CodecID) throws {
        var rng = SeededGenerator(seed: 601)
        let data = TestData.structured(3_000_000, rng: &rng)
        let compressed = try HandMadePatch.compress(data, codec: codec)
        var damaged = compressed
        for i in stride(from: compressed.count / 2, to: compressed.count / 2 + 64, by: 1) { damaged[i] ^= 0x5A }
        let cut = Array(compressed.prefix(compressed.count * 2 / 3))
        for input in [compressed, damaged, cut] {
            let inline = readAll(input, codec: codec, readAhead: false, bufferSize: 1 << 16)
            let ahead = readAll(input, codec: codec, readAhead: true, bufferSize: 1 << 16)
            #expect(ahead.bytes == inline.bytes)
            #expect(ahead.error == inline.error)
            if input == compressed {
                #expect(inline.error == nil && inline.bytes == data.count / 1000 * 1000)
            }
            if input == cut {
                #expect(inline.error != nil, "the cut went unnoticed")
            }
        }
    }

    /// A reader dropped part way (an apply that failed elsewhere) stops its thread: none is left
    /// behind, blocked on a block nobody will read. (The thread holds the pipe's state until it exits.)
    @Test(.timeLimit(.minutes(1)))
    func droppedReadersLeaveNoThreads() throws {
        var rng = SeededGenerator(seed: 602)
        let compressed = try HandMadePatch.compress(TestData.structured(2_000_000, rng: &rng), codec: .zstd)
        for i in 0..<200 {
            weak var state: AnyObject?
            do {
                let reader = try DecompressingReader(streamName: "extra", codec: .zstd, source: MemorySource(compressed),
                                                     bufferSize: 1 << 16, readAhead: true)
                state = reader.readAheadState
                #expect(state != nil, "no read-ahead thread was started")
                var piece = [UInt8](repeating: 0, count: i * 9_973 % 300_000)
                try piece.withUnsafeMutableBytes { try reader.readExactly(into: $0) }
            }
            // Dropping the reader waits for its thread to stop; the thread then lets go of the state.
            var waited = 0
            while state != nil && waited < 200 {
                usleep(5_000)
                waited += 1
            }
            #expect(state == nil, "reader \(i): its decoding thread is still running after 1 s")
        }
    }
}
