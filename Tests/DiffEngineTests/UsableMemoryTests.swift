@testable import DiffEngine
import Foundation
import Testing

/// What `make` may use by default (`UsableMemory`): the machine's RAM or a control group's limit.
@Suite struct UsableMemoryTests {
    /// The hierarchies where they usually are (what `mounts` gives without mountinfo).
    static let usual = UsableMemory.mounts(mountinfo: nil)

    /// cgroup v2: the tightest `memory.max` of the group and its parents ("max" is none).
    @Test func v2TakesTheTightestLimitUpTheTree() {
        let files = [
            "/sys/fs/cgroup/user.slice/app.scope/memory.max": "max\n",
            "/sys/fs/cgroup/user.slice/memory.max": "1073741824\n",
            "/sys/fs/cgroup/memory.max": "4294967296\n",
        ]
        #expect(UsableMemory.cgroupLimit(listing: "0::/user.slice/app.scope\n", mounts: Self.usual) { files[$0] } == 1 << 30)
        #expect(UsableMemory.cgroupLimit(listing: "0::/\n", mounts: Self.usual) { files[$0] } == 4 << 30)
        #expect(UsableMemory.cgroupLimit(listing: "0::/elsewhere\n", mounts: Self.usual) { _ in "max\n" } == nil)
    }

    /// cgroup v1: the memory hierarchy's `memory.limit_in_bytes`, where "unlimited" is a number near
    /// 2^63; other controllers' lines and malformed lines are passed over; v1 and v2 together give
    /// the smaller.
    @Test func v1ReadsTheMemoryHierarchyAndSkipsTheRest() {
        let listing = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/job\nnonsense\n3:cpuset:/\n0::/\n"
        let unlimited = ["/sys/fs/cgroup/memory/process_api/job/memory.limit_in_bytes": "9223372036854771712\n"]
        #expect(UsableMemory.cgroupLimit(listing: listing, mounts: Self.usual) { unlimited[$0] } == nil)
        let capped = [
            "/sys/fs/cgroup/memory/process_api/job/memory.limit_in_bytes": "9223372036854771712\n",
            "/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes": "536870912\n",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes": "bogus\n",
            "/sys/fs/cgroup/memory.max": "805306368\n",
        ]
        #expect(UsableMemory.cgroupLimit(listing: listing, mounts: Self.usual) { capped[$0] } == 512 << 20)
        #expect(UsableMemory.cgroupLimit(listing: "4:cpu,memory:/a\n", mounts: Self.usual) { $0 == "/sys/fs/cgroup/memory/a/memory.limit_in_bytes" ? "300000000" : nil } == 300_000_000)
    }

    /// The mounts come from mountinfo: v1's memory controller mounted with another ("cpu,memory"),
    /// v2's hierarchy, and a container that sees only its own group as the mount's root.
    @Test func mountsAreReadFromMountinfo() {
        let mountinfo = """
            31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
            32 31 0:29 / /sys/fs/cgroup/cpu,memory rw,relatime - cgroup cgroup rw,cpu,memory
            33 31 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
            40 31 0:35 /docker/abc /sys/fs/cgroup/unified rw,relatime shared:5 - cgroup2 cgroup2 rw
            """
        let m = UsableMemory.mounts(mountinfo: mountinfo)
        #expect(m.v1 == UsableMemory.Mount(root: "/", point: "/sys/fs/cgroup/cpu,memory"))
        #expect(m.v2 == UsableMemory.Mount(root: "/docker/abc", point: "/sys/fs/cgroup/unified"))
        let files = [
            "/sys/fs/cgroup/cpu,memory/job/memory.limit_in_bytes": "700000000\n",
            "/sys/fs/cgroup/unified/app/memory.max": "600000000\n",
            "/sys/fs/cgroup/unified/memory.max": "max\n",
        ]
        #expect(UsableMemory.cgroupLimit(listing: "4:cpu,memory:/job\n", mounts: m) { files[$0] } == 700_000_000)
        // The container's group is the mount's root: its path is taken below it.
        #expect(UsableMemory.cgroupLimit(listing: "0::/docker/abc/app\n", mounts: m) { files[$0] } == 600_000_000)
        // No memory hierarchy mounted: no limit from it.
        #expect(UsableMemory.cgroupLimit(listing: "4:memory:/job\n", mounts: (nil, nil)) { _ in "1000" } == nil)
    }

    /// On this machine: no more than its RAM (/proc/meminfo), and the default limit is three
    /// quarters of it (at least the low-memory mode's minimum).
    @Test func thisMachineIsBoundedByItsRAM() throws {
        let meminfo = try String(contentsOfFile: "/proc/meminfo", encoding: .utf8)
        let total = try #require(meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") })
        let kib = try #require(Int(total.split(separator: " ")[1]))
        let usable = try #require(UsableMemory.bytes())
        #expect(usable > 0 && usable <= kib * 1024 + (1 << 20), "\(usable) bytes usable, MemTotal \(kib) KiB")
        #expect(UsableMemory.defaultMakeLimit() == max(usable / 4 * 3, DiffEngine.minimumMemoryLimit))
        // /proc's files say they are empty (stat size 0) and still have text to read.
        let listing = try #require(UsableMemory.readSmallFile("/proc/self/cgroup"))
        #expect(listing.contains(":/"), "\(listing)")
        #expect(UsableMemory.readSmallFile("/nonexistent/file") == nil)
    }
}
