#if canImport(Glibc)
import Glibc
#endif

/// How much memory this process may use: the machine's RAM, or less where a control group caps the
/// process (a container, a systemd slice, a CI runner). `phoenix-diff make` without `--memory-limit`
/// takes three quarters of it as the limit, so that a diff the usual engine cannot hold here takes
/// the low-memory mode instead of being killed by the kernel half-way.
public enum UsableMemory {
    /// The smaller of the machine's RAM and the control group limits that apply to this process;
    /// nil if neither can be read.
    public static func bytes() -> Int? {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        let physical = pages > 0 && pageSize > 0 ? pages * pageSize : nil
        let cgroups = readSmallFile("/proc/self/cgroup").flatMap { cgroupLimit(listing: $0, read: readSmallFile) }
        return [physical, cgroups].compactMap { $0 }.min()
    }

    /// The text of a file of /proc or /sys (whose sizes stat reports as 0 or a page), up to 64 KiB;
    /// nil if it cannot be read.
    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 1 << 16)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { break }
            done += n
        }
        return String(decoding: bytes[..<done], as: UTF8.self)
    }

    /// The part of `bytes()` that `make` plans for by default (three quarters: the rest is for the
    /// other programs of a desktop, and the estimate's error), and never less than the low-memory
    /// mode's minimum.
    public static func defaultMakeLimit() -> Int? {
        bytes().map { max($0 / 4 * 3, DiffEngine.minimumMemoryLimit) }
    }

    /// The tightest memory limit of the control groups in `listing` (the text of /proc/self/cgroup),
    /// their parents included: cgroup v2's `memory.max` under /sys/fs/cgroup, v1's
    /// `memory.limit_in_bytes` under /sys/fs/cgroup/memory. `read` returns a file's text or nil.
    /// "max" and v1's near-2^63 "unlimited" count as no limit.
    static func cgroupLimit(listing: String, read: (String) -> String?) -> Int? {
        var limits: [Int] = []
        for line in listing.split(whereSeparator: \.isNewline) {
            // hierarchy-ID:controllers:path
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[2].hasPrefix("/") else { continue }
            let controllers = fields[1].split(separator: ",")
            let (root, file): (String, String)
            if fields[0] == "0" && fields[1].isEmpty {
                (root, file) = ("/sys/fs/cgroup", "memory.max")
            } else if controllers.contains("memory") {
                (root, file) = ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
            } else {
                continue
            }
            // The group itself, then each parent up to the root of the hierarchy.
            var components = fields[2].split(separator: "/").map(String.init)
            while true {
                let dir = components.isEmpty ? root : root + "/" + components.joined(separator: "/")
                if let text = read(dir + "/" + file),
                   let word = text.split(whereSeparator: \.isWhitespace).first, let value = Int(word), value > 0, value < 1 << 62 {
                    limits.append(value)
                }
                if components.isEmpty { break }
                components.removeLast()
            }
        }
        return limits.min()
    }
}
