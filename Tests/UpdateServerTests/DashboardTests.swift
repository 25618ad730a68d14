import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
import TestSupport
import UpdateModels
import UpdateServer

/// The release dashboard: its numbers from a seeded catalog, its login and buttons over real HTTP, and
/// the page in a real headless browser (Debian's chromium), with a screenshot kept as an artifact.
@Suite(.serialized) struct DashboardTests {
    static let p = ServerFixture.platform

    /// A catalog with a rollout in each state and telemetry behind the numbers: 30 delta installs of
    /// 1.1.0 (saving bytes against its full package), and failures that auto-paused 2.0.0.
    static func seeded() throws -> ServerFixture {
        let experiment = Experiment(name: "cadence", variants: [.init(name: "fast", checkIntervalSeconds: 3600), .init(name: "slow")])
        let f = try ServerFixture(stages: [10, 25, 50, 100]) { $0.rolloutIntervalSeconds = 0; $0.experiment = experiment }
        try f.service.changeRollout(platform: p, version: "1.0.1", .set(percent: 100))
        try f.service.changeRollout(platform: p, version: "1.1.0", .advance)
        let now = Date()
        for i in 0..<30 {
            let e = TelemetryEvent(clientID: "c\(i)", platform: p, channel: "stable", stage: .install, outcome: "success", fromVersion: "1.0.1",
                                   toVersion: "1.1.0", kind: "delta", durationMs: 20, bytes: 1000, variant: "cadence/" + (i % 2 == 0 ? "fast" : "slow"))
            try f.service.catalog.insertTelemetry(e, received: now.addingTimeInterval(-Double(i) * 1800))
        }
        for i in 0..<25 {
            let e = TelemetryEvent(clientID: "d\(i)", platform: p, channel: "stable", stage: .install, outcome: i < 6 ? "disk_full" : "success",
                                   fromVersion: "1.1.0", toVersion: "2.0.0", kind: "full", durationMs: 20, bytes: 5000)
            try f.service.catalog.insertTelemetry(e, received: now.addingTimeInterval(-600))
        }
        f.service.tickRollouts(now: now)
        return f
    }

    @Test func theNumbersComeFromTheCatalog() throws {
        let f = try Self.seeded()
        let data = try f.service.dashboardData()
        let view = try #require(data.platforms.first { $0.platform == Self.p })
        let full110 = try #require(f.service.catalog.releases(platform: Self.p).first { $0.version == "1.1.0" }).fullSize
        #expect(view.deltaInstalls == 30 && view.deltaBytes == 30_000)
        #expect(view.fullEquivalentBytes == 30 * full110 && view.bytesSaved == 30 * full110 - 30_000)
        #expect(view.fullInstalls == 19)
        #expect(view.failures.first?.category == "install: disk_full" && view.failures.first?.count == 6)
        #expect(view.series.reduce(0) { $0 + $1.successes } == 30 + 19)
        #expect(view.series.reduce(0) { $0 + $1.failures } == 6)
        let r200 = try #require(view.releases.first { $0.version == "2.0.0" })
        #expect(r200.rollout.state == .paused && r200.health.attempts == 25)
        #expect(view.releases.first { $0.version == "1.1.0" }?.rollout.percent == 25)
        #expect(data.log.contains { $0.action == "auto-pause" && $0.version == "2.0.0" })
        #expect(view.variants.count == 2 && view.variants.allSatisfy { $0.installs == 15 })
    }

    /// Reported byte counts are bounded when received, and the dashboard's sums of them saturate: huge
    /// counts in one group (SQL's SUM would fail) and in several groups (adding them would trap) leave
    /// the page working.
    @Test func hugeReportedByteCountsNeitherCrashNorFailTheDashboard() throws {
        func event(_ from: String, bytes: UInt64) -> TelemetryEvent {
            TelemetryEvent(clientID: "x", platform: Self.p, channel: "stable", stage: .install, outcome: "success", fromVersion: from,
                           toVersion: "1.1.0", kind: "delta", durationMs: 1, bytes: bytes)
        }
        #expect(throws: (any Error).self) { try event("1.0.0", bytes: TelemetryEvent.maxBytes + 1).validate() }
        try event("1.0.0", bytes: TelemetryEvent.maxBytes).validate()
        let f = try ServerFixture()
        // Stored as they would be without the bound (a catalog written before it): Int64.max each.
        for from in ["1.0.0", "1.0.0", "1.0.1", "1.0.2"] {
            try f.service.catalog.insertTelemetry(event(from, bytes: .max), received: Date())
        }
        let view = try #require(try f.service.dashboardData().platforms.first { $0.platform == Self.p })
        #expect(view.deltaInstalls == 4 && view.deltaBytes == .max)
    }

    static func request(_ url: String, post: Bool = false, head: Bool = false, headers: [(String, String)] = [],
                        body: String? = nil) async throws -> (status: Int, headers: [String: String], body: String) {
        var r = HTTPClientRequest(url: url)
        if post { r.method = .POST }
        if head { r.method = .HEAD }
        for (k, v) in headers { r.headers.add(name: k, value: v) }
        if let body { r.body = .bytes(ByteBuffer(string: body)) }
        // Redirects are what these tests look at: not followed.
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
        defer { _ = http.shutdown() as EventLoopFuture<Void> }
        let response = try await http.execute(r, timeout: .seconds(30))
        var out: [String: String] = [:]
        for h in response.headers { out[h.name.lowercased()] = h.value }
        let bytes = try await response.body.collect(upTo: 8 << 20)
        return (Int(response.status.code), out, String(buffer: bytes))
    }

    static func loginLink(_ base: String) async throws -> String {
        let r = try await request(base + "/api/admin/login-link", post: true, headers: [("Authorization", "Bearer \(ServerFixture.token)")])
        #expect(r.status == 200)
        let json = try JSONDecoder().decode([String: String].self, from: Data(r.body.utf8))
        return base + (json["url"] ?? "")
    }

    static func chromium(_ args: [String]) async throws -> ProcessResult {
        guard let browser = Run.which("chromium") ?? Run.which("chromium-browser") else {
            throw TestFailure("chromium is not installed: run scripts/setup-debian.sh (Debian's chromium package)")
        }
        let profile = try TemporaryDirectory()
        return try await Run.processOffPool(browser, ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                                         "--user-data-dir=\(profile.path)", "--hide-scrollbars"] + args)
    }

    struct TestFailure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    @Test func thePageInAHeadlessBrowser() async throws {
        let f = try Self.seeded()
        try await buildApplication(service: f.service).test(.live) { client in
            let base = "http://127.0.0.1:\(client.port!)"
            // Without a login: sent to the login page; the admin token in a header also works (scripts).
            let anonymous = try await Self.request(base + "/dashboard")
            #expect(anonymous.status == 303 && anonymous.headers["location"] == "/dashboard/login")
            let scripted = try await Self.request(base + "/dashboard", headers: [("Authorization", "Bearer \(ServerFixture.token)")])
            #expect(scripted.status == 200 && scripted.body.contains("1.1.0"))
            #expect(scripted.headers["content-security-policy"]?.contains("default-src 'none'") == true)

            // The browser follows a single-use login link to the page; the DOM after load holds the data.
            let dom = try await Self.chromium(["--dump-dom", try await Self.loginLink(base)])
            #expect(dom.status == 0, "\(dom.stderr.suffix(500))")
            let page = dom.stdout
            for needle in ["Phoenix Update", Self.p, "2.0.0", "1.1.0", "25% (next 50%)", "auto-paused", "install: disk_full", "<svg",
                           "class=\"chart outcomes\"", "class=\"saved\"", "Experiment cadence", "name=\"csrf\"", "value=\"advance\"",
                           "value=\"resume\""] {
                #expect(page.contains(needle), "the rendered page lacks \(needle)")
            }
            #expect(!page.contains("<script"), "no JavaScript")
            #expect(!page.contains("login"), "the browser is logged in, not on the login page")

            // The screenshot, kept as a test artifact.
            let artifacts = FileManager.default.currentDirectoryPath + "/test-artifacts"
            try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
            let png = artifacts + "/dashboard.png"
            try? FileManager.default.removeItem(atPath: png)
            let shot = try await Self.chromium(["--window-size=1280,1500", "--screenshot=\(png)", try await Self.loginLink(base)])
            #expect(shot.status == 0, "\(shot.stderr.suffix(500))")
            let bytes = try Data(contentsOf: URL(fileURLWithPath: png))
            #expect(bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) && bytes.count > 20_000, "screenshot of \(bytes.count) bytes")

            // A link works once; a HEAD of it (a mail scanner's) neither spends it nor logs in.
            let link = try await Self.loginLink(base)
            let probe = try await Self.request(link, head: true)
            #expect(probe.status == 200 && probe.headers["set-cookie"] == nil && probe.body.isEmpty)
            #expect(try await Self.request(link).status == 303)
            #expect(try await Self.request(link).status == 403)
        }
    }

    @Test func theButtonsChangeRolloutsOnlyWithTheSessionsToken() async throws {
        let f = try Self.seeded()
        try await buildApplication(service: f.service).test(.live) { client in
            let base = "http://127.0.0.1:\(client.port!)"
            let form = [("Content-Type", "application/x-www-form-urlencoded")]
            let wrong = try await Self.request(base + "/dashboard/login", post: true, headers: form, body: "token=nope")
            #expect(wrong.status == 403 && wrong.headers["set-cookie"] == nil)
            let login = try await Self.request(base + "/dashboard/login", post: true, headers: form,
                                               body: "token=" + ServerFixture.token)
            #expect(login.status == 303)
            let cookieHeader = try #require(login.headers["set-cookie"])
            #expect(cookieHeader.contains("HttpOnly") && cookieHeader.contains("SameSite=Strict"))
            let cookie = String(cookieHeader.split(separator: ";")[0])
            let page = try await Self.request(base + "/dashboard", headers: [("Cookie", cookie)])
            #expect(page.status == 200)
            let csrf = try #require(page.body.range(of: #"name="csrf" value="([0-9a-f]+)""#, options: .regularExpression)
                .map { String(page.body[$0].dropFirst(19).dropLast()) })
            // Without the session's token: refused, nothing changes.
            let forged = try await Self.request(base + "/dashboard/rollout", post: true, headers: form + [("Cookie", cookie)],
                                                body: "csrf=00&platform=\(Self.p)&version=2.0.0&action=resume")
            #expect(forged.status == 403)
            #expect(try f.service.catalog.rollouts(platform: Self.p)["2.0.0"]?.state == .paused)
            let noSession = try await Self.request(base + "/dashboard/rollout", post: true, headers: form,
                                                   body: "csrf=\(csrf)&platform=\(Self.p)&version=2.0.0&action=resume")
            #expect(noSession.status == 303 && noSession.headers["location"] == "/dashboard/login")
            // With it: resume 2.0.0, advance 1.1.0.
            for (version, action) in [("2.0.0", "resume"), ("1.1.0", "advance")] {
                let r = try await Self.request(base + "/dashboard/rollout", post: true, headers: form + [("Cookie", cookie)],
                                               body: "csrf=\(csrf)&platform=\(Self.p)&version=\(version)&action=\(action)")
                #expect(r.status == 303 && r.headers["location"] == "/dashboard")
            }
            let rollouts = try f.service.catalog.rollouts(platform: Self.p)
            #expect(rollouts["2.0.0"]?.state == .active && rollouts["1.1.0"]?.percent == 50)
            let bad = try await Self.request(base + "/dashboard/rollout", post: true, headers: form + [("Cookie", cookie)],
                                             body: "csrf=\(csrf)&platform=\(Self.p)&version=1.0.0&action=advance")
            #expect(bad.status == 400 && bad.body.contains("already at 100%"))
            // Logging out ends the session.
            _ = try await Self.request(base + "/dashboard/logout", post: true, headers: [("Cookie", cookie)])
            #expect(try await Self.request(base + "/dashboard", headers: [("Cookie", cookie)]).status == 303)
        }
    }
}
