#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CPhoenixSys
import PatchFormat

/// Writes a file beside its destination and moves it into place only on `commit()`: buffered writes,
/// SHA-256 of everything written, `fsync`, permissions, atomic `rename`, then `fsync` of the directory.
/// Until `commit()` the destination is untouched; `abort()` (or deinit) removes the temporary file, and
/// so does a signal that stops a program which installed `phx_install_cleanup_handlers` (the command
/// line does), which removes every writer's temporary file first.
/// With `behind`, hashing and writing run on a thread of its own (`WriteBehind`), a buffer behind
/// the caller. Memory: one 1 MiB buffer, two with `behind`.
///
/// A spool (`spool: true`) is a scratch file that is never committed nor hashed (a stream read back
/// into a patch, `copyContents`): its name is removed as soon as it is made, so it lives only as long
/// as the writer's descriptor, and a process killed outright (SIGKILL, which no handler sees) leaves
/// nothing behind.
public final class AtomicFileWriter {
    public let destination: String
    /// The temporary file (a spool's name is gone once it is made).
    public let temporaryPath: String
    /// The permission bits the result gets.
    private let mode: mode_t
    @exclusivity(unchecked) public private(set) var bytesWritten: UInt64 = 0
    @exclusivity(unchecked) private var fd: Int32
    private let hasher = SHA256Hasher()
    /// With `behind`: the thread that hashes and writes, and the buffer it may be reading.
    private let writeBehind: WriteBehind?
    @exclusivity(unchecked) private var spare: UnsafeMutableRawBufferPointer?
    @exclusivity(unchecked) private var buffer: UnsafeMutableRawBufferPointer
    @exclusivity(unchecked) private var buffered = 0
    @exclusivity(unchecked) private var finished = false
    /// The temporary file's slot among those removed on a signal (-1: not tracked).
    private let signalSlot: Int32
    /// A spool: the file has no name (see above).
    private let spool: Bool

    /// - Parameters:
    ///   - mode: permission bits for the result (for example the old file's).
    ///   - behind: hash and write on another thread (when one can be started); the same bytes and
    ///     digest, the same errors (from a later call).
    ///   - spool: a scratch file beside `destination`, never committed (above).
    public init(destination: String, mode: mode_t = 0o644, behind: Bool = false, spool: Bool = false) throws {
        self.destination = destination
        self.mode = mode
        self.spool = spool
        let dir = POSIX.directory(of: destination)
        var template = Array("\(dir)/.\(Self.shortened(POSIX.fileName(of: destination))).phx-tmp-XXXXXX".utf8CString)
        // Created and registered for removal on a signal in one step (`phx_temp_create`).
        var slot: Int32 = -1
        let fd = template.withUnsafeMutableBufferPointer { phx_temp_create($0.baseAddress!, &slot) }
        guard fd >= 0 else { throw POSIX.error("cannot create a temporary file in", dir) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        self.fd = fd
        self.temporaryPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        if spool {
            // Unnamed from here on. (Not unlinked again by `abort`: by then another file may have the name.)
            unlink(temporaryPath)
            phx_temp_forget(slot)
            slot = -1
        }
        self.signalSlot = slot
        self.buffer = .allocate(byteCount: 1 << 20, alignment: 16)
        self.writeBehind = behind ? WriteBehind.start(fd: fd, path: Self.label(destination, temporaryPath, spool: spool)) : nil
        self.spare = writeBehind == nil ? nil : .allocate(byteCount: 1 << 20, alignment: 16)
        if fchmod(fd, mode & 0o7777) != 0 {
            let e = POSIX.error("cannot set permissions on", errorLabel)
            abort()
            throw e
        }
    }

    /// `name`, cut (at a character) so that `.NAME.phx-tmp-XXXXXX` fits in a file name's 255 bytes:
    /// a file may have a name of 255 bytes itself.
    static func shortened(_ name: String) -> String {
        let room = 255 - ".".utf8.count - ".phx-tmp-XXXXXX".utf8.count
        guard name.utf8.count > room else { return name }
        var out = "", used = 0
        for c in name {
            used += c.utf8.count
            if used > room { break }
            out.append(c)
        }
        return out
    }

    /// How errors name the file: the destination, which the user knows, and the temporary file, which
    /// is gone by the time the error is read (ENOSPC named only `.p.phx-tmp-ikRIZa`).
    private var errorLabel: String { Self.label(destination, temporaryPath, spool: spool) }

    private static func label(_ destination: String, _ temporaryPath: String, spool: Bool) -> String {
        spool ? "a scratch file beside \(destination)"
              : "\(destination) (as its temporary file \(POSIX.fileName(of: temporaryPath)), removed on failure)"
    }

    deinit {
        abort()
        writeBehind?.close()
        buffer.deallocate()
        spare?.deallocate()
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(!finished, "write after commit/abort")
        bytesWritten += UInt64(bytes.count)
        if writeBehind != nil {
            // Everything goes through the two buffers: the thread behind reads one of them.
            var rest = bytes
            while !rest.isEmpty {
                if buffered == buffer.count { try flush() }
                let n = min(rest.count, buffer.count - buffered)
                (buffer.baseAddress! + buffered).copyMemory(from: rest.baseAddress!, byteCount: n)
                buffered += n
                rest = UnsafeRawBufferPointer(rebasing: rest[n...])
            }
            return
        }
        if bytes.count >= buffer.count {
            try flush()
            if !spool { hasher.update(bytes) }
            try POSIX.writeAll(fd, errorLabel, bytes)
            return
        }
        if buffered + bytes.count > buffer.count { try flush() }
        (buffer.baseAddress! + buffered).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        buffered += bytes.count
    }

    private func flush() throws {
        if buffered > 0 {
            // Hashing whole buffers, not each small write, keeps SHA-256 at full speed.
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<buffered])
            if let writeBehind, let free = spare {
                // Hashed and written there; the next bytes go to the other buffer, which the next
                // submit waits to be free.
                try writeBehind.submit(bytes)
                buffered = 0
                spare = buffer
                buffer = free
                return
            }
            if !spool { hasher.update(bytes) }
            try POSIX.writeAll(fd, errorLabel, bytes)
            buffered = 0
        }
    }

    /// Flushes buffered bytes to the temporary file (without committing).
    public func flushToDisk() throws {
        try flush()
        try writeBehind?.drain()
    }

    /// Appends everything written to this (uncommitted) file to `other`, 1 MiB at a time.
    public func copyContents(to other: AtomicFileWriter) throws {
        try flushToDisk()
        var offset: off_t = 0
        while true {
            let n = pread(fd, buffer.baseAddress!, buffer.count, offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw POSIX.error("cannot read", errorLabel)
            }
            if n == 0 { break }
            try other.write(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            offset += off_t(n)
        }
    }

    /// SHA-256 of everything written. Call once, before `commit()`.
    public func digest() throws -> [UInt8] {
        precondition(!spool, "a spool is not hashed")
        try flush()
        return try writeBehind?.finalize() ?? hasher.finalize()
    }

    /// Flushes, fsyncs and renames the temporary file over the destination.
    public func commit() throws {
        precondition(!finished, "commit twice")
        precondition(!spool, "a spool is never committed")
        do {
            try flushToDisk()
            guard fsync(fd) == 0 else { throw POSIX.error("cannot fsync", errorLabel) }
            guard close(fd) == 0 else { fd = -1; throw POSIX.error("cannot close", temporaryPath) }
            fd = -1
            try POSIX.checkReplaceable(destination)
            guard rename(temporaryPath, destination) == 0 else { throw POSIX.error("cannot rename into", destination) }
            phx_temp_forget(signalSlot)
        } catch {
            abort()
            throw error
        }
        finished = true
        writeBehind?.close()
        POSIX.fsyncPath(POSIX.directory(of: destination), directory: true)
    }

    /// Discards the temporary file. Safe to call more than once.
    public func abort() {
        if finished { return }
        finished = true
        writeBehind?.close()
        if fd >= 0 { close(fd); fd = -1 }
        if !spool { unlink(temporaryPath) }
        phx_temp_forget(signalSlot)
    }

    /// Copies the owner and group of `path` onto the temporary file (best effort: only root may).
    public func copyOwnership(from st: stat) {
        guard fd >= 0 else { return }
        _ = fchown(fd, st.st_uid, st.st_gid)
        // fchown clears the set-user-ID and set-group-ID bits: the mode again, after it.
        _ = fchmod(fd, mode & 0o7777)
    }
}
