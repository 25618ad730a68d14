import Foundation
import NIOCore
import PatchFormat
import Patcher
import TreeIO
import UpdateModels

/// The update client: check, download, verify, install, confirm, roll back. An app embeds this, or runs
/// `phoenix-update` (every command has `--json`).
///
/// Safety rules: nothing is used before the manifest signature, expiry, manifest version, platform,
/// channel and version checks pass, and the package's size and SHA-256 match the signed entry; every
/// failure means "not installed". Installs go through the Patcher (verify before, stage, verify after,
/// atomic swap, backup). A delta that fails for any reason falls back to the full package once and is
/// remembered, so it is never retried.
public final class Updater: @unchecked Sendable {
    public let paths: ClientPaths
    public var settings: ClientSettings
    public var state: ClientState
    public var allowInsecure: Bool
    public var now: @Sendable () -> Date
    /// The version an install is attempting (reported with its outcome).
    var attemptedVersion: String?
    /// The settings and state as this Updater last loaded or saved them: a save writes only what
    /// changed since, over what another run may have saved meanwhile (`ClientPaths.save(_:since:)`).
    private var savedSettings: ClientSettings
    private var savedState: ClientState
    /// Inside `withFreshState`: the lock is held and the files were just read.
    private var inFreshState = false

    public init(paths: ClientPaths, allowInsecure: Bool = false, now: @escaping @Sendable () -> Date = { Date() }) throws {
        self.paths = paths
        let settings = try paths.loadSettings()
        // The Patcher's journal needs only the settings: the tree is made whole before the state is
        // read, so that a state file refused below cannot leave an interrupted swap unfinished.
        try Self.recoverTree(settings.installDir)
        self.settings = settings
        self.state = try paths.loadState()
        (savedSettings, savedState) = (settings, state)
        self.allowInsecure = allowInsecure
        self.now = now
        try finishInterruptedInstall()
    }

    /// Finishes or undoes whatever a killed run left: first the Patcher's journal (the tree is then old
    /// or new), then this client's own bookkeeping of the install.
    public func recoverInterrupted() throws {
        try Self.recoverTree(settings.installDir)
        try finishInterruptedInstall()
    }

    /// Finishes or undoes an update of `directory` that a killed run left under way (the Patcher's
    /// journal); nothing when there is none.
    static func recoverTree(_ directory: String) throws {
        guard !directory.isEmpty else { return }
        do { _ = try BundleApplier.recover(directory: directory) } catch PatcherError.busy(let d) {
            throw ClientError.busy("another update of \(d) is under way")
        } catch {
            throw ClientError.install(category: "io", detail: "recovering the interrupted update failed: \(error)")
        }
    }

    /// This client's bookkeeping of an install or a rollback a killed run left (the tree is old or new
    /// by now).
    private func finishInterruptedInstall() throws {
        guard state.installing != nil || state.rollingBack != nil else { return }
        // Under the lock: a run still applying or rolling back holds it, and its record is its own to
        // settle (settled twice, a rollback would be reported twice).
        try withFreshState { try settleInterrupted() }
    }

    private func settleInterrupted() throws {
        guard state.installing != nil || state.rollingBack != nil else { return }
        let digest = (try? Hex.encode(TreeDigest.compute(TreeScanner.scan(settings.installDir, lossyLinkTargets: true)))) ?? ""
        if let i = state.installing, digest == i.treeDigest {
            finishInstallBookkeeping(version: i.version, previous: i.previousVersion)
        }
        state.installing = nil
        if let r = state.rollingBack, !digest.isEmpty {
            // The tree is no longer the one rolled back from: the rollback was done. (Still that tree:
            // it was undone, and whatever asked for it (a deadline, a crash loop) asks again.) A tree
            // that cannot be read now is settled at a later start.
            if digest != r.fromTreeDigest { finishRollbackBookkeeping(r) }
            state.rollingBack = nil
        }
        try saveSettings()
        try saveState()
    }

    /// Saves this run's changes to the state (and takes in what other runs saved meanwhile). An app
    /// that changes `settings` or `state` itself saves with these, not with `paths.save`.
    public func saveState() throws {
        if inFreshState {
            try paths.save(state)
        } else {
            state = try paths.save(state, since: savedState)
        }
        savedState = state
    }

    /// Saves this run's changes to the settings (and takes in what other runs saved meanwhile).
    public func saveSettings() throws {
        if inFreshState {
            try paths.save(settings)
        } else {
            settings = try paths.save(settings, since: savedSettings)
        }
        savedSettings = settings
    }

    /// Runs `body` on the settings and state as they are on disk now (with this run's own changes
    /// since it loaded them), holding the lock beside them until it is done (its saves write whole
    /// files). For what acts on the pending update (confirm, launched, rollback, the deadline): a
    /// merge after the fact cannot order those, and acting on a pending update another run has
    /// meanwhile confirmed or rolled back undid that (a launch count bringing back a confirmed update,
    /// a second rollback swapping the old tree back in).
    func withFreshState<R>(_ body: () throws -> R) throws -> R {
        if inFreshState { return try body() }
        return try paths.whileLocked {
            let freshSettings = try paths.merged(settings, since: savedSettings), freshState = try paths.merged(state, since: savedState)
            // The base is what the files hold: this run's unsaved changes stay changes for a later save.
            // (All four assigned only once everything is read.)
            (savedSettings, savedState, settings, state) = (freshSettings.disk, freshState.disk, freshSettings.merged, freshState.merged)
            inFreshState = true
            defer { inFreshState = false }
            return try body()
        }
    }

    func finishInstallBookkeeping(version: String, previous: String) {
        settings.currentVersion = version
        state.previousVersion = previous
        state.pending = ClientState.Pending(version: version, previousVersion: previous, installedAt: now(),
                                            deadline: now().addingTimeInterval(TimeInterval(settings.confirmDeadlineSeconds)), launches: 0)
        state.installing = nil
    }

    /// The new version reports a start. After `max_launches` starts without a confirmation it is rolled
    /// back. Returns whether it was rolled back.
    public func launched() throws -> Bool {
        try withFreshState {
            try enforcePendingDeadline()
            guard var p = state.pending else { return false }
            p.launches += 1
            state.pending = p
            try saveState()
            if p.launches > settings.maxLaunches {
                return try rollbackLocked(reason: "\(p.version) started \(p.launches) times without confirming", category: "crash_loop")
            }
            return false
        }
    }

    func requireConfigured() throws {
        for (value, key) in [(settings.serverURL, "server_url"), (settings.publicKey, "public_key"), (settings.platform, "platform"),
                             (settings.installDir, "install_dir")] where value.isEmpty {
            throw ClientError.notConfigured(key)
        }
    }

    var stateKey: String { settings.platform + "/" + settings.channel }

    // MARK: Check

    public enum CheckResult: Sendable, Equatable {
        case notDue(next: Date)
        case upToDate(manifestVersion: UInt64)
        case available(VerifiedOffer)
    }

    /// Asks the server, respecting the frequency (with jitter; on demand: `.notDue(next: .distantFuture)`)
    /// and Retry-After unless `force`. The outcome
    /// of a check that reached the server is reported (telemetry). A `manual` check (the user asked)
    /// also bypasses the server's phased rollout.
    public func check(force: Bool = false, manual: Bool = false) async throws -> CheckResult {
        let started = now()
        do {
            let r = try await checkUnreported(force: force || manual, manual: manual)
            switch r {
            case .notDue: break
            case .upToDate: await report(.check, outcome: "success", from: settings.currentVersion, to: nil, kind: nil, started: started, bytes: nil)
            case .available(let o):
                await report(.check, outcome: "success", from: settings.currentVersion, to: o.version, kind: o.kind, started: started, bytes: nil)
            }
            return r
        } catch let e as ClientError {
            if e.category != "config" && e.category != "insecure" {
                await report(.check, outcome: e.category, from: settings.currentVersion, to: nil, kind: nil, started: started, bytes: nil)
            }
            throw e
        }
    }

    /// Downloads a package and reports the outcome (telemetry).
    func download(_ p: VerifiedOffer.Package, kind: String, to version: String,
                  progress: (@Sendable (DownloadProgress) -> Void)?) async throws -> String {
        let started = now()
        do {
            let file = try await Downloader(allowInsecure: allowInsecure, trust: settings.trust).fetch(
                url: absolute(p.url), size: p.size, sha256: p.sha256, into: paths.downloads, progress: progress)
            await report(.download, outcome: "success", from: settings.currentVersion, to: version, kind: kind, started: started, bytes: p.size)
            return file
        } catch let e as ClientError {
            await report(.download, outcome: e.category, from: settings.currentVersion, to: version, kind: kind, started: started, bytes: nil)
            throw e
        }
    }

    /// How long between automatic checks: the A/B variant's interval when the server assigned one,
    /// else the frequency setting; nil = only on demand.
    public var checkInterval: TimeInterval? {
        guard let base = settings.frequency.interval else { return nil }
        // The variant's interval comes unsigned in the check response: held to the range a server
        // accepts, so that one bad response cannot stop automatic checks for good.
        let range = Experiment.checkIntervals
        return state.variant?.checkIntervalSeconds.map { TimeInterval(min(max($0, range.lowerBound), range.upperBound)) } ?? base
    }

    func checkUnreported(force: Bool, manual: Bool = false) async throws -> CheckResult {
        try requireConfigured()
        try enforcePendingDeadline()
        let t = now()
        if !force {
            if let retry = state.retryAfter, retry > t { return .notDue(next: retry) }
            // On demand: only a check the user asks for (`force`, `manual`) goes to the server.
            if checkInterval == nil { return .notDue(next: .distantFuture) }
            if let interval = checkInterval, let last = state.lastCheck {
                // Up to 20% random delay so that a fleet does not check in lockstep.
                let next = last.addingTimeInterval(interval * (1 + Double.random(in: 0...0.2)))
                if next > t { return .notDue(next: next) }
            }
        }
        let installed: SemanticVersion
        do { installed = try SemanticVersion(parsing: settings.currentVersion) } catch {
            throw ClientError.badSetting("current_version", "\(error)")
        }
        var query = "current_version=\(installed)&platform=\(settings.platform)&channel=\(settings.channel)"
        // The random id places this client in phased rollouts and A/B variants; without telemetry it is
        // not sent, and the client is offered releases once they reach 100%.
        if settings.telemetry { query += "&client_id=\(settings.clientID)" }
        if manual { query += "&manual=true" }
        let url = settings.serverURL + "/api/version/check?" + query
        try Downloader.checkScheme(url, allowInsecure: allowInsecure)
        let (status, headers, body) = try await get(url, limit: 4 << 20)
        if status == 429 || status == 503, let ra = headers["retry-after"].flatMap(Double.init) {
            state.retryAfter = t.addingTimeInterval(min(ra, 24 * 3600))
            try saveState()
        }
        guard status == 200 else {
            let message = (try? WireJSON.decoder().decode(ErrorBody.self, from: Data(body)))?.error.message ?? "HTTP \(status)"
            throw ClientError.server(status: status, message: message)
        }
        let response: CheckResponse
        do { response = try WireJSON.decoder().decode(CheckResponse.self, from: Data(body)) } catch {
            throw ClientError.verification(category: "malformed", detail: "the check response does not parse: \(error)")
        }
        let key = try Ed25519.PublicKey(base64: settings.publicKey)
        let verifier = OfferVerifier(trustedKeys: [key], platform: settings.platform, channel: settings.channel, installed: installed,
                                     highestManifestVersion: state.highestManifestVersion[stateKey] ?? 0, now: t)
        let offer = try verifier.verify(response)
        let (manifest, signer) = try verifier.verifiedManifestAndKey(response.manifest)
        let manifestVersion = manifest.manifestVersion
        if signer != key {
            // The publisher rotated its key and the old key signed the rotation: pin the new key.
            settings.publicKey = signer.base64
            try saveSettings()
        }
        state.highestManifestVersion[stateKey] = max(state.highestManifestVersion[stateKey] ?? 0, manifestVersion)
        state.variant = response.variant
        state.lastCheck = t
        state.retryAfter = nil
        try saveState()
        return offer.map { .available($0) } ?? .upToDate(manifestVersion: manifestVersion)
    }

    func get(_ url: String, limit: Int) async throws -> (Int, [String: String], [UInt8]) {
        try await HTTPTransport(trust: settings.trust).execute(.GET, url) { response, body in
            if let refused = Downloader.refusedRedirect(response.status, response.headers) { throw refused }
            return (response.status, response.headers, try await body.collect(limit: limit))
        }
    }

    // MARK: Install

    public struct InstallResult: Sendable, Codable, Equatable {
        public var version: String
        public var previousVersion: String
        /// What was installed in the end: delta or full.
        public var kind: String
        public var downloadedBytes: UInt64
        public var fullSize: UInt64
        /// Why the delta was not used, when the full package was.
        public var deltaFallbackReason: String?
        public var pendingUntil: Date?
        public var confirmed: Bool
    }

    /// Installs the update the server offers now (`manual`: the user asked, bypassing phased rollout).
    public func install(manual: Bool = false, progress: (@Sendable (DownloadProgress) -> Void)? = nil) async throws -> InstallResult {
        let started = now()
        let from = settings.currentVersion
        attemptedVersion = nil
        do {
            let r = try await installUnreported(manual: manual, progress: progress)
            await report(.install, outcome: "success", from: from, to: r.version, kind: r.kind, started: started, bytes: r.downloadedBytes)
            return r
        } catch let e as ClientError {
            if case .nothingToDo = e {} else {
                await report(.install, outcome: e.category, from: from, to: attemptedVersion, kind: nil, started: started, bytes: nil)
            }
            throw e
        }
    }

    func event(_ stage: TelemetryEvent.Stage, outcome: String, from: String, to: String?, kind: String?, started: Date, bytes: UInt64?) -> TelemetryEvent {
        TelemetryEvent(clientID: settings.clientID, platform: settings.platform, channel: settings.channel, stage: stage,
                       outcome: outcome, fromVersion: from, toVersion: to, kind: kind,
                       durationMs: max(0, Int(now().timeIntervalSince(started) * 1000)), bytes: bytes,
                       variant: state.variant.map { $0.experiment + "/" + $0.name })
    }

    /// Keeps a report to send with the next one (from code that cannot wait for the network).
    func queueReport(_ e: TelemetryEvent) {
        guard settings.telemetry, (try? e.validate()) != nil else { return }
        var queue = state.unsentReports ?? []
        queue.append(e)
        state.unsentReports = Array(queue.suffix(100))
    }

    /// Sends the queued reports (those that fail stay queued).
    public func flushReports() async {
        guard settings.telemetry, let queue = state.unsentReports, !queue.isEmpty else { return }
        var left: [TelemetryEvent] = []
        for e in queue where !(await post(e)) { left.append(e) }
        state.unsentReports = left.isEmpty ? nil : left
        try? saveState()
    }

    /// Posts an outcome to the server's telemetry endpoint when telemetry is on; never fails the caller.
    func report(_ stage: TelemetryEvent.Stage, outcome: String, from: String, to: String?, kind: String?, started: Date, bytes: UInt64?) async {
        guard settings.telemetry, !settings.serverURL.isEmpty else { return }
        await flushReports()
        _ = await post(event(stage, outcome: outcome, from: from, to: to, kind: kind, started: started, bytes: bytes))
    }

    /// Posts one report; true when the server accepted it (or it can never be sent).
    func post(_ event: TelemetryEvent) async -> Bool {
        guard (try? event.validate()) != nil, let body = try? WireJSON.encoder().encode(event) else { return true }
        let url = settings.serverURL + "/api/telemetry"
        guard (try? Downloader.checkScheme(url, allowInsecure: allowInsecure)) != nil else { return true }
        var transport = HTTPTransport(trust: settings.trust)
        transport.readTimeout = .seconds(10)
        let status = try? await transport.execute(.POST, url, headers: [("Content-Type", "application/json")], body: Array(body)) { r, b in
            _ = try? await b.collect(limit: 64 << 10)
            return r.status
        }
        guard let status else { return false }
        return status < 500
    }

    func installUnreported(manual: Bool, progress: (@Sendable (DownloadProgress) -> Void)?) async throws -> InstallResult {
        guard case .available(let offer) = try await checkUnreported(force: true, manual: manual) else {
            throw ClientError.nothingToDo("already up to date (\(settings.currentVersion))")
        }
        attemptedVersion = offer.version
        let dir = settings.installDir, from = settings.currentVersion
        var downloaded: UInt64 = 0
        var kind = "full"
        var fallback: String?
        var done = false
        if offer.kind == "delta" {
            // Another run installing the same update meanwhile changes the tree: not the delta's fault.
            try withFreshState { try requireStillAt(from) }
            if let reason = state.failedDeltas[offer.package.sha256] {
                fallback = "this delta failed before (\(reason)); using the full package"
            } else if let expected = offer.fromTreeDigest,
                      let actual = try? Hex.encode(TreeDigest.compute(TreeScanner.scan(dir, lossyLinkTargets: true))), actual != expected {
                fallback = "the installation differs from \(offer.fromVersion ?? "?") (tree digest); using the full package"
                state.failedDeltas[offer.package.sha256] = "installation differs"
            } else {
                do {
                    let file = try await download(offer.package, kind: "delta", to: offer.version, progress: progress)
                    downloaded += offer.package.size
                    defer { try? POSIX.unlink(file) }
                    do {
                        try apply(file, expectedDigest: offer.treeDigest, version: offer.version, from: from)
                        kind = "delta"
                        done = true
                    } catch let e as ClientError where e.category == "io" {
                        // An I/O error while applying the delta may be its own (reading an installed
                        // file the full package does not read): the full package now, and the delta
                        // stays for a later try. (A full disk or the lock are other categories.)
                        fallback = "the delta failed: \(e); using the full package"
                    }
                } catch let e as ClientError where !Self.isTheDeltasFault(e) {
                    throw e  // the network, TLS, a full disk, the lock: not the delta's fault; report, and retry later
                } catch {
                    fallback = "the delta failed: \(error); using the full package"
                    state.failedDeltas[offer.package.sha256] = "\(error)"
                }
            }
            try saveState()
        }
        if !done {
            let file = try await download(offer.full, kind: "full", to: offer.version, progress: progress)
            downloaded += offer.full.size
            try apply(file, expectedDigest: offer.treeDigest, version: offer.version, from: from)
            try? POSIX.unlink(file)
        }
        let previous = settings.currentVersion
        finishInstallBookkeeping(version: offer.version, previous: previous)
        try saveSettings()
        try saveState()
        var confirmed = false
        if let restart = settings.restartCommand {
            _ = try? run(restart)
        }
        if let health = settings.healthCommand {
            if try run(health) == 0 {
                try confirm()
                confirmed = true
            } else {
                let reason = "the health command failed after installing \(offer.version)"
                // Unless another run (the restarted app's launches, a deadline) has rolled it back already.
                let kept = try withFreshState {
                    guard state.pending?.version == offer.version else { return false }
                    return try !rollbackLocked(reason: reason, category: "health")
                }
                throw ClientError.install(category: "health", detail: reason + (kept
                    ? "; it stays installed: there is no previous version to go back to" : "; rolled back to \(previous)"))
            }
        }
        return InstallResult(version: offer.version, previousVersion: previous, kind: kind, downloadedBytes: downloaded,
                             fullSize: offer.full.size, deltaFallbackReason: fallback,
                             pendingUntil: confirmed ? nil : state.pending?.deadline, confirmed: confirmed)
    }

    func absolute(_ url: String) -> String {
        url.hasPrefix("/") ? settings.serverURL + url : url
    }

    /// Inside `withFreshState`: throws `nothingToDo` if another run has installed an update (or is
    /// installing one) since this one found `from` installed.
    func requireStillAt(_ from: String) throws {
        guard settings.currentVersion == from, state.installing == nil else {
            throw ClientError.nothingToDo("another run has installed \(state.installing?.version ?? settings.currentVersion) meanwhile")
        }
    }

    /// Installs `bundle`, made for version `from`, holding the lock beside the settings: another run
    /// that found the same update may have installed it since this one checked (the package was then
    /// made for a tree that is gone, and applying the full package would replace that run's backup).
    func apply(_ bundle: String, expectedDigest: String, version: String, from: String) throws {
        try withFreshState {
            try requireStillAt(from)
            // Recorded before the tree changes, cleared with the version bookkeeping (settings saved first), so
            // that a kill at any point is reconciled by `recoverInterrupted`.
            state.installing = ClientState.Installing(version: version, previousVersion: settings.currentVersion, treeDigest: expectedDigest)
            try saveState()
            do {
                try applyChecked(bundle, expectedDigest: expectedDigest)
            } catch {
                state.installing = nil
                try? saveState()
                throw error
            }
        }
    }

    /// Whether a failed delta install is the delta's own fault (it does not apply, or is not what was
    /// signed), so that it is remembered and the full package used from now on. Anything else (the
    /// network, TLS, the disk, another run's lock) would stop the full package as well, and a later
    /// try may find the delta fine.
    public static func isTheDeltasFault(_ e: ClientError) -> Bool {
        ["delta_failed", "checksum", "malformed"].contains(e.category)
    }

    func applyChecked(_ bundle: String, expectedDigest: String) throws {
        // The bundle must build the signed release: checked before anything is written (after the
        // apply, a mismatch would leave that other tree installed).
        let declared: String
        do { declared = try BundleApplier.newTreeDigest(bundlePath: bundle) } catch let e as PatcherError {
            throw ClientError.install(category: "delta_failed", detail: e.description)
        }
        guard declared == expectedDigest else {
            throw ClientError.install(category: "checksum", detail: "the package builds tree \(declared.prefix(16))..., not the signed release's \(expectedDigest.prefix(16))...; nothing was installed")
        }
        do {
            let result = try BundleApplier.apply(directory: settings.installDir, bundlePath: bundle)
            guard result.newDigest == expectedDigest else {
                throw ClientError.install(category: "checksum", detail: "the installed tree is not the signed release")
            }
        } catch let e as PatcherError {
            switch e {
            case .insufficientSpace: throw ClientError.install(category: "disk_full", detail: e.description)
            case .io(_, _, let code, _) where code == ENOSPC || code == EDQUOT:
                throw ClientError.install(category: "disk_full", detail: e.description)
            case .busy: throw ClientError.busy(e.description)
            case .installationMismatch: throw ClientError.install(category: "delta_failed", detail: e.description)
            case .format, .newChecksumMismatch, .oldChecksumMismatch, .oldSizeMismatch:
                throw ClientError.install(category: "delta_failed", detail: e.description)
            default: throw ClientError.install(category: "io", detail: e.description)
            }
        }
    }

    /// Runs a settings command (`restart_command`, `health_command`) with `/bin/sh -c`. Not with
    /// Foundation's Process: from this thread of the concurrency pool, the restarted app would inherit
    /// a mask blocking nearly every signal, and could not be stopped by SIGTERM or Ctrl-C.
    func run(_ command: String) throws -> Int32 {
        try POSIX.runProcess("/bin/sh", ["-c", command])
    }

    // MARK: Confirm, rollback, status

    /// The new version says it works: the update is final and is never rolled back automatically.
    public func confirm() throws {
        try withFreshState {
            state.pending = nil
            try saveState()
        }
    }

    /// Rolls back an unconfirmed update whose deadline has passed.
    public func enforcePendingDeadline() throws {
        // Looked at first as loaded (no lock, no write: `status` stays read-only), then again on the
        // files as they are now.
        guard let loaded = state.pending, now() > loaded.deadline else { return }
        try withFreshState {
            guard let p = state.pending, now() > p.deadline else { return }
            _ = try rollbackLocked(reason: "\(p.version) was not confirmed by \(p.deadline)", category: "not_confirmed")
        }
    }

    /// Restores the previous version from the backup (verified by its digest).
    public func rollback() throws -> String {
        try requireConfigured()
        _ = try withFreshState { try rollbackLocked(reason: "requested", category: "requested") }
        return settings.currentVersion
    }

    /// Rolls back and queues a report: `category` says why (requested, health, not_confirmed,
    /// crash_loop); all but `requested` count against the release in the server's auto-pause. The
    /// rollback is recorded before the tree changes (`ClientState.rollingBack`), so that a run killed
    /// meanwhile is reconciled at the next start. Where there is nothing to go back to (a first install,
    /// or a backup changed since), an automatic rollback leaves the update installed and no longer
    /// pending (reported as `no_backup`; a pending update that can never be rolled back would stop
    /// every later check), and returns false; one the user asked for fails.
    @discardableResult
    func rollbackLocked(reason: String, category: String) throws -> Bool {
        let started = now()
        let dir = settings.installDir
        let from: String
        do { from = Hex.encode(TreeDigest.compute(try TreeScanner.scan(dir, lossyLinkTargets: true))) } catch {
            throw ClientError.install(category: "rollback", detail: "cannot read the installation \(dir): \(error)")
        }
        let record = ClientState.RollingBack(fromVersion: settings.currentVersion, toVersion: state.pending?.previousVersion ?? state.previousVersion,
                                             fromTreeDigest: from, category: category, startedAt: started)
        state.rollingBack = record
        try saveState()
        do {
            try BundleApplier.rollback(directory: dir)
        } catch {
            state.rollingBack = nil
            if category != "requested", case PatcherError.noBackup = error {
                queueReport(event(.rollback, outcome: "no_backup", from: settings.currentVersion, to: record.toVersion, kind: nil,
                                  started: started, bytes: nil))
                state.pending = nil
                try saveState()
                return false
            }
            try? saveState()
            throw ClientError.install(category: "rollback", detail: "\(error)")
        }
        finishRollbackBookkeeping(record)
        try saveSettings()
        try saveState()
        return true
    }

    /// The versions after a rollback, and its report.
    func finishRollbackBookkeeping(_ r: ClientState.RollingBack) {
        if let back = r.toVersion {
            queueReport(event(.rollback, outcome: r.category, from: r.fromVersion, to: back, kind: nil, started: r.startedAt, bytes: nil))
            state.previousVersion = r.fromVersion
            settings.currentVersion = back
        }
        state.pending = nil
        state.rollingBack = nil
    }

    public struct Status: Sendable, Codable {
        public var currentVersion: String
        public var platform: String
        public var channel: String
        public var serverURL: String
        public var installDir: String
        public var lastCheck: Date?
        public var pending: ClientState.Pending?
        public var previousVersion: String?
        public var rollbackAvailable: Bool
        public var failedDeltas: Int
    }

    public func status() throws -> Status {
        try enforcePendingDeadline()
        let d = settings.installDir
        let backup = BundleApplier.backupPath(for: d)
        return Status(currentVersion: settings.currentVersion, platform: settings.platform, channel: settings.channel,
                      serverURL: settings.serverURL, installDir: d, lastCheck: state.lastCheck, pending: state.pending,
                      previousVersion: state.previousVersion, rollbackAvailable: !d.isEmpty && POSIX.isDirectory(backup),
                      failedDeltas: state.failedDeltas.count)
    }
}
