import CPhoenixSys
import Dispatch
import PatchFormat

/// Hashes and writes a file's buffers on a thread of its own while the caller fills the next one
/// (the apply of a large file, whose applying thread is the busy one). `submit` hands over a buffer
/// and returns at once; the caller leaves that buffer alone until its next `submit`, `drain` or `close`
/// has returned (each waits for the buffer in flight first). One buffer is in flight at a time, so a
/// writer with two buffers waits only when this side is the slower. A failed write is thrown by the
/// next `submit` or `drain`, and nothing is written after it. `close` must be called (the thread waits
/// for work until then).
final class WriteBehind: @unchecked Sendable {
    private let fd: Int32
    private let path: String
    private let hasher = SHA256Hasher()
    private let work = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    /// Set by the caller before `work` is signalled; nil tells the thread to stop.
    @exclusivity(unchecked) private var pending: UnsafeRawBufferPointer?
    /// Set by the thread before `done` is signalled.
    @exclusivity(unchecked) private var failure: (any Error)?
    /// Caller side only.
    @exclusivity(unchecked) private var inFlight = false
    @exclusivity(unchecked) private var closed = false

    /// Nil when no thread could be started (the caller then hashes and writes on its own thread).
    static func start(fd: Int32, path: String) -> WriteBehind? {
        let w = WriteBehind(fd: fd, path: path)
        return DetachedThread.start({ w.run() }) ? w : nil
    }

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    /// Written bytes are handed to the disk every this many (a hint), so that the commit's fsync
    /// finds little left to write.
    static let writebackEvery: Int64 = 8 << 20

    private func run() {
        var written: Int64 = 0
        var handedToDisk: Int64 = 0
        while true {
            work.wait()
            guard let bytes = pending else { return }
            if failure == nil {
                hasher.update(bytes)
                do {
                    try POSIX.writeAll(fd, path, bytes)
                    written += Int64(bytes.count)
                    if written - handedToDisk >= Self.writebackEvery {
                        _ = phx_start_writeback(fd, handedToDisk, written - handedToDisk)
                        handedToDisk = written
                    }
                } catch {
                    failure = error
                }
            }
            done.signal()
        }
    }

    /// Waits for the buffer in flight; throws the first failed write.
    func drain() throws {
        if inFlight {
            done.wait()
            inFlight = false
        }
        if let failure { throw failure }
    }

    func submit(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(!closed, "submit after close")
        try drain()
        guard !bytes.isEmpty else { return }
        pending = bytes
        inFlight = true
        work.signal()
    }

    /// The digest of everything submitted, once written. Then only `close` may follow.
    func finalize() throws -> [UInt8] {
        try drain()
        return hasher.finalize()
    }

    /// Waits for the buffer in flight and stops the thread. Any number of times.
    func close() {
        if closed { return }
        closed = true
        try? drain()
        pending = nil
        work.signal()
    }
}
