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
        let mounts = mounts(mountinfo: readSmallFile("/proc/self/mountinfo"))
        let cgroups = readSmallFile("/proc/self/cgroup").flatMap { cgroupLimit(listing: $0, mounts: mounts, read: readSmallFile) }
        return [physical, cgroups].compactMap { $0 }.min()
    }

    /// The text of a file of /proc or /sys (whose sizes stat reports as 0 or a page), read to its end
    /// (at most 4 MiB); nil if it cannot be read.
    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while bytes.count < 4 << 20 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { break }
            bytes += chunk[..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The part of `bytes()` that `make` plans for by default (three quarters: the rest is for the
    /// other programs of a desktop, and the estimate's error), and never less than the low-memory
    /// mode's minimum.
    public static func defaultMakeLimit() -> Int? {
        bytes().map { max($0 / 4 * 3, DiffEngine.minimumMemoryLimit) }
    }

    /// A control group hierarchy's mount: the group path it shows (`root`, "/" unless a container
    /// sees only its own part) at `point`.
    struct Mount: Equatable {
        var root: String
        var point: String
    }

    /// Where the memory hierarchies are mounted, from the text of /proc/self/mountinfo ("id parent
    /// major:minor root point options... - type source super-options"): cgroup v1's with the
    /// `memory` controller (alone or mounted with others, as "cpu,memory"), and cgroup v2's. Without
    /// mountinfo, the usual places: /sys/fs/cgroup/memory and /sys/fs/cgroup.
    static func mounts(mountinfo: String?) -> (v1: Mount?, v2: Mount?) {
        guard let mountinfo else {
            return (Mount(root: "/", point: "/sys/fs/cgroup/memory"), Mount(root: "/", point: "/sys/fs/cgroup"))
        }
        var v1: Mount? = nil, v2: Mount? = nil
        for line in mountinfo.split(whereSeparator: \.isNewline) {
            let fields = line.split(separator: " ")
            guard let dash = fields.firstIndex(of: "-"), dash >= 5, dash + 3 < fields.count else { continue }
            let mount = Mount(root: String(fields[3]), point: String(fields[4]))
            switch fields[dash + 1] {
            case "cgroup" where fields[dash + 3].split(separator: ",").contains("memory"): v1 = v1 ?? mount
            case "cgroup2": v2 = v2 ?? mount
            default: continue
            }
        }
        return (v1, v2)
    }

    /// The tightest memory limit of the control groups in `listing` (the text of /proc/self/cgroup),
    /// their parents included up to the top of what is mounted: cgroup v2's `memory.max`, v1's
    /// `memory.limit_in_bytes`, at the hierarchies' `mounts`. `read` returns a file's text or nil.
    /// "max" and v1's near-2^63 "unlimited" count as no limit.
    static func cgroupLimit(listing: String, mounts: (v1: Mount?, v2: Mount?), read: (String) -> String?) -> Int? {
        var limits: [Int] = []
        for line in listing.split(whereSeparator: \.isNewline) {
            // hierarchy-ID:controllers:path
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[2].hasPrefix("/") else { continue }
            let mount: Mount?, file: String
            if fields[0] == "0" && fields[1].isEmpty {
                (mount, file) = (mounts.v2, "memory.max")
            } else if fields[1].split(separator: ",").contains("memory") {
                (mount, file) = (mounts.v1, "memory.limit_in_bytes")
            } else {
                continue
            }
            guard let mount else { continue }
            // The group's path below the mount's root (a container may see only its own subtree).
            var path = String(fields[2])
            if mount.root != "/" && (path == mount.root || path.hasPrefix(mount.root + "/")) {
                path = String(path.dropFirst(mount.root.count))
            }
            // The group itself, then each parent up to the mount point.
            var components = path.split(separator: "/").map(String.init)
            while true {
                let dir = components.isEmpty ? mount.point : mount.point + "/" + components.joined(separator: "/")
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
