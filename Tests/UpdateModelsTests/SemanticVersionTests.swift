import Testing
import UpdateModels

@Suite struct SemanticVersionTests {
    @Test(arguments: ["0.0.0", "1.2.3", "10.20.30", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-0.3.7", "1.0.0-x.7.z.92",
                      "1.0.0+20130313144700", "1.0.0-beta+exp.sha.5114f85", "2.0.0-rc.1"])
    func parsesAndPrints(_ text: String) throws {
        #expect(try SemanticVersion(parsing: text).description == text)
    }

    @Test(arguments: ["", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.03", "1.2.3-", "1.2.3-01", "1.2.3-a..b", "1.2.3+",
                      "v1.2.3", "1.2.3 ", "a.b.c", "1.2.3-é", "99999999999999999999.0.0"])
    func rejectsInvalid(_ text: String) {
        #expect(throws: SemanticVersion.ParseError.self) { try SemanticVersion(parsing: text) }
    }

    @Test func precedenceFollowsSemver() throws {
        // semver.org's example chain, each lower than the next.
        let chain = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
                     "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0"].map { try! SemanticVersion(parsing: $0) }
        for i in 0..<chain.count - 1 {
            #expect(chain[i] < chain[i + 1], "\(chain[i]) < \(chain[i + 1])")
            #expect(!(chain[i + 1] < chain[i]))
        }
        #expect(try SemanticVersion(parsing: "1.0.0+a") == SemanticVersion(parsing: "1.0.0+b"))
        #expect(try SemanticVersion(parsing: "1.10.0") > SemanticVersion(parsing: "1.9.0"))
    }

    @Test func errorMessageSaysWhatIsWrong() {
        #expect(throws: SemanticVersion.ParseError(text: "1.02.3", reason: "minor \"02\" has a leading zero")) {
            try SemanticVersion(parsing: "1.02.3")
        }
    }
}

@Suite struct DeliveryPolicyTests {
    static func v(_ s: String) -> SemanticVersion { try! SemanticVersion(parsing: s) }

    /// A catalog: 1.0.0, 1.0.1, 1.1.0 (delta from 1.0.0 and 1.0.1, and an oversized one from 1.0.0 -> 1.1.0 too),
    /// 2.0.0 (delta from 1.1.0, but a major jump), and 2.1.0-beta.1 on beta.
    static let catalog: [DeliveryPolicy.Candidate] = [
        .init(version: v("1.0.0"), channel: .stable, fullSize: 1000),
        .init(version: v("1.0.1"), channel: .stable, fullSize: 1000, deltas: [v("1.0.0"): 50]),
        .init(version: v("1.1.0"), channel: .stable, fullSize: 1000, deltas: [v("1.0.1"): 100, v("1.0.0"): 600]),
        .init(version: v("1.2.0"), channel: .beta, fullSize: 1000, deltas: [v("1.1.0"): 100]),
        .init(version: v("2.0.0"), channel: .stable, fullSize: 2000, deltas: [v("1.1.0"): 10]),
        .init(version: v("2.1.0-beta.1"), channel: .beta, fullSize: 2000, deltas: [v("2.0.0"): 30]),
    ]

    struct Row: Sendable, CustomTestStringConvertible {
        let current: String
        let channel: DeliveryPolicy.Channel
        let releases: [DeliveryPolicy.Candidate]
        let expected: DeliveryPolicy.Decision
        let why: String
        var testDescription: String { why }
    }

    static let rows: [Row] = {
        let upTo11 = Array(catalog.prefix(3))
        return [
            Row(current: "1.0.1", channel: .stable, releases: upTo11, expected: .delta(to: v("1.1.0"), from: v("1.0.1"), size: 100),
                why: "minor jump with a small verified delta: delta"),
            Row(current: "1.0.0", channel: .stable, releases: Array(catalog.prefix(2)), expected: .delta(to: v("1.0.1"), from: v("1.0.0"), size: 50),
                why: "patch jump: delta"),
            Row(current: "1.0.0", channel: .stable, releases: upTo11, expected: .full(to: v("1.1.0"), size: 1000),
                why: "delta of 60% of the full package is over the 50% threshold: full"),
            Row(current: "1.0.0-rc.1", channel: .stable, releases: upTo11, expected: .full(to: v("1.1.0"), size: 1000),
                why: "no delta from exactly the current version: full"),
            Row(current: "1.1.0", channel: .stable, releases: catalog, expected: .full(to: v("2.0.0"), size: 2000),
                why: "major jump is always full even with a tiny delta"),
            Row(current: "1.1.0", channel: .stable, releases: upTo11, expected: .upToDate, why: "latest already"),
            Row(current: "3.0.0", channel: .stable, releases: catalog, expected: .upToDate, why: "newer than anything: no downgrade"),
            Row(current: "2.0.0", channel: .stable, releases: catalog, expected: .upToDate,
                why: "stable channel never sees the beta pre-release"),
            Row(current: "2.0.0", channel: .beta, releases: catalog, expected: .delta(to: v("2.1.0-beta.1"), from: v("2.0.0"), size: 30),
                why: "beta channel gets the pre-release, by delta"),
            Row(current: "1.1.0", channel: .beta, releases: catalog, expected: .full(to: v("2.1.0-beta.1"), size: 2000),
                why: "beta: latest by precedence is 2.1.0-beta.1, a major jump: full"),
            Row(current: "1.1.0", channel: .stable, releases: Array(catalog.prefix(4)), expected: .upToDate,
                why: "a stable release... no: 1.2.0 is a beta-channel release, hidden from stable"),
            Row(current: "2.1.0-beta.1", channel: .beta, releases: catalog, expected: .upToDate, why: "latest beta already"),
        ]
    }()

    @Test(arguments: rows)
    func table(_ row: Row) {
        let decision = DeliveryPolicy().decide(current: Self.v(row.current), channel: row.channel, releases: row.releases)
        #expect(decision == row.expected, "\(row.why)")
    }

    @Test func deltaSourcesCoverEachChannel() {
        let earlier: [(version: SemanticVersion, channel: DeliveryPolicy.Channel)] = [
            (Self.v("1.0.0"), .stable), (Self.v("1.1.0"), .stable), (Self.v("1.2.0-beta.1"), .beta),
            (Self.v("1.2.0-beta.2"), .beta), (Self.v("1.2.0-rc.1"), .beta), (Self.v("1.1.5"), .beta),
            (Self.v("1.3.0"), .stable),
        ]
        func sources(_ v: String, _ c: DeliveryPolicy.Channel, _ k: Int) -> [String] {
            DeliveryPolicy.deltaSources(for: Self.v(v), channel: c, among: earlier, history: k).map(\.description)
        }
        // Stable 1.2.0 after three pre-releases: beta clients may be on any of them, stable clients
        // on 1.1.0 or 1.0.0; the three newest of all alone would be pre-releases only.
        #expect(sources("1.2.0", .stable, 2) == ["1.2.0-rc.1", "1.2.0-beta.2", "1.1.0", "1.0.0"])
        #expect(sources("1.2.0", .stable, 3) == ["1.2.0-rc.1", "1.2.0-beta.2", "1.2.0-beta.1", "1.1.0", "1.0.0"])
        // A beta release reaches beta clients only, who can be at anything.
        #expect(sources("1.2.0-rc.2", .beta, 2) == ["1.2.0-rc.1", "1.2.0-beta.2"])
        // A beta-channel release without a pre-release tag is hidden from stable too.
        #expect(sources("1.2.0", .beta, 2) == ["1.2.0-rc.1", "1.2.0-beta.2"])
        // Never from a newer or equal version; nothing with no history.
        #expect(sources("1.1.0", .stable, 5) == ["1.0.0"])
        #expect(sources("1.2.0", .stable, 0) == [])
        // Overlap counted once: the newest stable releases are also the newest of all.
        #expect(sources("1.4.0", .stable, 1) == ["1.3.0"])
    }

    @Test func thresholdIsConfigurable() {
        let d = DeliveryPolicy(deltaThreshold: 0.7).decide(current: Self.v("1.0.0"), channel: .stable, releases: Array(Self.catalog.prefix(3)))
        #expect(d == .delta(to: Self.v("1.1.0"), from: Self.v("1.0.0"), size: 600))
    }
}
