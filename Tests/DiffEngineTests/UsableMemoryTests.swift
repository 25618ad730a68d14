@testable import DiffEngine
import Foundation
import Testing

/// What `make` may use by default (`UsableMemory`): the machine's RAM or a control group's limit.
@Suite struct UsableMemoryTests {
    /// cgroup v2: the tightest `memory.max` of the group and its parents ("max" is none).
    @Test func v2TakesTheTightestLimitUpTheTree() {
        let files = [
            "/sys/fs/cgroup/user.slice/app.scope/memory.max": "max\n",
            "/sys/fs/cgroup/user.slice/memory.max": "1073741824\n",
            "/sys/fs/cgroup/memory.max": "4294967296\n",
        ]
        #expect(UsableMemory.cgroupLimit(listing: "0::/user.slice/app.scope\n") { files[$0] } == 1 << 30)
        #expect(UsableMemory.cgroupLimit(listing: "0::/\n") { files[$0] } == 4 << 30)
        #expect(UsableMemory.cgroupLimit(listing: "0::/elsewhere\n") { _ in "max\n" } == nil)
    }

    /// cgroup v1: the memory hierarchy's `memory.limit_in_bytes`, where "unlimited" is a number near
    /// 2^63; other controllers' lines and malformed lines are passed over; v1 and v2 together give
    /// the smaller.
    @Test func v1ReadsTheMemoryHierarchyAndSkipsTheRest() {
        let listing = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/job\nnonsense\n3:cpuset:/\n0::/\n"
        let unlimited = ["/sys/fs/cgroup/memory/process_api/job/memory.limit_in_bytes": "9223372036854771712\n"]
        #expect(UsableMemory.cgroupLimit(listing: listing) { unlimited[$0] } == nil)
        let capped = [
            "/sys/fs/cgroup/memory/process_api/job/memory.limit_in_bytes": "9223372036854771712\n",
            "/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes": "536870912\n",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes": "bogus\n",
            "/sys/fs/cgroup/memory.max": "805306368\n",
        ]
        #expect(UsableMemory.cgroupLimit(listing: listing) { capped[$0] } == 512 << 20)
        #expect(UsableMemory.cgroupLimit(listing: "4:cpu,memory:/a\n") { $0 == "/sys/fs/cgroup/memory/a/memory.limit_in_bytes" ? "300000000" : nil } == 300_000_000)
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
