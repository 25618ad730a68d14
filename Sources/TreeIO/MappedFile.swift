#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A whole file mapped read-only, for inputs that may be larger than memory. The pages read stay in the
/// process's resident set until `release` gives them back (they remain in the page cache, so reading
/// them again costs a minor fault, not a disk read); that is how the low-memory diff keeps its peak
/// resident size under a limit while addressing files of any size.
///
/// The file must not be truncated while mapped: reading a page past the new end raises SIGBUS (which
/// `phoenix-diff` reports as an I/O error, after removing its temporary files). The diff engine maps
/// files it is only reading and hashes them, so a change that is not a truncation is caught by the checksums.
/// (Sendable: nothing changes after `init`, and `release` may be called from any thread.)
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let bytes: UnsafeBufferPointer<UInt8>
    private let base: UnsafeMutableRawPointer?
    private let length: Int
    private static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Maps the file at `path`; with `followSymlinks` false a symlink there is an error (O_NOFOLLOW), as
    /// for the files of a tree, which must be the files the scan saw.
    public init(path: String, followSymlinks: Bool = true) throws {
        self.path = path
        let (fd, st) = try POSIX.openRegularFile(path, followSymlinks: followSymlinks)
        defer { close(fd) }
        length = Int(st.st_size)
        if length == 0 {
            base = nil
            bytes = UnsafeBufferPointer(start: nil, count: 0)
            return
        }
        guard let p = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw POSIX.error("cannot map", path)
        }
        // No huge-page (PMD) mappings of the file: where the page cache holds it in 2 MiB folios, one
        // read anywhere could map all 2 MiB, and the resident set is what a memory limit counts. (None
        // were seen here; the smaller large folios that were, ~640 KiB a read, are bounded by the
        // low-memory mode's measured release, `DiffEngine.releaseOldIfOver`.)
        _ = madvise(p, length, MADV_NOHUGEPAGE)
        base = p
        bytes = UnsafeBufferPointer(start: p.assumingMemoryBound(to: UInt8.self), count: length)
    }

    deinit {
        if let base { munmap(base, length) }
    }

    public var count: Int { length }

    /// Drops the pages wholly inside `range` from the resident set (the mapping stays valid).
    public func release(_ range: Range<Int>) {
        guard let base else { return }
        let lo = min(length, (max(0, range.lowerBound) + Self.pageSize - 1) / Self.pageSize * Self.pageSize)
        let hi = min(length, range.upperBound) / Self.pageSize * Self.pageSize
        if hi > lo { _ = madvise(base + lo, hi - lo, MADV_DONTNEED) }
    }

    /// Drops every resident page of the file.
    public func releaseAll() { release(0..<(length + Self.pageSize)) }

    /// /proc/self/statm, opened once and read again from its start each time (the file is made afresh
    /// at offset 0): the low-memory mode reads it every 8 lookups into old, and opening it each time
    /// took a fifth of that mode's time on the Django tar.
    private static let statm = openStatm()
    private static func openStatm() -> Int32 { open("/proc/self/statm", O_RDONLY | O_CLOEXEC) }

    /// The process's resident file-backed memory (Linux: the shared pages of /proc/self/statm, which
    /// are mostly mapped files), or 0 where that cannot be read. Reading old at random (the low-memory
    /// matcher's lookups) maps more than the page read: the kernel's fault-around, or a whole large
    /// folio of the page cache (~640 KiB measured), so only a measurement says when to `releaseAll`.
    public static func residentFileBytes() -> Int {
        // If the first open failed (out of descriptors, say), each call tries its own.
        let fd = statm >= 0 ? statm : openStatm()
        guard fd >= 0 else { return 0 }
        defer { if fd != statm { close(fd) } }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { buffer in
            let n = pread(fd, buffer.baseAddress!, buffer.count, 0)
            // "size resident shared text lib data dt", in pages: the third field.
            var field = 0, pages = 0, i = 0
            while i < n && field <= 2 {
                let c = buffer[i]
                if c == UInt8(ascii: " ") {
                    field += 1
                } else if field == 2 {
                    guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"), pages < Int.max / 100 else { return 0 }
                    pages = pages * 10 + Int(c - UInt8(ascii: "0"))
                }
                i += 1
            }
            return field >= 2 ? pages * pageSize : 0
        }
    }
}
