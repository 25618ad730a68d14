import Foundation
import Hummingbird
import HummingbirdTesting
import PatchFormat
import Patcher
import Testing
import TestSupport
import TreeIO
import UpdateClient
import UpdateModels
import UpdateServer

/// The update client against a live phoenix-server on 127.0.0.1.
@Suite(.serialized) struct ClientTests {
    /// A server with the 1.x line of the fixture (deltas 1.0.0 -> 1.0.1 -> 1.1.0) and optionally 2.0.0.
    static func withServer(major: Bool = false, stages: [Int] = [100], configure: (inout ServerConfiguration) -> Void = { _ in },
                           _ body: @escaping @Sendable (ServerFixture, String) async throws -> Void) async throws {
        let f = try ServerFixture(publish: false, stages: stages, configure: configure)
        for v in major ? ["1.0.0", "1.0.1", "1.1.0", "2.0.0"] : ["1.0.0", "1.0.1", "1.1.0"] {
            _ = try f.service.publish(.init(platform: "desktop", version: v, changelog: "notes \(v)"), bundleDirectory: f.trees[v]!)
        }
        f.service.runPendingJobs()
        let app = buildApplication(service: f.service)
        try await app.test(.live) { client in
            try await body(f, "http://127.0.0.1:\(client.port!)")
        }
    }

    /// A configured client whose installed copy is the fixture's `version` tree.
    static func client(_ f: ServerFixture, _ url: String, installed version: String, key: Ed25519.PublicKey? = nil,
                       now: @escaping @Sendable () -> Date = { Date() }) throws -> Updater {
        let home = f.dir.file("client-\(UUID().uuidString)")
        let install = home + "/app"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        try TreeSpec.copy(f.trees[version]!, install)
        let paths = ClientPaths(config: home + "/config/config.json")
        var s = ClientSettings()
        try s.set("server_url", url)
        try s.set("public_key", (key ?? f.publicKey).base64)
        try s.set("platform", "desktop")
        try s.set("install_dir", install)
        try s.set("current_version", version)
        try paths.save(s)
        return try Updater(paths: paths, now: now)
    }

    @Test func updatesByDeltaConfirmsAndRollsBackOnRequest() async throws {
        try await Self.withServer { f, url in
            let u = try Self.client(f, url, installed: "1.0.0")
            guard case .available(let offer) = try await u.check(force: true) else { Issue.record("no offer"); return }
            #expect(offer.kind == "delta" && offer.version == "1.1.0" && offer.fromVersion == "1.0.0")
            let r = try await u.install()
            #expect(r.kind == "delta" && r.version == "1.1.0" && r.deltaFallbackReason == nil)
            #expect(r.downloadedBytes < r.fullSize / 2)
            #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("1.1.0"))
            #expect(u.settings.currentVersion == "1.1.0")
            #expect(u.state.pending?.version == "1.1.0")
            try u.confirm()
            #expect(u.state.pending == nil)
            if case .upToDate = try await u.check(force: true) {} else { Issue.record("expected up to date") }
            // A reloaded client sees the same state.
            let again = try Updater(paths: u.paths)
            #expect(again.settings.currentVersion == "1.1.0")
            #expect(try again.rollback() == "1.0.0")
            #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("1.0.0"))
        }
    }

    @Test func majorJumpInstallsTheFullPackage() async throws {
        try await Self.withServer(major: true) { f, url in
            let u = try Self.client(f, url, installed: "1.1.0")
            let r = try await u.install()
            #expect(r.kind == "full" && r.version == "2.0.0")
            #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("2.0.0"))
        }
    }

    @Test func aModifiedInstallationGetsTheFullPackageAndTheDeltaIsRemembered() async throws {
        try await Self.withServer { f, url in
            let u = try Self.client(f, url, installed: "1.0.0")
            try Data("corrupted".utf8).write(to: URL(fileURLWithPath: u.settings.installDir + "/res/a.txt"))
            let r = try await u.install()
            #expect(r.kind == "full")
            #expect(r.deltaFallbackReason?.contains("installation differs") == true)
            #expect(u.state.failedDeltas.count == 1)
            #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("1.1.0"))
        }
    }

    @Test func aTamperedPackageIsRejectedAndNothingIsInstalled() async throws {
        try await Self.withServer { f, url in
            let u = try Self.client(f, url, installed: "1.0.1")
            guard case .available(let offer) = try await u.check(force: true) else { Issue.record("no offer"); return }
            // The server's stored delta and full packages are altered (a compromised store, valid TLS).
            for sha in [offer.package.sha256, offer.full.sha256] {
                let path = try #require(f.service.store.path(for: sha))
                var bytes = try POSIX.readFile(path)
                bytes[bytes.count / 2] ^= 0xFF
                try POSIX.unlink(path)
                try bytes.withUnsafeBytes { try POSIX.writeNewFile(path, $0, mode: 0o644) }
            }
            await #expect {
                _ = try await u.install()
            } throws: { error in
                (error as? ClientError)?.category == "checksum"
            }
            #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("1.0.1"))
            #expect(u.settings.currentVersion == "1.0.1")
        }
    }

    @Test func manifestsThatDoNotVerifyAreRejected() async throws {
        try await Self.withServer { f, url in
            // Signed by another key than the pinned one.
            let other = try Self.client(f, url, installed: "1.0.0", key: try Ed25519.PrivateKey.generate().publicKey())
            await #expect { _ = try await other.install() } throws: { ($0 as? ClientError)?.category == "signature" }
            #expect(try TreeSpec.digest(other.settings.installDir) == f.digest("1.0.0"))
            // Expired: the client's clock is past the manifest's expiry.
            let late = try Self.client(f, url, installed: "1.0.0", now: { Date().addingTimeInterval(30 * 24 * 3600) })
            await #expect { _ = try await late.check(force: true) } throws: { ($0 as? ClientError)?.category == "expired" }
            // Replayed: the client has seen a newer manifest than the one served.
            let replay = try Self.client(f, url, installed: "1.0.0")
            replay.state.highestManifestVersion["desktop/stable"] = try f.service.catalog.revision() + 1
            await #expect { _ = try await replay.install() } throws: { ($0 as? ClientError)?.category == "rollback" }
            #expect(try TreeSpec.digest(replay.settings.installDir) == f.digest("1.0.0"))
        }
    }

    @Test func anInterruptedDownloadResumes() async throws {
        try await Self.withServer { f, url in
            let u = try Self.client(f, url, installed: "1.0.0")
            guard case .available(let offer) = try await u.check(force: true) else { Issue.record("no offer"); return }
            // The first half arrived before the connection broke.
            let stored = try POSIX.readFile(try #require(f.service.store.path(for: offer.package.sha256)))
            try FileManager.default.createDirectory(atPath: u.paths.downloads, withIntermediateDirectories: true)
            try Array(stored.prefix(stored.count / 2)).withUnsafeBytes {
                try POSIX.writeNewFile(u.paths.downloads + "/" + offer.package.sha256 + ".part", $0, mode: 0o600)
            }
            let seen = LockedList()
            let r = try await u.install { seen.append($0.received) }
            #expect(r.kind == "delta")
            #expect((seen.values.first ?? 0) > UInt64(stored.count / 2), "the download restarted from zero")
            #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("1.1.0"))
        }
    }

    @Test func anUnconfirmedUpdateIsRolledBackAfterTheDeadline() async throws {
        try await Self.withServer { f, url in
            let u = try Self.client(f, url, installed: "1.0.0")
            try u.settings.set("confirm_deadline_seconds", "30")
            try u.paths.save(u.settings)
            _ = try await u.install()
            #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("1.1.0"))
            let later = try Updater(paths: u.paths, now: { Date().addingTimeInterval(120) })
            let status = try later.status()
            #expect(status.currentVersion == "1.0.0" && status.pending == nil)
            #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("1.0.0"))
        }
    }

    @Test func heldBackUntilAManualCheckThenFailuresAndRollbacksAreReported() async throws {
        let experiment = Experiment(name: "cadence", variants: [.init(name: "hourly", checkIntervalSeconds: 3600, notificationStyle: "banner")])
        try await Self.withServer(stages: [10, 100], configure: { $0.experiment = experiment; $0.rolloutIntervalSeconds = 0 }) { f, url in
            let u = try Self.client(f, url, installed: "1.0.0")
            // A client id outside the 10% of both newer releases.
            let id = (0...).lazy.map { "held-\($0)" }.first { id in
                ["1.0.1", "1.1.0"].allSatisfy {
                    !RolloutBucket.isInside(bucket: RolloutBucket.bucket(clientID: id, platform: "desktop", version: $0), percent: 10)
                }
            }!
            u.settings.clientID = id
            try u.settings.set("health_command", "exit 3")
            try u.paths.save(u.settings)
            if case .upToDate = try await u.check(force: true) {} else { Issue.record("a held-back client is offered nothing newer") }
            // The server's variant sets the check cadence.
            #expect(u.state.variant?.name == "hourly" && u.state.variant?.notificationStyle == "banner")
            #expect(u.checkInterval == 3600)
            guard case .available(let offer) = try await u.check(manual: true) else { Issue.record("manual check: no offer"); return }
            #expect(offer.version == "1.1.0")
            // The install works, the health command fails, the client rolls back: both are reported, with
            // the version and the variant, and count against 1.1.0 as one client's one failure.
            await #expect { _ = try await u.install(manual: true) } throws: { ($0 as? ClientError)?.category == "health" }
            #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("1.0.0"))
            let events = try f.service.catalog.telemetry(platform: "desktop", since: Date().addingTimeInterval(-600))
            #expect(events.contains { $0.stage == .rollback && $0.outcome == "health" && $0.fromVersion == "1.1.0" && $0.toVersion == "1.0.0" })
            #expect(events.contains { $0.stage == .install && $0.outcome == "health" && $0.toVersion == "1.1.0" && $0.variant == "cadence/hourly" })
            #expect(u.state.unsentReports == nil, "the queued rollback report was sent")
            let status = try #require(f.service.rolloutStatus(platform: "desktop").first { $0.version == "1.1.0" })
            #expect(status.health.failures == ["health": 1] && status.health.attempts == 1, "\(status.health)")
        }
    }

    @Test func aFailingHealthCommandRollsBack() async throws {
        try await Self.withServer { f, url in
            let u = try Self.client(f, url, installed: "1.0.0")
            try u.settings.set("health_command", "exit 3")
            try u.paths.save(u.settings)
            await #expect { _ = try await u.install() } throws: { ($0 as? ClientError)?.category == "health" }
            #expect(u.settings.currentVersion == "1.0.0")
            #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("1.0.0"))
            // A passing health command confirms.
            try u.settings.set("health_command", "true")
            try u.paths.save(u.settings)
            let ok = try Updater(paths: u.paths)
            let r = try await ok.install()
            #expect(r.confirmed && ok.state.pending == nil)
        }
    }

    /// The restarted app (and the health command) starts with no signal blocked and SIGPIPE at its
    /// default action. Started with Foundation's Process it inherited SIGPIPE ignored (SwiftNIO ignores
    /// it in the client), so an app or restart script writing to a closed pipe got errors instead of
    /// stopping, and from a thread of the concurrency pool a mask blocking nearly every signal (SIGTERM
    /// and Ctrl-C then did nothing). The real command line, as a desktop runs it.
    @Test func theRestartedAppStartsWithDefaultSignals() async throws {
        try await Self.withServer { f, url in
            let u = try Self.client(f, url, installed: "1.0.0")
            let dir = try TemporaryDirectory()
            try u.settings.set("restart_command", "grep -E 'SigBlk|SigIgn' /proc/self/status > '\(dir.file("restart"))'")
            try u.settings.set("health_command", "grep -E 'SigBlk|SigIgn' /proc/self/status > '\(dir.file("health"))'")
            try u.settings.set("telemetry", "off")
            try u.paths.save(u.settings)
            let r = try await Run.processOffPool(ClientCrashTests.binary, ["install", "--yes", "--config", u.paths.config])
            #expect(r.status == 0, "\(r.stderr)")
            for name in ["restart", "health"] {
                let text = try String(contentsOfFile: dir.file(name), encoding: .utf8)
                func mask(_ field: String) throws -> UInt64 {
                    let line = try #require(text.split(separator: "\n").first { $0.hasPrefix(field + ":") }, "\(text)")
                    return try #require(UInt64(line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces), radix: 16))
                }
                #expect(try mask("SigBlk") == 0, "\(name) command: \(text)")
                let pipe: UInt64 = 1 << (UInt64(SIGPIPE) - 1), term: UInt64 = 1 << (UInt64(SIGTERM) - 1)
                #expect(try mask("SigIgn") & (pipe | term) == 0, "\(name) command: \(text)")
            }
        }
    }

    /// Two runs of the client at once (a timer's check while the new version confirms, a user's
    /// `settings set` while a check runs): each saved the whole settings and state it loaded, so the
    /// later save undid the other's changes; a lost confirmation meant a working update rolled back
    /// at its deadline. Saves now write only the fields a run changed, over the file as it is.
    @Test func concurrentRunsKeepEachOthersChanges() async throws {
        try await Self.withServer { f, url in
            let u = try Self.client(f, url, installed: "1.0.0")
            _ = try await u.install()
            #expect(u.state.pending?.version == "1.1.0")
            let timer = try Updater(paths: u.paths)       // a check started before the confirmation...
            try Updater(paths: u.paths).confirm()          // ...the new version confirms...
            var s = try u.paths.loadSettings()            // ...and the user changes a setting
            let before = s
            try s.set("frequency", "weekly")
            _ = try u.paths.save(s, since: before)
            _ = try await timer.check(force: true)        // the check saves its state after
            let floor = try #require(timer.state.highestManifestVersion["desktop/stable"])
            timer.state.highestManifestVersion["desktop/stable"] = 0   // a lower replay floor never wins
            try timer.saveState()
            timer.settings.telemetry = false                // and the run's own change of another setting
            try timer.saveSettings()
            let after = try Updater(paths: u.paths)
            #expect(after.state.pending == nil, "the confirmation was undone by the check's save")
            #expect(after.state.lastCheck != nil)
            #expect(after.settings.frequency == .weekly, "the setting was undone by the other run's save")
            #expect(!after.settings.telemetry)
            #expect(floor > 0 && after.state.highestManifestVersion["desktop/stable"] == floor)
        }
    }

    /// What acts on the pending update works on it as it is on disk at that moment: a run that loaded
    /// it earlier does not count a launch of an update another run has confirmed (that brought the
    /// pending update back, to be rolled back at its deadline), nor roll back a second time an update
    /// another run has already rolled back for its deadline (that swapped the new tree back in under
    /// the old version's name).
    @Test func pendingUpdateActionsSeeOtherRunsChanges() async throws {
        try await Self.withServer { f, url in
            let u = try Self.client(f, url, installed: "1.0.0")
            _ = try await u.install()
            let early = try Updater(paths: u.paths)
            try Updater(paths: u.paths).confirm()
            #expect(try !early.launched())
            #expect(try Updater(paths: u.paths).state.pending == nil, "a launch count brought back a confirmed update")

            let v = try Self.client(f, url, installed: "1.0.0")
            _ = try await v.install()
            let late: @Sendable () -> Date = { Date().addingTimeInterval(3600) }
            let first = try Updater(paths: v.paths, now: late), second = try Updater(paths: v.paths, now: late)
            try first.enforcePendingDeadline()
            try second.enforcePendingDeadline()
            let after = try Updater(paths: v.paths)
            #expect(after.settings.currentVersion == "1.0.0")
            #expect(try TreeSpec.digest(v.settings.installDir) == f.digest("1.0.0"), "rolled back twice")
        }
    }

    /// The restarted app crash-loops (its starts report `launched` past `max_launches`, which rolls
    /// back) and then the health command fails: the install does not roll back a second time, which
    /// would swap the new tree back in (a rollback exchanges the tree with its backup).
    @Test func aHealthFailureAfterACrashLoopRollbackDoesNotRollForward() async throws {
        try await Self.withServer { f, url in
            let u = try Self.client(f, url, installed: "1.0.0")
            let launched = "'\(ClientCrashTests.binary)' launched --config '\(u.paths.config)'"
            try u.settings.set("restart_command", "for i in 1 2 3 4; do \(launched) > /dev/null; done")
            try u.settings.set("health_command", "exit 3")
            try u.settings.set("telemetry", "off")
            try u.paths.save(u.settings)
            await #expect { _ = try await u.install() } throws: { ($0 as? ClientError)?.category == "health" }
            let after = try Updater(paths: u.paths)
            #expect(after.settings.currentVersion == "1.0.0" && after.state.pending == nil)
            #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("1.0.0"), "rolled back twice: the new tree is back")
        }
    }

    /// Saves merge the queued reports: one run sending its queue while another queues a report (a
    /// rollback, which the server's auto-pause counts) keeps the new one and drops only what was sent;
    /// and a settings file without a client id keeps this run's, not a new random one.
    @Test func mergedSavesKeepQueuedReportsAndTheClientID() throws {
        let dir = try TemporaryDirectory()
        let paths = ClientPaths(config: dir.file("config.json"))
        func report(_ outcome: String) -> TelemetryEvent {
            TelemetryEvent(clientID: "c", platform: "desktop", channel: "stable", stage: .rollback, outcome: outcome,
                           fromVersion: "1.1.0", toVersion: "1.0.0", kind: nil, durationMs: 1, bytes: nil)
        }
        var loaded = ClientState()
        loaded.unsentReports = [report("sent")]
        try paths.save(loaded)
        var other = loaded
        other.unsentReports = [report("sent"), report("queued meanwhile")]
        _ = try paths.save(other, since: loaded)       // another run queues one
        var mine = loaded
        mine.unsentReports = nil                       // this run sent what it had loaded
        let saved = try paths.save(mine, since: loaded)
        #expect(saved.unsentReports == [report("queued meanwhile")])

        // A settings file written by hand, without a client id: each load makes up a new one.
        try Array(#"{"channel": "stable"}"#.utf8).withUnsafeBytes { try POSIX.writeNewFile(paths.config, $0, mode: 0o600) }
        let fresh = try paths.loadSettings()
        var s = fresh
        try s.set("channel", "beta")
        let written = try paths.save(s, since: fresh)
        let reloaded = try paths.loadSettings()
        #expect(written.clientID == fresh.clientID && reloaded.clientID == fresh.clientID)
    }

    /// A client whose installation does not exist yet (to be installed by a full package) starts and
    /// reports its status: the recovery it runs at every start finds nothing to do there.
    @Test func aMissingInstallationIsNothingToRecover() throws {
        let dir = try TemporaryDirectory()
        let paths = ClientPaths(config: dir.file("config.json"))
        var s = ClientSettings()
        try s.set("install_dir", dir.file("not-yet"))
        try paths.save(s)
        let u = try Updater(paths: paths)
        #expect(try u.status().rollbackAvailable == false)
        #expect(!POSIX.exists(dir.file(".not-yet.phoenix")))
    }

    /// A run that cannot get the lock (another run holds it past the wait) stops with `busy` (exit 5,
    /// telemetry `busy`: not counted against the release) and writes nothing.
    @Test func aHeldLockIsBusyNotAnInstallFailure() throws {
        let dir = try TemporaryDirectory()
        var paths = ClientPaths(config: dir.file("config.json"))
        paths.lockPatience = 0.1
        let base = ClientSettings()
        try paths.save(base)
        var mine = base
        try mine.set("channel", "beta")
        let other = try #require(try FileLock(path: dir.file(".lock"), patience: 0))
        #expect { _ = try paths.save(mine, since: base) } throws: { error in
            guard case ClientError.busy(let why) = error else { return false }
            return why.contains(dir.file(".lock")) && (error as? ClientError)?.category == "busy"
        }
        #expect(try paths.loadSettings().channel == "stable")
        other.release()
        _ = try paths.save(mine, since: base)
        #expect(try paths.loadSettings().channel == "beta")
    }

    /// A state file that does not decode is refused with its path and the place of the fault, never
    /// read as a new state (that would drop the replay floor and the pending update); `phoenix-update`
    /// exits 1 (a JSON error with `--json`) and leaves the file as it was. One that cannot be read is
    /// refused the same way; missing fields read as empty.
    @Test func aCorruptStateFileIsRefusedNotReset() async throws {
        let dir = try TemporaryDirectory()
        let paths = ClientPaths(config: dir.file("config.json"))
        var floor = ClientState()
        floor.highestManifestVersion["desktop/stable"] = 42
        try paths.save(floor)
        #expect(try paths.loadState() == floor)
        let cases = [(#"{"highest_manifest_version": {"desktop/stable": "42"}}"#, "at highest_manifest_version.desktop/stable"),
                     (#"{"highest_manifest_version": {"#, "not JSON"), ("", "not JSON")]
        for (bad, fault) in cases {
            try? POSIX.unlink(paths.state)
            try Array(bad.utf8).withUnsafeBytes { try POSIX.writeNewFile(paths.state, $0, mode: 0o600) }
            for attempt in [{ _ = try paths.loadState() }, { _ = try Updater(paths: paths) }] {
                // The path, the fault, and the way out.
                #expect { try attempt() } throws: { error in
                    guard case ClientError.badFile(let path, let detail) = error else { return false }
                    return path == paths.state && detail.contains("not a valid state file") && detail.contains(fault)
                        && detail.contains("move it aside")
                }
            }
            let r = try await Run.processOffPool(ClientCrashTests.binary, ["status", "--config", paths.config])
            #expect(r.status == 1 && r.stderr.contains("\(paths.state): not a valid state file"), "status: \(r.status) \(r.stderr)")
            let j = try await Run.processOffPool(ClientCrashTests.binary, ["status", "--json", "--config", paths.config])
            let object = try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: [String: String]]
            #expect(j.status == 1 && object?["error"]?["category"] == "config", "status --json: \(j.status) \(j.stdout) \(j.stderr)")
            #expect(try POSIX.readFile(paths.state) == Array(bad.utf8))
        }
        // A directory where the file should be: cannot be read, and said so.
        try POSIX.unlink(paths.state)
        try POSIX.mkdir(paths.state)
        #expect { _ = try paths.loadState() } throws: { error in
            guard case ClientError.badFile(let path, let detail) = error else { return false }
            return path == paths.state && detail.hasPrefix("cannot be read")
        }
        try POSIX.removeTree(paths.state)
        // Fields a file lacks read as empty (a file of another version of the client), but for the
        // replay floor, which every version writes: without it (or null) the file is refused.
        try Array(#"{"highest_manifest_version": {"desktop/stable": 42}}"#.utf8).withUnsafeBytes {
            try POSIX.writeNewFile(paths.state, $0, mode: 0o600)
        }
        #expect(try paths.loadState() == floor)
        for bad in ["{}", #"{"highest_manifest_version": null, "previous_version": "1.0.0"}"#] {
            try POSIX.unlink(paths.state)
            try Array(bad.utf8).withUnsafeBytes { try POSIX.writeNewFile(paths.state, $0, mode: 0o600) }
            #expect { _ = try paths.loadState() } throws: { error in
                guard case ClientError.badFile(let path, let detail) = error else { return false }
                return path == paths.state && detail.contains("highest_manifest_version")
            }
        }
    }

    @Test func settingsAreValidatedAndPlainHTTPIsRefusedOffLoopback() throws {
        var s = ClientSettings()
        #expect(throws: ClientError.self) { try s.set("server_url", "ftp://x") }
        #expect(throws: ClientError.self) { try s.set("public_key", "c2hvcnQ=") }
        #expect(throws: ClientError.self) { try s.set("channel", "nightly") }
        #expect(throws: ClientError.self) { try s.set("frequency", "hourly") }
        #expect(throws: ClientError.self) { try s.set("nonsense", "1") }
        #expect(throws: ClientError.insecureURL("http://updates.example.org/x")) {
            try Downloader.checkScheme("http://updates.example.org/x", allowInsecure: false)
        }
        try Downloader.checkScheme("http://127.0.0.1:8080/x", allowInsecure: false)
        try Downloader.checkScheme("https://updates.example.org/x", allowInsecure: false)
    }

    @Test func checksRespectTheFrequency() async throws {
        try await Self.withServer { f, url in
            let u = try Self.client(f, url, installed: "1.1.0")
            if case .upToDate = try await u.check() {} else { Issue.record("first check should reach the server") }
            if case .notDue = try await u.check() {} else { Issue.record("a second daily check right away is not due") }
            if case .upToDate = try await u.check(force: true) {} else { Issue.record("--force checks anyway") }
            // On demand: no check is ever due; only one the user asks for goes to the server.
            try u.settings.set("frequency", "on-demand")
            u.state.lastCheck = nil
            if case .notDue(let next) = try await u.check() { #expect(next == .distantFuture) } else { Issue.record("on demand: not due") }
            #expect(u.state.lastCheck == nil, "an on-demand client asked the server unasked")
            if case .upToDate = try await u.check(manual: true) {} else { Issue.record("a manual check goes to the server") }
            try u.settings.set("frequency", "daily")
            // An A/B variant's interval (unsigned, from the check response) is held to 60 s...30 days.
            u.state.variant = AssignedVariant(experiment: "e", variant: .init(name: "v", checkIntervalSeconds: Int.max))
            #expect(u.checkInterval == TimeInterval(30 * 24 * 3600))
            u.state.variant = AssignedVariant(experiment: "e", variant: .init(name: "v", checkIntervalSeconds: 0))
            #expect(u.checkInterval == 60)
            u.state.variant = AssignedVariant(experiment: "e", variant: .init(name: "v", checkIntervalSeconds: 3600))
            #expect(u.checkInterval == 3600)
        }
    }

    /// Two runs that found the same update: the second, once the first has installed it, installs
    /// nothing (its package was made for a tree that is gone) and marks nothing failed; the backup
    /// stays the version before, so a rollback returns to it.
    @Test func twoRunsInstallingTheSameUpdateInstallItOnce() async throws {
        try await Self.withServer { f, url in
            let a = try Self.client(f, url, installed: "1.0.0")
            let b = try Updater(paths: a.paths)
            guard case .available = try await b.check(force: true) else { Issue.record("no offer"); return }
            let r = try await a.install()
            #expect(r.version == "1.1.0" && r.kind == "delta")
            await #expect { _ = try await b.install() } throws: { error in
                guard case ClientError.nothingToDo(let why) = error else { return false }
                return why.contains("another run has installed 1.1.0")
            }
            let after = try Updater(paths: a.paths)
            #expect(after.settings.currentVersion == "1.1.0" && after.state.failedDeltas.isEmpty)
            #expect(try after.rollback() == "1.0.0")
            #expect(try TreeSpec.digest(a.settings.installDir) == f.digest("1.0.0"))
        }
    }

    /// A pending update with nothing to go back to (its backup changed since) is not rolled back when
    /// its deadline passes, and does not stop the client: it stays installed, is no longer pending, and
    /// the failed rollback is reported (`no_backup`). Asked for by the user, the rollback fails.
    @Test func aPendingUpdateWithoutABackupStaysAndChecksGoOn() async throws {
        try await Self.withServer { f, url in
            let u = try Self.client(f, url, installed: "1.0.0")
            _ = try await u.install()
            let backup = BundleApplier.backupPath(for: u.settings.installDir)
            try Array("changed".utf8).withUnsafeBytes { try POSIX.writeNewFile(backup + "/added-later", $0, mode: 0o644) }
            #expect(throws: ClientError.self) { _ = try Updater(paths: u.paths).rollback() }
            let later = try Updater(paths: u.paths, now: { Date().addingTimeInterval(3600) })
            let status = try later.status()
            #expect(status.currentVersion == "1.1.0" && status.pending == nil)
            #expect(later.state.unsentReports?.contains { $0.stage == .rollback && $0.outcome == "no_backup" } == true)
            if case .upToDate = try await later.check(force: true) {} else { Issue.record("checks go on") }
            #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("1.1.0"))
        }
    }

    /// Another update of the installation under way (the Patcher's lock held) makes a client that starts
    /// meanwhile busy (exit 5), not an install failure.
    @Test func anUpdateUnderWayMakesAStartingClientBusy() async throws {
        try await Self.withServer { f, url in
            let u = try Self.client(f, url, installed: "1.0.0")
            _ = try await u.install()
            let root = POSIX.directory(of: BundleApplier.backupPath(for: u.settings.installDir))
            let held = try #require(try FileLock(path: root + "/lock", patience: 0))
            defer { held.release() }
            #expect { _ = try Updater(paths: u.paths) } throws: { error in
                guard case ClientError.busy = error else { return false }
                return true
            }
        }
    }

    /// Which failures of a delta make the client remember it and use the full package from then on:
    /// only the delta's own (it does not apply, or is not what was signed). A network, TLS, disk or
    /// lock failure would stop the full package too, and a later try may find the delta fine.
    @Test func onlyTheDeltasOwnFailuresRetireIt() {
        for c in ["delta_failed", "checksum", "malformed"] {
            #expect(Updater.isTheDeltasFault(.install(category: c, detail: "")), "\(c)")
        }
        let transient: [ClientError] = [.network("reset"), .server(status: 503, message: ""), .tls(category: "tls_expired", detail: ""),
                                         .install(category: "disk_full", detail: ""), .install(category: "io", detail: ""), .busy("held"),
                                         .insecureURL("http://x")]
        for e in transient { #expect(!Updater.isTheDeltasFault(e), "\(e)") }
    }
}

final class LockedList: @unchecked Sendable {
    private var items: [UInt64] = []
    private let lock = NSLock()
    func append(_ v: UInt64) { lock.lock(); items.append(v); lock.unlock() }
    var values: [UInt64] { lock.lock(); defer { lock.unlock() }; return items }
}

@Suite struct TelemetryTests {
    @Test func installOutcomesAreReportedAndValidated() async throws {
        try await ClientTests.withServer { f, url in
            let u = try ClientTests.client(f, url, installed: "1.0.0")
            _ = try await u.install()
            let events = try f.service.catalog.telemetry(platform: "desktop", since: Date().addingTimeInterval(-600))
            #expect(events.contains { $0.stage == .install && $0.outcome == "success" && $0.kind == "delta" && $0.toVersion == "1.1.0" })
            #expect(events.contains { $0.stage == .download && $0.outcome == "success" && $0.bytes != nil })
            let check = try await Updater(paths: u.paths).check(force: true)
            #expect(check == .upToDate(manifestVersion: try f.service.catalog.revision()))
            let withCheck = try f.service.catalog.telemetry(platform: "desktop", since: Date().addingTimeInterval(-600))
            #expect(withCheck.contains { $0.stage == .check && $0.outcome == "success" })
            #expect(events.allSatisfy { $0.clientID == u.settings.clientID })
            // Telemetry off: nothing is sent.
            let quiet = try ClientTests.client(f, url, installed: "1.0.1")
            try quiet.settings.set("telemetry", "off")
            try quiet.paths.save(quiet.settings)
            _ = try await Updater(paths: quiet.paths).install()
            let after = try f.service.catalog.telemetry(platform: "desktop", since: Date().addingTimeInterval(-600))
            #expect(after.count == withCheck.count)
        }
    }

    @Test func badEventsAreRefused() async throws {
        let f = try ServerFixture(publish: false)
        let app = buildApplication(service: f.service)
        try await app.test(.router) { client in
            for body in ["{}", "not json", "{\"client_id\":\"x\",\"platform\":\"p\",\"channel\":\"stable\",\"stage\":\"install\",\"outcome\":\"success\",\"from_version\":\"1.0\",\"duration_ms\":1}",
                         String(repeating: "x", count: 20_000)] {
                try await client.execute(uri: "/api/telemetry", method: .post, body: ByteBuffer(string: body)) { r in
                    #expect(r.status == .badRequest || r.status == .contentTooLarge, "\(body.prefix(40)): \(r.status) \(String(buffer: r.body))")
                }
            }
        }
    }
}

/// `phoenix-update install` killed with SIGKILL at each crash point; the next run recovers: the tree
/// is the old or the new release, and the recorded version matches the tree.
@Suite struct ClientCrashTests {
    static let binary = Run.product("phoenix-update")

    /// A state file that is refused does not stop the Patcher's journal from finishing an update a
    /// kill left half done: the tree is whole (here the new release, the swap having been staged), and
    /// only then is the state refused.
    @Test func anInterruptedSwapIsFinishedEvenWhenTheStateIsRefused() async throws {
        try await ClientTests.withServer { f, url in
            let new = try f.digest("1.1.0")
            for point in 1...40 {
                let u = try ClientTests.client(f, url, installed: "1.0.0")
                try u.settings.set("telemetry", "off")
                try u.paths.save(u.settings)
                let log = u.paths.config + ".crash-log"
                let r = try await Run.processOffPool(Self.binary, ["install", "--yes", "--config", u.paths.config],
                                                     environment: ["PHOENIX_CRASH_AT": "\(point)", "PHOENIX_CRASH_LOG": log])
                try #require(r.signaled, "no crash point named journal-staged among the first \(point)")
                guard try String(decoding: POSIX.readFile(log), as: UTF8.self).hasSuffix("journal-staged\n") else { continue }
                #expect(try TreeSpec.digest(u.settings.installDir) != new)
                try Array("{".utf8).withUnsafeBytes { try POSIX.writeNewFile(u.paths.state + ".bad", $0, mode: 0o600) }
                try POSIX.rename(u.paths.state + ".bad", u.paths.state)
                let status = try await Run.processOffPool(Self.binary, ["status", "--config", u.paths.config])
                #expect(status.status == 1 && status.stderr.contains("not a valid state file"), "\(status.status) \(status.stderr)")
                #expect(try TreeSpec.digest(u.settings.installDir) == new)
                return
            }
            Issue.record("no crash point named journal-staged among the first 40")
        }
    }

    @Test func killedDuringInstallRecoversToOldOrNew() async throws {
        try await ClientTests.withServer { f, url in
            let old = try f.digest("1.0.0"), new = try f.digest("1.1.0")
            var sawOld = false, sawNew = false
            for point in 1...40 {
                let u = try ClientTests.client(f, url, installed: "1.0.0")
                try u.settings.set("telemetry", "off")
                try u.paths.save(u.settings)
                let r = try await Run.processOffPool(Self.binary, ["install", "--yes", "--config", u.paths.config],
                                        environment: ["PHOENIX_CRASH_AT": "\(point)"])
                if !r.signaled {
                    #expect(r.status == 0, "install without a crash failed: \(r.stderr)")
                    break
                }
                let status = try await Run.processOffPool(Self.binary, ["status", "--json", "--config", u.paths.config])
                #expect(status.status == 0, "status after a crash at \(point): \(status.stderr)")
                let digest = try TreeSpec.digest(u.settings.installDir)
                let recorded = try Updater(paths: u.paths).settings.currentVersion
                if digest == old {
                    sawOld = true
                    #expect(recorded == "1.0.0", "crash at \(point): old tree but version \(recorded)")
                } else {
                    #expect(digest == new, "crash at \(point) left a tree that is neither release")
                    sawNew = true
                    #expect(recorded == "1.1.0", "crash at \(point): new tree but version \(recorded)")
                }
            }
            #expect(sawOld && sawNew)
        }
    }

    /// A rollback killed at each of its steps: the next start reconciles the versions with the tree
    /// (the Patcher's journal finished or undid it), and an expired deadline afterwards never swaps
    /// the rolled-back version in again: the tree ends as the version before, and is recorded so.
    @Test func killedDuringRollbackTheRecordedVersionIsTheTree() async throws {
        try await ClientTests.withServer { f, url in
            let old = try f.digest("1.0.0")
            var crashes = 0
            for point in 1...60 {
                let u = try ClientTests.client(f, url, installed: "1.0.0")
                try u.settings.set("telemetry", "off")
                try u.paths.save(u.settings)
                _ = try await Updater(paths: u.paths).install()
                let r = try await Run.processOffPool(Self.binary, ["rollback", "--config", u.paths.config],
                                                     environment: ["PHOENIX_CRASH_AT": "\(point)"])
                if !r.signaled {
                    #expect(r.status == 0, "rollback without a crash failed: \(r.stderr)")
                    break
                }
                crashes += 1
                let later = try Updater(paths: u.paths, now: { Date().addingTimeInterval(24 * 3600) })
                let status = try later.status()
                let digest = try TreeSpec.digest(u.settings.installDir)
                #expect(digest == old && status.currentVersion == "1.0.0" && status.pending == nil,
                        "crash at \(point): tree \(digest == old ? "1.0.0" : "not 1.0.0"), recorded \(status.currentVersion)")
                #expect(later.state.rollingBack == nil)
            }
            #expect(crashes >= 3, "only \(crashes) crash points")
        }
    }

    @Test func tooManyUnconfirmedLaunchesRollBack() async throws {
        try await ClientTests.withServer { f, url in
            let u = try ClientTests.client(f, url, installed: "1.0.0")
            try u.settings.set("max_launches", "2")
            try u.paths.save(u.settings)
            _ = try await Updater(paths: u.paths).install()
            let a = try Updater(paths: u.paths)
            #expect(try !a.launched())
            #expect(try !a.launched())
            #expect(try a.launched(), "the third start without a confirmation rolls back")
            #expect(a.settings.currentVersion == "1.0.0")
            #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("1.0.0"))
        }
    }
}

/// The download is cut by killing the real server process midway; after a restart the client resumes
/// from where it stopped (a Range request), and the install succeeds.
@Suite struct ResumeAfterServerDeathTests {
    static let serverBinary = Run.product("phoenix-server")

    static func freePort() throws -> Int {
        let r = try Run.process("/usr/bin/env", ["python3", "-c",
            "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"])
        return Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))!
    }

    static func start(_ f: ServerFixture, port: Int) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: serverBinary)
        p.arguments = ["serve", "--data", f.service.configuration.dataDirectory, "--key", f.service.configuration.keyPath!,
                       "--port", "\(port)"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        for _ in 0..<100 {
            if (try? Run.process("/usr/bin/curl", ["-sf", "http://127.0.0.1:\(port)/healthz"]))?.status == 0 { return p }
            Thread.sleep(forTimeInterval: 0.1)
        }
        p.terminate()
        throw CancellationError()
    }

    @Test func killedServerThenResumedDownload() async throws {
        // A release whose full package is large enough to be cut midway (a major jump: full download).
        let f = try ServerFixture(publish: false)
        var rng = SeededGenerator(seed: 8)
        try TreeSpec.build(f.dir.file("big-1"), [.text("VERSION", "1.0.0")])
        try TreeSpec.build(f.dir.file("big-2"), [.text("VERSION", "2.0.0"), .file("data.bin", rng.bytes(24 << 20))])
        _ = try f.service.publish(.init(platform: "desktop", version: "1.0.0"), bundleDirectory: f.dir.file("big-1"))
        _ = try f.service.publish(.init(platform: "desktop", version: "2.0.0"), bundleDirectory: f.dir.file("big-2"))
        f.service.runPendingJobs()
        let port = try Self.freePort()
        var server = try Self.start(f, port: port)
        defer { server.terminate() }
        let home = f.dir.file("client")
        try TreeSpec.build(home + "/app", [.text("VERSION", "1.0.0")])
        let paths = ClientPaths(config: home + "/config.json")
        var s = ClientSettings()
        try s.set("server_url", "http://127.0.0.1:\(port)")
        try s.set("public_key", f.publicKey.base64)
        try s.set("platform", "desktop")
        try s.set("install_dir", home + "/app")
        try s.set("current_version", "1.0.0")
        try s.set("telemetry", "off")
        try paths.save(s)

        let victim = server
        let killed = LockedList()
        await #expect {
            _ = try await Updater(paths: paths).install { p in
                if p.received > 2 << 20 && killed.values.isEmpty {
                    killed.append(p.received)
                    kill(victim.processIdentifier, SIGKILL)
                }
            }
        } throws: { error in
            (error as? ClientError)?.category == "network"
        }
        let partial = try FileManager.default.contentsOfDirectory(atPath: paths.downloads).filter { $0.hasSuffix(".part") }
        #expect(partial.count == 1)
        let have = try FileManager.default.attributesOfItem(atPath: paths.downloads + "/" + partial[0])[.size] as? Int ?? 0
        #expect(have >= 2 << 20, "the bytes received before the cut were kept")

        server = try Self.start(f, port: port)
        let seen = LockedList()
        let r = try await Updater(paths: paths).install { seen.append($0.received) }
        #expect(r.version == "2.0.0" && r.kind == "full")
        #expect((seen.values.first ?? 0) > UInt64(have), "the second download started from zero instead of resuming")
        #expect(try TreeSpec.digest(home + "/app") == TreeSpec.digest(f.dir.file("big-2")))
    }
}

/// Opt-in (PHOENIX_CORPUS): the client updates real Django trees: 5.2.16 -> 5.2.19 by delta and
/// 4.2.27 -> 5.2.19 by the full package.
@Suite struct CorpusClientTests {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["PHOENIX_CORPUS"] != nil))
    func djangoByDeltaAndByFull() async throws {
        let corpus = ProcessInfo.processInfo.environment["PHOENIX_CORPUS"]! + "/series/django"
        let f = try ServerFixture(publish: false)
        for v in ["4.2.27", "5.2.16", "5.2.19"] {
            _ = try f.service.publish(.init(platform: "django", version: v), bundleDirectory: corpus + "/" + v)
        }
        f.service.runPendingJobs()
        let app = buildApplication(service: f.service)
        try await app.test(.live) { client in
            for (from, kind) in [("5.2.16", "delta"), ("4.2.27", "full")] {
                let home = f.dir.file("client-\(from)")
                try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
                try TreeSpec.copy(corpus + "/" + from, home + "/app")
                let paths = ClientPaths(config: home + "/config.json")
                var s = ClientSettings()
                try s.set("server_url", "http://127.0.0.1:\(client.port!)")
                try s.set("public_key", f.publicKey.base64)
                try s.set("platform", "django")
                try s.set("install_dir", home + "/app")
                try s.set("current_version", from)
                try paths.save(s)
                let r = try await Updater(paths: paths).install()
                print("django \(from) -> 5.2.19 by \(r.kind): \(r.downloadedBytes) bytes (full \(r.fullSize))")
                #expect(r.kind == kind)
                #expect(try TreeSpec.digest(home + "/app") == TreeSpec.digest(corpus + "/5.2.19"))
            }
        }
    }
}

/// Key rotation: a manifest signed by a new key is accepted only when a key the client trusts signed the
/// rotation, and the client then pins the new key and keeps working.
@Suite struct KeyRotationTests {
    /// Re-opens the fixture's data directory with another signing key and rotation statements.
    static func service(_ f: ServerFixture, key: Ed25519.PrivateKey, rotations: [SignedEnvelope]) throws -> UpdateService {
        let keyPath = f.dir.file("key-\(UUID().uuidString).pem")
        try Array(key.pem.utf8).withUnsafeBytes { try POSIX.writeNewFile(keyPath, $0, mode: 0o600) }
        var c = f.service.configuration
        c.keyPath = keyPath
        c.rotationPaths = try rotations.map { r in
            let p = f.dir.file("rotation-\(UUID().uuidString).json")
            try WireJSON.encoder().encode(r).withUnsafeBytes { try POSIX.writeNewFile(p, $0, mode: 0o644) }
            return p
        }
        return try UpdateService(configuration: c)
    }

    static func publish(_ f: ServerFixture) throws {
        for v in ["1.0.0", "1.0.1", "1.1.0"] {
            _ = try f.service.publish(.init(platform: "desktop", version: v), bundleDirectory: f.trees[v]!)
        }
        f.service.runPendingJobs()
    }

    @Test func clientFollowsASignedRotationAndPinsTheNewKey() async throws {
        let f = try ServerFixture(publish: false)
        try Self.publish(f)
        let newKey = try Ed25519.PrivateKey.generate()
        let rotated = try Self.service(f, key: newKey, rotations: [try KeyRotation.sign(from: f.key, to: newKey.publicKey())])
        try await buildApplication(service: rotated).test(.live) { client in
            let u = try ClientTests.client(f, "http://127.0.0.1:\(client.port!)", installed: "1.0.0")
            #expect(u.settings.publicKey == f.publicKey.base64)
            let r = try await u.install()
            #expect(r.version == "1.1.0")
            #expect(u.settings.publicKey == (try newKey.publicKey()).base64, "the new key is pinned after the rotation")
            #expect(try Updater(paths: u.paths).settings.publicKey == (try newKey.publicKey()).base64)
        }
    }

    @Test func aNewKeyWithoutARotationOrWithAForgedOneIsRejected() async throws {
        let f = try ServerFixture(publish: false)
        try Self.publish(f)
        let newKey = try Ed25519.PrivateKey.generate()
        let stranger = try Ed25519.PrivateKey.generate()
        for rotations in [[], [try KeyRotation.sign(from: stranger, to: newKey.publicKey())]] {
            let rotated = try Self.service(f, key: newKey, rotations: rotations)
            try await buildApplication(service: rotated).test(.live) { client in
                let u = try ClientTests.client(f, "http://127.0.0.1:\(client.port!)", installed: "1.0.0")
                await #expect { _ = try await u.install() } throws: { ($0 as? ClientError)?.category == "signature" }
                #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("1.0.0"))
                #expect(u.settings.publicKey == f.publicKey.base64)
            }
        }
    }

    @Test func rotationsChain() throws {
        let a = try Ed25519.PrivateKey.generate(), b = try Ed25519.PrivateKey.generate(), c = try Ed25519.PrivateKey.generate()
        let ab = try KeyRotation.sign(from: a, to: b.publicKey()), bc = try KeyRotation.sign(from: b, to: c.publicKey())
        let keys = KeyRotation.extend(trusted: [try a.publicKey()], with: [bc, ab])
        #expect(keys.contains(try c.publicKey()))
        #expect(KeyRotation.extend(trusted: [try a.publicKey()], with: [bc]).count == 1, "B->C alone is not trusted from A")
    }
}
