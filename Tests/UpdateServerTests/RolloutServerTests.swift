import Foundation
import Hummingbird
import HTTPTypes
import HummingbirdTesting
import Testing
import TestSupport
import TreeIO
import UpdateModels
import UpdateServer

/// Phased rollout, held-back clients, bypasses, the schedule, auto-pause and A/B variants, through the
/// service and its HTTP routes, on a real SQLite catalog.
@Suite(.serialized) struct RolloutServerTests {
    static let p = ServerFixture.platform

    /// A client id whose bucket is inside (or outside) each named release's current percentage.
    static func clientID(inside: [String: Int] = [:], outside: [String: Int] = [:]) -> String {
        for n in 0..<1_000_000 {
            let id = "client-\(n)"
            let fits = inside.allSatisfy { RolloutBucket.isInside(bucket: RolloutBucket.bucket(clientID: id, platform: p, version: $0.key), percent: $0.value) }
                && outside.allSatisfy { !RolloutBucket.isInside(bucket: RolloutBucket.bucket(clientID: id, platform: p, version: $0.key), percent: $0.value) }
            if fits { return id }
        }
        fatalError("no client id fits")
    }

    static func offered(_ f: ServerFixture, from v: String, id: String?, manual: Bool = false, now: Date = Date()) throws -> String? {
        let r = try f.service.check(current: try SemanticVersion(parsing: v), platform: p, channel: .stable,
                                    client: CheckClient(clientID: id, manual: manual), now: now)
        return r.latestVersion?.description
    }

    @Test func heldBackClientsGetTheNewestFullyRolledOutRelease() throws {
        // 1.0.0 is the platform's first release (everyone); 1.0.1, 1.1.0 and 2.0.0 start at 10%.
        let f = try ServerFixture(stages: [10, 50, 100]) { $0.rolloutIntervalSeconds = 0 }
        let rollouts = try f.service.catalog.rollouts(platform: Self.p)
        #expect(rollouts["1.0.0"]?.state == .complete)
        #expect(rollouts["1.1.0"]?.percent == 10 && rollouts["1.1.0"]?.state == .active)
        try f.service.changeRollout(platform: Self.p, version: "1.0.1", .set(percent: 100))

        let outside = Self.clientID(outside: ["1.1.0": 10, "2.0.0": 10])
        let insideMinor = Self.clientID(inside: ["1.1.0": 10], outside: ["2.0.0": 10])
        #expect(try Self.offered(f, from: "1.0.0", id: outside) == "1.0.1", "held back: the newest fully rolled-out release")
        #expect(try Self.offered(f, from: "1.0.0", id: nil) == "1.0.1", "no id: only what is at 100%")
        #expect(try Self.offered(f, from: "1.0.0", id: insideMinor) == "1.1.0")
        #expect(try Self.offered(f, from: "1.0.1", id: outside) == nil, "nothing newer is fully out")
        // A manual check bypasses the stages.
        #expect(try Self.offered(f, from: "1.0.0", id: outside, manual: true) == "2.0.0")
        // A held-back client still gets the delta for what it is offered.
        let r = try f.service.check(current: try SemanticVersion(parsing: "1.0.0"), platform: Self.p, channel: .stable,
                                    client: CheckClient(clientID: outside))
        #expect(r.kind == "delta" && r.fromVersion?.description == "1.0.0")

        // A critical release bypasses the stages; a paused one reaches nobody new, manual or not.
        try f.service.changeRollout(platform: Self.p, version: "2.0.0", .pause(reason: "bad build"))
        #expect(try Self.offered(f, from: "1.0.0", id: outside, manual: true) == "1.1.0")
        _ = try f.service.publish(.init(platform: Self.p, version: "2.0.1", critical: true), bundleDirectory: f.trees["2.0.0"]!)
        #expect(try f.service.catalog.rollouts(platform: Self.p)["2.0.1"]?.percent == 10)
        #expect(try Self.offered(f, from: "1.0.0", id: outside) == "2.0.1")
        #expect(try Self.offered(f, from: "1.0.0", id: nil) == "2.0.1")
        try f.service.changeRollout(platform: Self.p, version: "2.0.1", .pause(reason: "also bad"))
        #expect(try Self.offered(f, from: "1.0.0", id: outside, manual: true) == "1.1.0")
    }

    @Test func theRoutesPassTheClientIDAndManualFlag() async throws {
        let f = try ServerFixture(stages: [10, 100]) { $0.rolloutIntervalSeconds = 0 }
        let outside = Self.clientID(outside: ["1.0.1": 10, "1.1.0": 10, "2.0.0": 10])
        let inside = Self.clientID(inside: ["2.0.0": 10])
        try await buildApplication(service: f.service).test(.router) { client in
            func latest(_ query: String) async throws -> String? {
                try await client.execute(uri: "/api/version/check?current_version=1.0.0&platform=\(Self.p)&" + query, method: .get) { r in
                    #expect(r.status == .ok)
                    return try WireJSON.decoder().decode(CheckResponse.self, from: Data(r.body.readableBytesView)).latestVersion?.description
                }
            }
            let heldBack = try await latest("client_id=\(outside)")
            let manual = try await latest("client_id=\(outside)&manual=true")
            let first = try await latest("client_id=\(inside)")
            // The cached answer for one client is not served to another.
            let again = try await latest("client_id=\(outside)")
            #expect(heldBack == nil && manual == "2.0.0" && first == "2.0.0" && again == nil)
        }
    }

    @Test func stagesAdvanceOnScheduleWithAnInjectedClock() throws {
        let f = try ServerFixture(stages: [10, 50, 100]) { $0.rolloutIntervalSeconds = 3600 }
        let t = try #require(f.service.catalog.releases(platform: Self.p).first { $0.version == "2.0.0" }).published
        let mid = Self.clientID(inside: ["2.0.0": 50], outside: ["2.0.0": 10, "1.0.1": 10, "1.1.0": 10])
        #expect(try Self.offered(f, from: "1.0.0", id: mid, now: t.addingTimeInterval(3599)) == nil)
        // The check sees the scheduled stage even before the ticker has stored it...
        #expect(try Self.offered(f, from: "1.0.0", id: mid, now: t.addingTimeInterval(3601)) == "2.0.0")
        // ...and the ticker stores and logs it.
        f.service.tickRollouts(now: t.addingTimeInterval(3601))
        #expect(try f.service.catalog.rollouts(platform: Self.p)["2.0.0"]?.percent == 50)
        let log = try f.service.catalog.rolloutLog(platform: Self.p, limit: 50)
        #expect(log.contains { $0.version == "2.0.0" && $0.action == "schedule" && $0.percent == 50 })
        f.service.tickRollouts(now: t.addingTimeInterval(7300))
        #expect(try f.service.catalog.rollouts(platform: Self.p)["2.0.0"]?.state == .complete)
    }

    /// `n` reports from clients c`first`... c`first + n - 1`.
    static func report(_ f: ServerFixture, to version: String, outcome: String, n: Int, at: Date, stage: TelemetryEvent.Stage = .install,
                       first: Int = 0) throws {
        for i in first..<(first + n) {
            let e = TelemetryEvent(clientID: "c\(i)", platform: p, channel: "stable", stage: stage, outcome: outcome,
                                   fromVersion: stage == .rollback ? version : "1.0.0", toVersion: stage == .rollback ? "1.0.0" : version,
                                   kind: stage == .rollback ? nil : "delta", durationMs: 10)
            try f.service.catalog.insertTelemetry(e, received: at)
        }
    }

    @Test func autoPauseNeedsTheMinimumCountAndStaysPausedUntilResumed() throws {
        let f = try ServerFixture(stages: [10, 100]) { $0.rolloutIntervalSeconds = 0 }
        let now = Date()
        let inside = Self.clientID(inside: ["2.0.0": 10])
        // 19 failures: above 5%, but fewer than 20 reports.
        try Self.report(f, to: "2.0.0", outcome: "checksum", n: 19, at: now.addingTimeInterval(-60))
        f.service.tickRollouts(now: now)
        #expect(try f.service.catalog.rollouts(platform: Self.p)["2.0.0"]?.state == .active)
        // Failures of another release do not count against this one.
        try Self.report(f, to: "1.1.0", outcome: "io", n: 30, at: now.addingTimeInterval(-60))
        f.service.tickRollouts(now: now)
        #expect(try f.service.catalog.rollouts(platform: Self.p)["2.0.0"]?.state == .active)
        // An automatic rollback from 2.0.0 by another client is the 20th.
        try Self.report(f, to: "2.0.0", outcome: "health", n: 1, at: now.addingTimeInterval(-30), stage: .rollback, first: 19)
        f.service.tickRollouts(now: now)
        let paused = try #require(f.service.catalog.rollouts(platform: Self.p)["2.0.0"])
        #expect(paused.state == .paused && paused.percent == 10)
        #expect(paused.pausedReason?.contains("checksum 19") == true)
        #expect(try f.service.catalog.rolloutLog(platform: Self.p, limit: 5).first?.action == "auto-pause")
        #expect(try Self.offered(f, from: "1.0.0", id: inside) != "2.0.0", "a paused release is not offered")
        // It stays paused: time passing and more ticks do not resume it.
        f.service.tickRollouts(now: now.addingTimeInterval(30 * 86400))
        #expect(try f.service.catalog.rollouts(platform: Self.p)["2.0.0"]?.state == .paused)
        // Resumed by hand, the old failures no longer count; new ones do.
        let resumed = now.addingTimeInterval(10)
        try f.service.changeRollout(platform: Self.p, version: "2.0.0", .resume, now: resumed)
        f.service.tickRollouts(now: resumed.addingTimeInterval(1))
        #expect(try f.service.catalog.rollouts(platform: Self.p)["2.0.0"]?.state == .active)
        #expect(try Self.offered(f, from: "1.0.0", id: inside, now: resumed.addingTimeInterval(1)) == "2.0.0")
        try Self.report(f, to: "2.0.0", outcome: "success", n: 19, at: resumed.addingTimeInterval(2))
        try Self.report(f, to: "2.0.0", outcome: "disk_full", n: 1, at: resumed.addingTimeInterval(2), first: 19)
        f.service.tickRollouts(now: resumed.addingTimeInterval(3))
        #expect(try f.service.catalog.rollouts(platform: Self.p)["2.0.0"]?.state == .active, "1 of 20 is exactly 5%: not above")
        try Self.report(f, to: "2.0.0", outcome: "disk_full", n: 1, at: resumed.addingTimeInterval(4), first: 20)
        f.service.tickRollouts(now: resumed.addingTimeInterval(5))
        #expect(try f.service.catalog.rollouts(platform: Self.p)["2.0.0"]?.state == .paused)
    }

    /// Auto-pause counts clients, not reports: one client sending the same failure again and again
    /// (a retried send, or a script) counts once.
    @Test func eachClientCountsOnce() throws {
        let f = try ServerFixture(stages: [10, 100]) { $0.rolloutIntervalSeconds = 0 }
        let now = Date()
        try Self.report(f, to: "2.0.0", outcome: "success", n: 20, at: now.addingTimeInterval(-60))
        for _ in 0..<30 { try Self.report(f, to: "2.0.0", outcome: "checksum", n: 1, at: now.addingTimeInterval(-50), first: 100) }
        // The same client under other outcomes, source versions and stages: still one client.
        for outcome in ["io", "delta_failed", "x1", "x2"] {
            try Self.report(f, to: "2.0.0", outcome: outcome, n: 1, at: now.addingTimeInterval(-45), first: 100)
        }
        try Self.report(f, to: "2.0.0", outcome: "health", n: 1, at: now.addingTimeInterval(-44), stage: .rollback, first: 100)
        f.service.tickRollouts(now: now)
        #expect(try f.service.catalog.rollouts(platform: Self.p)["2.0.0"]?.state == .active)
        let health = try f.service.rolloutStatus(platform: Self.p, now: now).first { $0.version == "2.0.0" }?.health
        #expect(health?.attempts == 21 && health?.failures == ["checksum": 1], "\(String(describing: health))")
        try Self.report(f, to: "2.0.0", outcome: "checksum", n: 2, at: now.addingTimeInterval(-40), first: 101)
        f.service.tickRollouts(now: now)
        #expect(try f.service.catalog.rollouts(platform: Self.p)["2.0.0"]?.state == .paused, "3 clients of 23 failed")
    }

    /// Telemetry older than the retention is removed, at most once an hour.
    @Test func oldTelemetryIsPruned() throws {
        let f = try ServerFixture(publish: false) { $0.telemetryRetentionDays = 30 }
        let now = Date()
        func count() throws -> Int { try f.service.catalog.telemetry(platform: Self.p, since: .distantPast).count }
        try Self.report(f, to: "2.0.0", outcome: "success", n: 1, at: now.addingTimeInterval(-31 * 86400))
        try Self.report(f, to: "2.0.0", outcome: "success", n: 1, at: now.addingTimeInterval(-86400))
        f.service.pruneTelemetry(now: now)
        #expect(try count() == 1)
        try Self.report(f, to: "2.0.0", outcome: "success", n: 1, at: now.addingTimeInterval(-40 * 86400))
        f.service.pruneTelemetry(now: now.addingTimeInterval(60))
        #expect(try count() == 2, "not again within the hour")
        f.service.pruneTelemetry(now: now.addingTimeInterval(3601))
        #expect(try count() == 1)
        var c = f.service.configuration
        c.telemetryRetentionDays = 0
        #expect(throws: ServerError.self) { try c.validate() }
    }

    /// Install reports make the server look at the rollout at once.
    @Test func telemetryPostsTriggerTheAutoPause() async throws {
        let f = try ServerFixture(stages: [10, 100]) { $0.rolloutIntervalSeconds = 0; $0.autoPauseMinimumReports = 4 }
        f.service.reportTickInterval = 0
        try await buildApplication(service: f.service).test(.router) { client in
            for i in 0..<4 {
                let e = TelemetryEvent(clientID: "c\(i)", platform: Self.p, channel: "stable", stage: .install, outcome: i == 0 ? "success" : "io",
                                       fromVersion: "1.0.0", toVersion: "1.1.0", kind: "delta", durationMs: 5)
                try await client.execute(uri: "/api/telemetry", method: .post, body: ByteBuffer(bytes: try WireJSON.encoder().encode(e))) { r in
                    #expect(r.status == .accepted)
                }
            }
        }
        #expect(try f.service.catalog.rollouts(platform: Self.p)["1.1.0"]?.state == .paused)
    }

    /// ...but at most every `reportTickInterval` (a flood of reports must not make each recount the
    /// window); the ticker does the rest.
    @Test func reportsLookAtMostEveryInterval() throws {
        let f = try ServerFixture(stages: [10, 100]) { $0.rolloutIntervalSeconds = 0; $0.autoPauseMinimumReports = 4 }
        f.service.reportTickInterval = 3600
        for i in 0..<4 {
            try Self.report(f, to: "1.1.0", outcome: i == 0 ? "success" : "io", n: 1, at: Date(), first: i)
            try f.service.tickAfterReport(platform: Self.p)
        }
        #expect(try f.service.catalog.rollouts(platform: Self.p)["1.1.0"]?.state == .active, "only the first report looked")
        f.service.tickRollouts()
        #expect(try f.service.catalog.rollouts(platform: Self.p)["1.1.0"]?.state == .paused)
    }

    @Test func adminRoutesChangeRolloutsAndValidate() async throws {
        let f = try ServerFixture(stages: [10, 50, 100]) { $0.rolloutIntervalSeconds = 0 }
        let auth: HTTPFields = [.authorization: "Bearer \(ServerFixture.token)"]
        try await buildApplication(service: f.service).test(.router) { client in
            let base = "/api/admin/rollouts/\(Self.p)/1.1.0"
            try await client.execute(uri: base + "/advance", method: .post) { r in #expect(r.status == .unauthorized) }
            try await client.execute(uri: base + "/advance", method: .post, headers: [.authorization: "Bearer wrong"]) { r in
                #expect(r.status == .forbidden)
            }
            try await client.execute(uri: base + "/advance", method: .post, headers: auth) { r in
                #expect(r.status == .ok)
                let s = try WireJSON.decoder().decode(RolloutStatus.self, from: Data(r.body.readableBytesView))
                #expect(s.rollout.percent == 50 && s.version == "1.1.0")
            }
            for bad in ["set?percent=101", "set?percent=-3", "set?percent=12.5", "set", "explode"] {
                try await client.execute(uri: base + "/" + bad, method: .post, headers: auth) { r in
                    #expect(r.status == .badRequest, "\(bad)")
                    #expect(String(buffer: r.body).contains("bad_request"))
                }
            }
            try await client.execute(uri: base + "/set?percent=75", method: .post, headers: auth) { r in #expect(r.status == .ok) }
            try await client.execute(uri: base + "/pause?reason=crash%20reports", method: .post, headers: auth) { r in
                let s = try WireJSON.decoder().decode(RolloutStatus.self, from: Data(r.body.readableBytesView))
                #expect(s.rollout.state == .paused && s.rollout.pausedReason == "crash reports" && s.rollout.percent == 75)
            }
            try await client.execute(uri: base + "/advance", method: .post, headers: auth) { r in
                #expect(r.status == .badRequest && String(buffer: r.body).contains("paused"))
            }
            try await client.execute(uri: "/api/admin/rollouts/\(Self.p)/9.9.9/resume", method: .post, headers: auth) { r in
                #expect(r.status == .notFound)
            }
            try await client.execute(uri: base + "/resume", method: .post, headers: auth) { r in #expect(r.status == .ok) }
            try await client.execute(uri: "/api/admin/rollouts?platform=\(Self.p)", method: .get, headers: auth) { r in
                let list = try WireJSON.decoder().decode([RolloutStatus].self, from: Data(r.body.readableBytesView))
                #expect(list.first { $0.version == "1.1.0" }?.rollout.state == .active)
                #expect(list.map(\.version).first == "2.1.0-beta.1", "newest first")
            }
            // A release stored with build metadata is addressed by its version: the change and its answer.
            _ = try f.service.publish(.init(platform: Self.p, version: "3.0.0+build.5"), bundleDirectory: f.trees["2.0.0"]!)
            try await client.execute(uri: "/api/admin/rollouts/\(Self.p)/3.0.0/pause", method: .post, headers: auth) { r in
                #expect(r.status == .ok, "\(String(buffer: r.body))")
                let s = try? WireJSON.decoder().decode(RolloutStatus.self, from: Data(r.body.readableBytesView))
                #expect(s?.version == "3.0.0+build.5" && s?.rollout.state == .paused)
            }
        }
        let actions = try f.service.catalog.rolloutLog(platform: Self.p, limit: 10).filter { $0.version == "1.1.0" }.map(\.action)
        #expect(actions.prefix(4) == ["resume", "pause", "set", "advance"])
    }

    @Test func theCLIChangesARolloutInTheSameDataDirectory() throws {
        let f = try ServerFixture(stages: [10, 100]) { $0.rolloutIntervalSeconds = 0 }
        let s = Run.product("phoenix-server")
        let common = ["--data", f.service.configuration.dataDirectory, "--platform", Self.p]
        let set = try Run.process(s, ["rollout"] + common + ["1.1.0", "set", "40"])
        #expect(set.status == 0, "\(set.stderr)")
        #expect(set.stdout.contains("1.1.0: 40% active"))
        let bad = try Run.process(s, ["rollout"] + common + ["1.1.0", "set", "140"])
        #expect(bad.status != 0 && bad.stderr.contains("0...100"))
        let pause = try Run.process(s, ["rollout"] + common + ["--reason", "manual stop", "1.1.0", "pause"])
        #expect(pause.status == 0 && pause.stdout.contains("paused") && pause.stdout.contains("manual stop"))
        // The running service sees it (same catalog file).
        #expect(try f.service.catalog.rollouts(platform: Self.p)["1.1.0"]?.state == .paused)
        let missing = try Run.process(s, ["rollout"] + common + ["7.0.0", "advance"])
        #expect(missing.status != 0 && missing.stderr.contains("7.0.0"))
    }

    @Test func aRunningServerMakesTheDeltasThatABackgroundPublishQueued() async throws {
        let f = try ServerFixture(publish: false)
        _ = try f.service.publish(.init(platform: "desktop", version: "1.0.0"), bundleDirectory: f.trees["1.0.0"]!)
        try await buildApplication(service: f.service).test(.live) { _ in
            let r = try await Run.processOffPool(Run.product("phoenix-server"), [
                "publish", "--data", f.service.configuration.dataDirectory, "--key", f.service.configuration.keyPath!,
                "--platform", "desktop", "--version", "1.0.1", "--background", f.trees["1.0.1"]!])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try f.service.catalog.deltas(platform: "desktop").first?.state == .pending)
            var state: DeltaRecord.State?
            for _ in 0..<60 where state != .ready {
                try await Task.sleep(for: .milliseconds(500))
                state = try f.service.catalog.deltas(platform: "desktop").first?.state
            }
            #expect(state == .ready, "the server did not pick up the queued delta job")
        }
    }

    /// Opening the data directory again (as `phoenix-server publish` or `status` do beside a running
    /// server) must not delete the running server's work in progress; scratch left by a dead process goes.
    @Test func anotherProcessOnTheDataDirectoryLeavesLiveScratchAlone() throws {
        let f = try ServerFixture(publish: false)
        let tmp = f.service.configuration.dataDirectory + "/tmp"
        // A live process's scratch (the test process itself stands in for the running server: a
        // second service in the same process must keep it too) and a dead one's.
        let mine = tmp + "/\(getpid())-live", dead = tmp + "/999999999-dead", legacy = tmp + "/0B1C-no-pid"
        let other = Process()
        other.executableURL = URL(fileURLWithPath: "/bin/sleep")
        other.arguments = ["30"]
        try other.run()
        defer { kill(other.processIdentifier, SIGKILL); other.waitUntilExit() }
        let theirs = tmp + "/\(other.processIdentifier)-job"
        for d in [mine, dead, legacy, theirs] { try FileManager.default.createDirectory(atPath: d + "/work", withIntermediateDirectories: true) }
        let r = try Run.process(Run.product("phoenix-server"), ["status", "--data", f.service.configuration.dataDirectory])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(POSIX.exists(mine) && POSIX.exists(theirs), "a live process's scratch was deleted")
        #expect(!POSIX.exists(dead) && !POSIX.exists(legacy), "a dead process's scratch was kept")
    }

    @Test func experimentsAssignAVariantAndBreakTelemetryDown() throws {
        let experiment = Experiment(name: "cadence", variants: [
            .init(name: "fast", weight: 1, checkIntervalSeconds: 3600, notificationStyle: "banner"),
            .init(name: "slow", weight: 1, checkIntervalSeconds: 7 * 86400, notificationStyle: "dialog"),
        ])
        let f = try ServerFixture { $0.experiment = experiment }
        var seen: [String: Int] = [:]
        for n in 0..<40 {
            let id = "exp-client-\(n)"
            let r = try f.service.check(current: try SemanticVersion(parsing: "1.0.0"), platform: Self.p, channel: .stable,
                                        client: CheckClient(clientID: id))
            let v = try #require(r.variant)
            #expect(v.experiment == "cadence" && v == AssignedVariant(experiment: "cadence", variant: experiment.assign(clientID: id)))
            seen[v.name, default: 0] += 1
            let e = TelemetryEvent(clientID: id, platform: Self.p, channel: "stable", stage: .install, outcome: v.name == "fast" ? "success" : "io",
                                   fromVersion: "1.0.0", toVersion: "2.0.0", kind: "full", durationMs: 1, bytes: 10, variant: "cadence/" + v.name)
            try f.service.catalog.insertTelemetry(e, received: Date())
        }
        #expect(seen.count == 2)
        #expect(try f.service.check(current: try SemanticVersion(parsing: "1.0.0"), platform: Self.p, channel: .stable).variant == nil,
                "no client id, no variant")
        let view = try #require(f.service.dashboardData().platforms.first)
        let fast = try #require(view.variants.first { $0.variant == "cadence/fast" })
        let slow = try #require(view.variants.first { $0.variant == "cadence/slow" })
        #expect(fast.installs == seen["fast"] && fast.failures == 0)
        #expect(slow.installs == 0 && slow.failures == seen["slow"])
    }
}
