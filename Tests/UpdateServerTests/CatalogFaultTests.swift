import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import TestSupport
import TreeIO
import UpdateModels
import UpdateServer

/// The catalog database locked by another process, or corrupted: a clear error and no data lost.
@Suite(.serialized) struct CatalogFaultTests {
    @Test func aCorruptedCatalogIsReportedAndLeftAsItIs() throws {
        let f = try ServerFixture(publish: false)
        let path = f.service.configuration.dataDirectory + "/catalog.sqlite"
        var rng = SeededGenerator(seed: 4)
        let garbage = rng.bytes(64 << 10)
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        try garbage.withUnsafeBytes { try POSIX.writeNewFile(path, $0, mode: 0o600) }
        #expect {
            _ = try UpdateService(configuration: f.service.configuration)
        } throws: { error in
            guard case ServerError.badConfiguration(let m) = error else { return false }
            return m.contains(path) && m.contains("left unchanged")
        }
        let status = try Run.process(Run.product("phoenix-server"), ["status", "--data", f.service.configuration.dataDirectory])
        #expect(status.status != 0 && status.stderr.contains("catalog.sqlite"), "\(status.stderr)")
        #expect(try POSIX.readFile(path) == garbage, "the damaged catalog must not be overwritten")
    }

    /// Publishes of one version at the same time (a CI retry after a timeout, the CLI beside the
    /// server): one wins, the others are refused as conflicts, and the winner's tree (kept to make
    /// later deltas) is whole. Before, each removed the tree it found, the winner's included.
    @Test func concurrentPublishesOfAVersionKeepTheWinnersTree() throws {
        let f = try ServerFixture(publish: false)
        let p = ServerFixture.platform
        _ = try f.service.publish(.init(platform: p, version: "1.0.0"), bundleDirectory: f.trees["1.0.0"]!)
        let outcomes = LockedList()
        DispatchQueue.concurrentPerform(iterations: 4) { i in
            do {
                _ = try f.service.publish(.init(platform: p, version: "1.0.1"), bundleDirectory: f.trees["1.0.1"]!)
                outcomes.append(0)
            } catch ServerError.conflict(_) {
                outcomes.append(1)
            } catch {
                outcomes.append(2)
            }
        }
        #expect(outcomes.values.sorted() == [0, 1, 1, 1], "0 published, 1 conflict, 2 other error: \(outcomes.values)")
        let tree = f.service.treesDirectory + "/" + p + "/1.0.1"
        #expect(try TreeSpec.digest(tree) == f.digest("1.0.1"))
        f.service.runPendingJobs()
        #expect(try f.service.catalog.deltas(platform: p).contains { $0.toVersion == "1.0.1" && $0.state == .ready })

        // A publish that holds the version's lock: another is refused and touches nothing.
        let held = try #require(try FileLock(path: f.service.treesDirectory + "/" + p + "/.1.1.0.lock", patience: 0))
        try TreeSpec.build(f.service.treesDirectory + "/" + p + "/1.1.0", [.text("VERSION", "being built")])
        #expect(throws: ServerError.self) {
            _ = try f.service.publish(.init(platform: p, version: "1.1.0"), bundleDirectory: f.trees["1.1.0"]!)
        }
        #expect(try POSIX.readFile(f.service.treesDirectory + "/" + p + "/1.1.0/VERSION") == Array("being built".utf8))
        held.release()
        _ = try f.service.publish(.init(platform: p, version: "1.1.0"), bundleDirectory: f.trees["1.1.0"]!)
        #expect(try TreeSpec.digest(f.service.treesDirectory + "/" + p + "/1.1.0") == f.digest("1.1.0"))
    }

    /// The static manifests (for a CDN) are re-signed by the ticker before they expire, not only when
    /// a release or a delta is added: a quiet week would otherwise leave every static client refused.
    @Test func staticManifestsAreReSignedBeforeTheyExpire() throws {
        let f = try ServerFixture(publish: false)
        let p = ServerFixture.platform
        _ = try f.service.publish(.init(platform: p, version: "1.0.0"), bundleDirectory: f.trees["1.0.0"]!)
        let file = f.service.staticDirectory + "/manifest/\(p)/stable.json"
        func expires() throws -> Date {
            let envelope = try WireJSON.decoder().decode(SignedEnvelope.self, from: Data(try POSIX.readFile(file)))
            return try Manifest.decode(try envelope.verifiedPayload(trusting: [f.publicKey])).expires
        }
        let lifetime = TimeInterval(f.service.configuration.manifestLifetimeSeconds)
        let first = try expires()
        f.service.refreshStaticManifests(now: Date().addingTimeInterval(lifetime / 4))
        #expect(try expires() == first, "more than half its lifetime left: kept")
        let later = Date().addingTimeInterval(lifetime * 0.6)
        f.service.refreshStaticManifests(now: later)
        #expect(try expires() >= later.addingTimeInterval(lifetime - 1), "re-signed with a full lifetime from then")
    }

    /// The revision is the manifest version, a replay floor in every client: it never falls below the
    /// clock's seconds, so a catalog moved aside (the corrupt-catalog error's advice) or restored from
    /// a backup still issues versions above those of before. It started at 1 and counted changes.
    @Test func manifestVersionsStayAboveTheClock() throws {
        let f = try ServerFixture(publish: false)
        #expect(try f.service.catalog.revision() == 1, "a new catalog")
        let start = UInt64(Date().timeIntervalSince1970)
        try f.service.catalog.raiseRevisionToClock()
        let raised = try f.service.catalog.revision()
        #expect(raised >= start && raised <= start + 5)
        try f.service.catalog.raiseRevisionToClock()
        #expect(try f.service.catalog.revision() >= raised, "never lowered")
        _ = try f.service.publish(.init(platform: ServerFixture.platform, version: "1.0.0"), bundleDirectory: f.trees["1.0.0"]!)
        _ = try f.service.publish(.init(platform: ServerFixture.platform, version: "1.0.1"), bundleDirectory: f.trees["1.0.1"]!)
        #expect(try f.service.catalog.revision() >= raised + 2, "one more with every change")
        let manifest = try f.service.manifest(platform: ServerFixture.platform, channel: .stable)
        #expect(manifest.manifestVersion == (try f.service.catalog.revision()))
    }

    /// Delta jobs are claimed in one transaction: a server and a `phoenix-server publish` on the same
    /// data directory never make the same delta, and a job left running by a process that died is
    /// taken over.
    @Test func deltaJobsAreClaimedOnce() throws {
        let f = try ServerFixture(publish: false)
        for v in ["1.0.0", "1.0.1", "1.1.0"] {
            _ = try f.service.publish(.init(platform: ServerFixture.platform, version: v), bundleDirectory: f.trees[v]!)
        }
        let catalog = f.service.catalog
        let pending = try catalog.unfinishedDeltas().count
        #expect(pending >= 2)
        var claimed: [String] = []
        // A claim file left by a process that was killed: removed by the next one to start.
        let stale = f.service.configuration.dataDirectory + "/claims/0123abcd-dead.lock"
        try Array("".utf8).withUnsafeBytes { try POSIX.writeNewFile(stale, $0, mode: 0o644) }
        // Another process on the same data directory: its own claim token, held while it lives.
        var other: UpdateService? = try UpdateService(configuration: f.service.configuration)
        #expect(!POSIX.exists(stale))
        let otherToken = try #require(other?.claims.token)
        while let j = try catalog.claimDelta(owner: otherToken, isAlive: f.service.claims.isAlive) {
            claimed.append(j.fromVersion + ">" + j.toVersion)
        }
        #expect(claimed.count == pending && Set(claimed).count == pending, "\(claimed)")
        #expect(try catalog.unfinishedDeltas().allSatisfy { $0.state == .running })
        #expect(f.service.claims.isAlive(otherToken))
        #expect(try catalog.claimDelta(owner: f.service.claims.token, isAlive: f.service.claims.isAlive) == nil,
                "all taken by a process that lives")
        other = nil  // it ends (its lock goes with it, however it ends)
        #expect(!f.service.claims.isAlive(otherToken))
        f.service.runPendingJobs()  // takes over the jobs of the process that is gone
        #expect(try catalog.unfinishedDeltas().isEmpty && catalog.deltas(platform: ServerFixture.platform).allSatisfy { $0.state == .ready })
    }

    /// A delta whose result the catalog could not take (busy past its timeout) is left claimed by the
    /// process that made it; that process's next run of the jobs makes it again, where before its own
    /// claim kept it from the job for as long as it lived (offered as full packages only).
    @Test func aDeltaLeftClaimedByThisProcessIsMadeByItsNextRun() throws {
        let f = try ServerFixture(publish: false)
        let p = ServerFixture.platform
        for v in ["1.0.0", "1.0.1"] { _ = try f.service.publish(.init(platform: p, version: v), bundleDirectory: f.trees[v]!) }
        // As a run leaves it when recording fails: running, claimed by this process.
        let claimed = try #require(try f.service.catalog.claimDelta(owner: f.service.claims.token, isAlive: { _ in true }))
        #expect(try f.service.catalog.unfinishedDeltas().map(\.state) == [.running])
        f.service.runPendingJobs()
        #expect(try f.service.catalog.unfinishedDeltas().isEmpty)
        #expect(try f.service.catalog.deltas(platform: p).contains {
            $0.fromVersion == claimed.fromVersion && $0.toVersion == claimed.toVersion && $0.state == .ready
        })
    }

    @Test func aLockedCatalogStillAnswersChecksAndWritesGet503WithRetryAfter() async throws {
        let f = try ServerFixture { $0.catalogBusyTimeoutSeconds = 0.3 }
        let path = f.service.configuration.dataDirectory + "/catalog.sqlite"
        let before = try f.service.catalog.releases(platform: ServerFixture.platform).count
        // Another process takes the write lock and keeps it.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        holder.arguments = ["python3", "-c", """
            import sqlite3, sys, time
            c = sqlite3.connect(sys.argv[1], isolation_level=None)
            c.execute("BEGIN EXCLUSIVE")
            print("locked", flush=True)
            time.sleep(60)
            """, path]
        let out = Pipe()
        holder.standardOutput = out
        try holder.run()
        // SIGKILL: a child of the test runner may start with SIGTERM blocked.
        defer { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() }
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        #expect(line.contains("locked"))
        let event = TelemetryEvent(clientID: "c1", platform: ServerFixture.platform, channel: "stable", stage: .check, outcome: "success",
                                   fromVersion: "1.0.0", toVersion: nil, kind: nil, durationMs: 3)
        try await buildApplication(service: f.service).test(.router) { client in
            // Reads go on (WAL): checks are answered.
            try await client.execute(uri: "/api/version/check?current_version=1.0.0&platform=\(ServerFixture.platform)", method: .get) { r in
                #expect(r.status == .ok)
            }
            // A write waits for the lock, then says so: 503, Retry-After, a JSON error naming the cause.
            try await client.execute(uri: "/api/telemetry", method: .post, body: ByteBuffer(bytes: try WireJSON.encoder().encode(event))) { r in
                #expect(r.status == .serviceUnavailable)
                #expect(r.headers[.retryAfter] == "5")
                #expect(String(buffer: r.body).contains("locked by another process"))
            }
        }
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        // The lock gone, the same write succeeds and nothing was lost.
        try f.service.catalog.insertTelemetry(event, received: Date())
        #expect(try f.service.catalog.releases(platform: ServerFixture.platform).count == before)
    }
}
