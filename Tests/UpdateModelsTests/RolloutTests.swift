import Foundation
import Testing
import TestSupport
import UpdateModels

/// Random client ids as the client makes them (lowercased UUIDs), from a seed.
func clientIDs(_ n: Int, seed: UInt64) -> [String] {
    var rng = SeededGenerator(seed: seed)
    return (0..<n).map { _ in
        let a = rng.next(), b = rng.next()
        let hex = String(format: "%016llx%016llx", a, b)
        let c = Array(hex)
        return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32])
    }
}

@Suite struct RolloutBucketTests {
    @Test func bucketsAreUniformByChiSquare() {
        let ids = clientIDs(100_000, seed: 7)
        var counts = [Int](repeating: 0, count: 100)
        for id in ids {
            let b = RolloutBucket.bucket(clientID: id, platform: "linux-x86_64", version: "1.4.0")
            #expect((0..<RolloutBucket.count).contains(b))
            counts[b / 100] += 1
        }
        let expected = Double(ids.count) / 100
        let chi2 = counts.reduce(0.0) { $0 + (Double($1) - expected) * (Double($1) - expected) / expected }
        // 99 degrees of freedom: P(chi2 > 148.2) = 0.001. A statistic far below the mean (99) would mean
        // the ids are spread too evenly to be a hash (say, a counter), so bound it from below too.
        #expect(chi2 < 148.2, "chi-square \(chi2) over 100 buckets")
        #expect(chi2 > 50, "chi-square \(chi2) is implausibly small")
    }

    @Test func insideAtOneStageMeansInsideAtEveryLaterStage() {
        let ids = clientIDs(20_000, seed: 8)
        let stages = [1, 5, 10, 25, 50, 75, 100]
        var inside = [Int](repeating: 0, count: stages.count)
        for id in ids {
            let b = RolloutBucket.bucket(clientID: id, platform: "p", version: "2.0.0")
            // The same id, hashed again, lands in the same bucket.
            #expect(b == RolloutBucket.bucket(clientID: id, platform: "p", version: "2.0.0"))
            var wasInside = false
            for (i, p) in stages.enumerated() {
                let now = RolloutBucket.isInside(bucket: b, percent: p)
                #expect(!wasInside || now, "\(id) left the rollout between stages")
                wasInside = now
                if now { inside[i] += 1 }
            }
        }
        #expect(inside.last == ids.count)
        for (i, p) in stages.enumerated() {
            let share = Double(inside[i]) / Double(ids.count) * 100
            #expect(abs(share - Double(p)) < 1.0, "\(p)% stage reached \(share)%")
        }
        #expect(RolloutBucket.isInside(bucket: 0, percent: 0) == false)
    }

    @Test func differentReleasesReachDifferentClientsFirst() {
        let ids = clientIDs(20_000, seed: 9)
        let both = ids.filter { id in
            RolloutBucket.isInside(bucket: RolloutBucket.bucket(clientID: id, platform: "p", version: "1.1.0"), percent: 10)
                && RolloutBucket.isInside(bucket: RolloutBucket.bucket(clientID: id, platform: "p", version: "1.2.0"), percent: 10)
        }.count
        // Independent 10% samples overlap in about 1%, not 10%.
        #expect(both > 100 && both < 320, "\(both) of 20000 were first for both releases")
    }
}

@Suite struct RolloutScheduleTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    func at(_ s: Double) -> Date { t0.addingTimeInterval(s) }

    @Test func advancesOnScheduleWithAnInjectedClock() throws {
        let r = try Rollout(intervalSeconds: 3600, start: t0)
        #expect(r.percent == 10 && r.state == .active && r.nextAdvance == at(3600))
        #expect(r.settled(at: at(3599)).percent == 10)
        #expect(r.settled(at: at(3600)).percent == 25)
        #expect(r.settled(at: at(7199)).percent == 25)
        #expect(r.settled(at: at(7200)).percent == 50)
        let done = r.settled(at: at(10 * 3600))
        #expect(done.percent == 100 && done.state == .complete && done.nextAdvance == nil)
        // Advancing counts from the stage's own start, not from the time it was looked at.
        #expect(r.settled(at: at(3700)).since == at(3600))
    }

    @Test func byHandOnlyWhenTheIntervalIsZero() throws {
        var r = try Rollout(stages: [5, 100], intervalSeconds: 0, start: t0)
        #expect(r.settled(at: at(1e9)).percent == 5)
        try r.advance(at: at(10))
        #expect(r.percent == 100 && r.state == .complete)
        #expect(throws: Rollout.RolloutError.alreadyComplete) { try r.advance(at: at(20)) }
    }

    @Test func pauseFreezesAndResumeRestartsTheClock() throws {
        var r = try Rollout(intervalSeconds: 3600, start: t0)
        r.pause(reason: "looks bad", at: at(4000))  // the 25% stage began at 3600
        #expect(r.percent == 25 && r.state == .paused && r.pausedReason == "looks bad")
        #expect(r.settled(at: at(1e7)).percent == 25)
        #expect(!r.offers(bucket: 0, manual: true, critical: true), "a pause stops manual checks and critical releases too")
        #expect(throws: Rollout.RolloutError.paused) { try r.advance(at: at(5000)) }
        r.resume(at: at(20_000))
        #expect(r.state == .active && r.resumedAt == at(20_000) && r.pausedReason == nil)
        #expect(r.settled(at: at(23_599)).percent == 25)
        #expect(r.settled(at: at(23_600)).percent == 50)
    }

    @Test func setValidatesPercentages() throws {
        var r = try Rollout(intervalSeconds: 3600, start: t0)
        for bad in [-1, 101, 1000] {
            #expect(throws: Rollout.RolloutError.invalidPercent(bad)) { try r.set(percent: bad, at: at(1)) }
        }
        try r.set(percent: 40, at: at(1))
        #expect(r.percent == 40 && r.nextStage == 50)
        try r.set(percent: 100, at: at(2))
        #expect(r.state == .complete)
        try r.set(percent: 0, at: at(3))
        #expect(r.state == .active && !r.offers(bucket: 0, manual: false, critical: false))
        for stages in [[], [10, 5, 100], [10, 50], [0, 100], [50, 50, 100], [10, 101]] {
            #expect(throws: Rollout.RolloutError.invalidStages(stages)) { _ = try Rollout(stages: stages, intervalSeconds: 1, start: t0) }
        }
        #expect(throws: Rollout.RolloutError.invalidInterval(-5)) { _ = try Rollout(intervalSeconds: -5, start: t0) }
    }

    @Test func offersByBucketUnlessManualOrCritical() throws {
        let r = try Rollout(stages: [10, 100], intervalSeconds: 0, start: t0)
        #expect(r.offers(bucket: 999, manual: false, critical: false))
        #expect(!r.offers(bucket: 1000, manual: false, critical: false))
        #expect(!r.offers(bucket: nil, manual: false, critical: false), "a client without an id waits for 100%")
        #expect(r.offers(bucket: 5000, manual: true, critical: false))
        #expect(r.offers(bucket: nil, manual: false, critical: true))
    }
}

@Suite struct AutoPauseTests {
    typealias R = ReleaseHealth.ClientReport

    /// `installs` clients installed 1.1.0, `failures` of them failed (and never succeeded).
    func health(installs: Int, failures: Int, category: String = "checksum") -> ReleaseHealth {
        let reports = (0..<installs).map { i in
            R(client: "c\(i)", stage: .install, outcome: i < failures ? category : "success", from: "1.0.0", to: "1.1.0")
        }
        return ReleaseHealth.counting(clients: reports, version: "1.1.0")
    }

    @Test func pausesAboveTheThresholdWithEnoughReports() {
        let p = AutoPausePolicy()
        #expect(p.pauseReason(health(installs: 19, failures: 19)) == nil, "19 reports are below the minimum of 20")
        #expect(p.pauseReason(health(installs: 20, failures: 1)) == nil, "exactly 5% does not exceed 5%")
        #expect(p.pauseReason(health(installs: 20, failures: 2)) != nil)
        #expect(p.pauseReason(health(installs: 1000, failures: 50)) == nil)
        let reason = p.pauseReason(health(installs: 1000, failures: 51, category: "disk_full"))
        #expect(reason?.contains("disk_full 51") == true && reason?.contains("5.1%") == true)
        #expect(AutoPausePolicy(threshold: 0.5, minimumReports: 2).pauseReason(health(installs: 4, failures: 2)) == nil)
    }

    @Test func countsOnlyThisReleasesInstallsAndAutomaticRollbacks() {
        var reports = [R(client: "a", stage: .install, outcome: "io", from: "1.0.0", to: "1.2.0"),          // another release
                       R(client: "b", stage: .check, outcome: "network", from: "1.0.0", to: nil),          // not an install
                       R(client: "c", stage: .rollback, outcome: "requested", from: "1.1.0", to: "1.0.0")] // the user's choice
        #expect(ReleaseHealth.counting(clients: reports, version: "1.1.0") == ReleaseHealth())
        reports += (0..<3).map { R(client: "ok\($0)", stage: .install, outcome: "success", from: "1.0.0", to: "1.1.0") }
        reports.append(R(client: "ok0", stage: .rollback, outcome: "health", from: "1.1.0", to: "1.0.0"))
        let h = ReleaseHealth.counting(clients: reports, version: "1.1.0")
        #expect(h.attempts == 3 && h.successes == 3 && h.failures == ["rollback_health": 1])
        #expect(abs(h.failureRate - 1.0 / 3) < 1e-9)
    }

    /// Counting clients: each is one attempt and at most one failure, whatever it sends.
    @Test func countingClients() {
        var reports = (0..<10).map { R(client: "ok\($0)", stage: .install, outcome: "success", from: "1.0.0", to: "1.1.0") }
        for o in ["checksum", "io", "zz", "delta_failed"] { reports.append(R(client: "bad", stage: .install, outcome: o, from: "1.0.\(o.count)", to: "1.1.0")) }
        reports.append(R(client: "bad", stage: .rollback, outcome: "health", from: "1.1.0", to: "1.0.0"))
        reports.append(R(client: "flaky", stage: .install, outcome: "network", from: "1.0.0", to: "1.1.0"))
        reports.append(R(client: "user", stage: .rollback, outcome: "requested", from: "1.1.0", to: "1.0.0"))
        reports.append(R(client: "later", stage: .install, outcome: "io", from: "1.0.0", to: "1.1.0"))
        reports.append(R(client: "later", stage: .install, outcome: "success", from: "1.0.0", to: "1.1.0"))
        reports.append(R(client: "other", stage: .install, outcome: "checksum", from: "1.0.0", to: "1.2.0"))
        // Installed it, then rolled back automatically (health): a failure. Only a rollback: a failure too.
        reports.append(R(client: "rb", stage: .install, outcome: "success", from: "1.0.0", to: "1.1.0"))
        reports.append(R(client: "rb", stage: .rollback, outcome: "health", from: "1.1.0", to: "1.0.0"))
        reports.append(R(client: "onlyrb", stage: .rollback, outcome: "not_confirmed", from: "1.1.0", to: "1.0.0"))
        let h = ReleaseHealth.counting(clients: reports, version: "1.1.0")
        // "later" also installed it: a success, not a failure.
        #expect(h.attempts == 13 && h.successes == 12 && h.failures == ["checksum": 1, "rollback_health": 1, "rollback_not_confirmed": 1],
                "\(h)")
    }

    @Test func installsStoppedByTheClientsSurroundingsDoNotCount() {
        var reports = (0..<20).map { R(client: "ok\($0)", stage: .install, outcome: "success", from: "1.0.0", to: "1.1.0") }
        for (i, outcome) in ["network", "tls_expired", "tls", "config", "insecure", "busy"].enumerated() {
            reports += (0..<100).map { R(client: "env\(i)-\($0)", stage: .install, outcome: outcome, from: "1.0.0", to: "1.1.0") }
        }
        var h = ReleaseHealth.counting(clients: reports, version: "1.1.0")
        #expect(h == health(installs: 20, failures: 0))
        #expect(AutoPausePolicy().pauseReason(h) == nil)
        reports += (0..<2).map { R(client: "srv\($0)", stage: .install, outcome: "server", from: "1.0.0", to: "1.1.0") }
        h = ReleaseHealth.counting(clients: reports, version: "1.1.0")
        #expect(h.attempts == 22 && h.failures == ["server": 2] && AutoPausePolicy().pauseReason(h) != nil)
        #expect(!ReleaseHealth.isFailure(stage: .install, outcome: "network") && ReleaseHealth.isFailure(stage: .install, outcome: "checksum"))
        #expect(ReleaseHealth.isFailure(stage: .rollback, outcome: "health") && !ReleaseHealth.isFailure(stage: .rollback, outcome: "requested"))
    }
}

@Suite struct ExperimentTests {
    /// Weights whose total does not divide 10,000, or exceeds it: each variant still gets its share
    /// (a 0..<10000 bucket modulo 1500 gave 70/30 for 1000:500, and never reached variants past 10000).
    @Test func anyWeightsGetTheirShare() throws {
        let ids = clientIDs(20_000, seed: 12)
        let e = Experiment(name: "skew", variants: [.init(name: "a", weight: 1000), .init(name: "b", weight: 500)])
        try e.validate()
        let a = ids.filter { e.assign(clientID: $0).name == "a" }.count
        #expect(abs(Double(a) / Double(ids.count) - 2.0 / 3) < 0.015, "\(a) of 20000 in the weight-1000 variant")
        let sixteen = Experiment(name: "many", variants: (0..<16).map { .init(name: "v\($0)", weight: 1000) })
        try sixteen.validate()
        var counts = [String: Int]()
        for id in ids { counts[sixteen.assign(clientID: id).name, default: 0] += 1 }
        #expect(counts.count == 16 && counts.values.allSatisfy { abs($0 - 1250) < 200 }, "\(counts.sorted { $0.key < $1.key })")
    }

    @Test func variantsFollowTheirWeightsAndStayPut() throws {
        let e = Experiment(name: "check-cadence", variants: [
            .init(name: "hourly", weight: 1, checkIntervalSeconds: 3600, notificationStyle: "banner"),
            .init(name: "daily", weight: 3, checkIntervalSeconds: 86400, notificationStyle: "dialog"),
        ])
        try e.validate()
        let ids = clientIDs(20_000, seed: 11)
        let hourly = ids.filter { e.assign(clientID: $0).name == "hourly" }.count
        #expect(abs(Double(hourly) / Double(ids.count) - 0.25) < 0.015, "\(hourly) of 20000 in the weight-1 variant")
        for id in ids.prefix(100) { #expect(e.assign(clientID: id) == e.assign(clientID: id)) }
        // Experiments are independent of each other.
        let other = Experiment(name: "other", variants: e.variants)
        let same = ids.filter { e.assign(clientID: $0).name == other.assign(clientID: $0).name }.count
        #expect(same < 14_000 && same > 11_000, "\(same) of 20000 got the same variant in two experiments")
    }

    @Test func rejectsMalformedExperiments() {
        let bad: [Experiment] = [
            Experiment(name: "", variants: [.init(name: "a")]),
            Experiment(name: "x", variants: []),
            Experiment(name: "x", variants: [.init(name: "a"), .init(name: "a")]),
            Experiment(name: "x", variants: [.init(name: "a", weight: 0)]),
            Experiment(name: "x", variants: [.init(name: "a", checkIntervalSeconds: 5)]),
            Experiment(name: "x", variants: [.init(name: "<b>")]),
        ]
        for e in bad { #expect(throws: (any Error).self) { try e.validate() } }
    }
}

@Suite struct TelemetryEventTests {
    func event(variant: String?) -> TelemetryEvent {
        TelemetryEvent(clientID: "c1", platform: "linux-x86_64", channel: "stable", stage: .install, outcome: "success",
                       fromVersion: "1.0.0", toVersion: "1.1.0", kind: "delta", durationMs: 20, variant: variant)
    }

    /// EXPERIMENT/VARIANT: exactly one "/" with a token on each side. "/", "a/" and "/b" passed when the
    /// check split with the empty pieces dropped.
    @Test func variantIsExperimentSlashVariant() throws {
        let good: [String?] = [nil, "cadence/fast", "a/b", "exp-1.x/v_2+b"]
        for v in good { try event(variant: v).validate() }
        for v in ["/", "a/", "/b", "//", "", "a", "a/b/c", "a//b", "a/<b>", "a/ b"] {
            #expect(throws: (any Error).self, "\(v)") { try event(variant: v).validate() }
        }
    }
}
