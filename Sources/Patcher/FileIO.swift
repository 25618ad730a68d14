#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import PatchFormat
import TreeIO

/// Thin POSIX wrappers that turn failures into `PatcherError.io` naming the path and the operation.
enum FileIO {
    static func error(_ operation: String, _ path: String, _ code: Int32 = errno) -> PatcherError {
        .io(operation: operation, path: path, errno: code, message: String(cString: strerror(code)))
    }

    static func openRead(_ path: String) throws -> Int32 {
        // O_NONBLOCK: a FIFO is refused by `fileSize`, not waited on here (regular files ignore it).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw error("cannot open", path) }
        return fd
    }

    static func fileSize(_ fd: Int32, _ path: String) throws -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw error("cannot stat", path) }
        if POSIX.isNullDevice(st) { return 0 }  // a patch from nothing: /dev/null as OLD, as for make
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw PatcherError.io(operation: "not a regular file:", path: path, errno: EINVAL, message: "expected a regular file")
        }
        return UInt64(st.st_size)
    }

    static func statPath(_ path: String) throws -> stat {
        var st = stat()
        guard stat(path, &st) == 0 else { throw error("cannot stat", path) }
        return st
    }

    /// Reads exactly `buffer.count` bytes at `offset`, retrying short reads and EINTR.
    static func pread(_ fd: Int32, _ path: String, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw error("cannot read", path)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }
}

/// A byte range of an open file as a `ByteSource` (positional reads: several sources may share one fd).
final class FileRangeSource: ByteSource {
    private let fd: Int32
    private let path: String
    private var offset: UInt64
    private let end: UInt64

    init(fd: Int32, path: String, offset: UInt64, length: UInt64) {
        self.fd = fd
        self.path = path
        self.offset = offset
        self.end = offset + length
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let want = Int(min(UInt64(buffer.count), end - offset))
        if want == 0 { return 0 }
        let n = try FileIO.pread(fd, path, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), at: offset)
        guard n == want else {
            throw PatcherError.io(operation: "patch file shrank while reading:", path: path, errno: EIO,
                                  message: "short read at offset \(offset + UInt64(n))")
        }
        offset += UInt64(n)
        return n
    }
}
