#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import PatchFormat
import Synchronization

/// The old file of an apply.
///
/// Read from disk with a second core, it loads on a thread of its own, 1 MiB at a time, and is then
/// hashed there, while the apply already works on the part read: every use of old bytes first calls
/// `need(end)`, which returns at once when the bytes before `end` are in and otherwise waits for them.
/// `verify()` gives the verdict on the whole file (every byte read, its SHA-256 the patch's); the
/// apply asks for it before the result may replace anything, and on every error path, where a bad old
/// file is the error to report (`precedence`). Until then the apply writes only its temporary file,
/// and every old range it reads is bounds-checked against the size, which is checked up front.
///
/// With one core, or for bytes already in memory, the file is read and checked whole before the apply
/// starts. Memory: exactly the file's size.
final class OldInput: @unchecked Sendable {
    static let chunk = 1 << 20
    /// Files from this size are read (and results hashed and written) on other threads; below it,
    /// starting them costs more than it saves. Tests lower it (`$besideFrom.withValue(0)`) to take
    /// that path with small files.
    @TaskLocal static var besideFrom: UInt64 = 1 << 22

    /// Whether a file of `size` bytes is read, or written, on a thread of its own.
    static func beside(_ size: UInt64) -> Bool { StreamReading.readAhead && size >= besideFrom }

    let path: String
    let bytes: UnsafeRawBufferPointer
    private let storage: UnsafeMutableRawBufferPointer?
    private let expectedSHA256: [UInt8]?
    /// How far the applying thread knows the file is read (its own copy: the fast path of `need`).
    @exclusivity(unchecked) private var ready: Int
    /// Whether a loading thread runs (or ran) for this file.
    @exclusivity(unchecked) private var background = false
    @exclusivity(unchecked) private var joined = false

    // Shared with the loading thread.
    private let loaded = Atomic<Int>(0)
    private let ended = Atomic<Bool>(false)
    private let waiting = Atomic<Bool>(false)
    private let wake = DispatchSemaphore(value: 0)
    private let stopped = DispatchSemaphore(value: 0)
    /// Written by the loader before it sets `ended`; read after `ended` (or after `stopped`).
    @exclusivity(unchecked) private var outcome: Result<[UInt8]?, any Error> = .success(nil)

    /// Bytes already in memory, used as they are (no check here: the caller has made its own).
    init(bytes: UnsafeRawBufferPointer) {
        path = "(memory)"
        self.bytes = bytes
        storage = nil
        expectedSHA256 = nil
        ready = bytes.count
        joined = true
    }

    /// Opens `path` and starts reading it: on another thread if `background` and one can be started,
    /// else here, in which case a read error or a checksum mismatch is thrown from here.
    /// - Parameters:
    ///   - expectedSize: the size the patch declares (checked here, before anything is read).
    ///   - expectedSHA256: the digest the patch declares, checked by `verify()`.
    init(path: String, expectedSize: UInt64?, expectedSHA256: [UInt8]?, background: Bool) throws {
        self.path = path
        self.expectedSHA256 = expectedSHA256
        let fd = try FileIO.openRead(path)
        let size: UInt64
        do {
            size = try FileIO.fileSize(fd, path)
            if let expectedSize, size != expectedSize {
                throw PatcherError.oldSizeMismatch(path: path, expected: expectedSize, actual: size)
            }
            guard size < UInt64(Int.max / 2) else {
                throw PatcherError.io(operation: "file too large:", path: path, errno: EFBIG, message: "\(size) bytes")
            }
        } catch {
            close(fd)
            throw error
        }
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(size), alignment: 16)
        self.storage = storage
        bytes = UnsafeRawBufferPointer(storage)
        ready = 0
        if background && size > 0 {
            // The thread holds the object (and so the buffer) until it has stopped.
            self.background = DetachedThread.start { [self] in load(fd: fd) }
            if self.background { return }
        }
        load(fd: fd)
        joined = true
        try verify()
    }

    deinit { storage?.deallocate() }

    var count: Int { bytes.count }

    /// Returns once the bytes before `end` (at most the file's size) are read; throws the read's error
    /// if it stopped before them.
    @inline(__always)
    func need(_ end: Int) throws {
        if end > ready { try waitFor(end) }
    }

    @inline(never)
    private func waitFor(_ end: Int) throws {
        let end = min(end, bytes.count)
        while true {
            let n = loaded.load(ordering: .sequentiallyConsistent)
            if n >= end {
                ready = n
                return
            }
            if ended.load(ordering: .sequentiallyConsistent) {
                // `loaded` is stored before `ended`: look once more, then only a failed read is short.
                let last = loaded.load(ordering: .sequentiallyConsistent)
                if last >= end {
                    ready = last
                    return
                }
                try verify()
                preconditionFailure("old file loader ended at \(last) of \(bytes.count) bytes without an error")
            }
            // Announce the wait, then look again: either this sees the loader's progress or the
            // loader sees the flag and signals (a signal left over only makes one later wait return
            // early, and the loop looks again).
            waiting.store(true, ordering: .sequentiallyConsistent)
            if loaded.load(ordering: .sequentiallyConsistent) >= end || ended.load(ordering: .sequentiallyConsistent) {
                continue
            }
            wake.wait()
        }
    }

    /// Waits for the whole file and checks it: throws the read's error, or `oldChecksumMismatch`;
    /// returns the file's SHA-256 when the patch declared one. Any number of times.
    @discardableResult
    func verify() throws -> [UInt8]? {
        if !joined {
            stopped.wait()
            joined = true
        }
        let digest = try outcome.get()
        ready = bytes.count  // only once the whole file is known to be read
        if let expectedSHA256, let digest, digest != expectedSHA256 {
            throw PatcherError.oldChecksumMismatch(path: path, expected: Hex.encode(expectedSHA256), actual: Hex.encode(digest))
        }
        return digest
    }

    /// The error to report when the apply failed with `error`: the old file's own, if it has one (a
    /// wrong old file explains whatever else went wrong), else `error`.
    func precedence(_ failure: any Error) -> any Error {
        do { try verify() } catch let oldError { return oldError }
        return failure
    }

    /// Reads the file into the buffer in order, publishing each chunk, then hashes it (when a digest
    /// is expected), closes `fd` and records the outcome.
    private func load(fd: Int32) {
        let hasher = expectedSHA256 == nil ? nil : SHA256Hasher()
        defer {
            close(fd)
            ended.store(true, ordering: .sequentiallyConsistent)
            if waiting.exchange(false, ordering: .sequentiallyConsistent) { wake.signal() }
            stopped.signal()
        }
        guard let storage else { return }
        var offset = 0
        do {
            while offset < storage.count {
                let want = min(Self.chunk, storage.count - offset)
                let part = UnsafeMutableRawBufferPointer(rebasing: storage[offset..<offset + want])
                let n = try FileIO.pread(fd, path, into: part, at: UInt64(offset))
                guard n == want else {
                    throw PatcherError.io(operation: "file shrank while reading:", path: path, errno: EIO,
                                          message: "\(offset + n) of \(storage.count) bytes")
                }
                offset += want
                loaded.store(offset, ordering: .sequentiallyConsistent)
                if waiting.exchange(false, ordering: .sequentiallyConsistent) { wake.signal() }
            }
            // Hashed after the whole read: the apply's first block of old-context diff bytes spans
            // up to 16 MiB of old, and waits for those bytes, not for their digest.
            hasher?.update(UnsafeRawBufferPointer(storage))
            outcome = .success(hasher?.finalize())
        } catch {
            outcome = .failure(error)
        }
    }
}
