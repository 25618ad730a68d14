import Foundation
import UpdateModels

/// Who is checking: the random client id (for the rollout bucket and the A/B variant) and whether a
/// person asked for this check (which bypasses the rollout stages).
public struct CheckClient: Sendable, Equatable {
    public var clientID: String?
    public var manual: Bool

    public init(clientID: String? = nil, manual: Bool = false) {
        self.clientID = clientID
        self.manual = manual
    }
}

/// Which releases of a platform one client may be offered now.
struct RolloutGate {
    var rollouts: [String: Rollout]
    /// Partly rolled-out releases this client is inside (it is outside all the others).
    var inside: Set<String>
    var manual: Bool
    var clientID: String?

    func offers(_ version: String, critical: Bool) -> Bool {
        guard let r = rollouts[version] else { return true }
        return r.offers(bucket: inside.contains(version) ? 0 : nil, manual: manual, critical: critical)
    }

    /// What distinguishes this client's answer from another's with the same version (the check cache key).
    var key: String {
        (manual ? "m:" : "") + inside.sorted().joined(separator: ",") + "|" + rollouts.filter { $0.value.state == .paused }.keys.sorted().joined(separator: ",")
    }
}

/// A change to a rollout, by hand (CLI, admin API or dashboard).
public enum RolloutAction: Sendable, Equatable {
    case advance
    case pause(reason: String)
    case resume
    case set(percent: Int)

    /// Parses an action named on the command line, in a route or by a dashboard button.
    public init(name: String, percent: String?, reason: String?) throws {
        switch name {
        case "advance": self = .advance
        case "pause": self = .pause(reason: reason ?? "")
        case "resume": self = .resume
        case "set":
            guard let text = percent, let p = Int(text), (0...100).contains(p) else {
                throw ServerError.badRequest("set needs a percentage, an integer in 0...100 (got \(percent.map { "\"\($0.prefix(16))\"" } ?? "none"))")
            }
            self = .set(percent: p)
        default:
            throw ServerError.badRequest("unknown rollout action \"\(name.prefix(32))\": advance, pause, resume or set")
        }
    }

    public var name: String {
        switch self {
        case .advance: "advance"
        case .pause: "pause"
        case .resume: "resume"
        case .set: "set"
        }
    }
}

/// A release's rollout with its health, for the admin API, the CLI and the dashboard.
public struct RolloutStatus: Codable, Sendable, Equatable {
    public var platform: String
    public var version: String
    public var channel: String
    public var critical: Bool
    public var rollout: Rollout
    public var nextAdvance: Date?
    public var health: ReleaseHealth

    enum CodingKeys: String, CodingKey {
        case platform, version, channel, critical, rollout, health
        case nextAdvance = "next_advance"
    }
}

extension UpdateService {
    /// Platforms whose rollouts are kept between checks.
    static let rolloutCacheLimit = 1024

    /// The platform's rollouts as of the catalog revision, each settled at `now`.
    func rolloutGate(platform: String, revision: UInt64, client: CheckClient, now: Date) throws -> RolloutGate {
        lock.lock()
        var stored = rolloutCache[platform].flatMap { $0.revision == revision ? $0.rollouts : nil }
        lock.unlock()
        if stored == nil {
            let fresh = try catalog.rollouts(platform: platform)
            lock.lock()
            // Keyed by what a request names (an unknown platform is answered 404 only after this):
            // bounded like the other caches.
            if rolloutCache[platform] == nil && rolloutCache.count >= Self.rolloutCacheLimit { rolloutCache.removeAll() }
            rolloutCache[platform] = (revision, fresh)
            lock.unlock()
            stored = fresh
        }
        var rollouts: [String: Rollout] = [:]
        var inside = Set<String>()
        for (version, r) in stored ?? [:] {
            let s = r.settled(at: now)
            rollouts[version] = s
            if s.state != .paused, s.percent < 100, let id = client.clientID,
               RolloutBucket.isInside(bucket: RolloutBucket.bucket(clientID: id, platform: platform, version: version), percent: s.percent) {
                inside.insert(version)
            }
        }
        return RolloutGate(rollouts: rollouts, inside: inside, manual: client.manual, clientID: client.clientID)
    }

    func assignedVariant(_ client: CheckClient) -> AssignedVariant? {
        guard let e = configuration.experiment, let id = client.clientID else { return nil }
        return AssignedVariant(experiment: e.name, variant: e.assign(clientID: id))
    }

    /// Changes a release's rollout by hand.
    @discardableResult
    public func changeRollout(platform: String, version: String, _ action: RolloutAction, now: Date = Date()) throws -> Rollout {
        try Self.validatePlatform(platform)
        let v = try Routes.parseVersion(version, field: "version")
        guard let release = try catalog.releases(platform: platform).first(where: { $0.semanticVersion == v }) else {
            throw ServerError.notFound("\(platform) has no release \(version)")
        }
        var detail = "by hand"
        if case .pause(let reason) = action, !reason.isEmpty { detail = String(reason.prefix(200)) }
        let r = try catalog.updateRollout(platform: platform, version: release.version, action: action.name, detail: detail) { r in
            switch action {
            case .advance: try r.advance(at: now)
            case .pause(let reason): r.pause(reason: reason.isEmpty ? "paused by hand" : String(reason.prefix(200)), at: now)
            case .resume: r.resume(at: now)
            case .set(let p): try r.set(percent: p, at: now)
            }
        }
        invalidate()
        logger.notice("rollout changed", metadata: ["platform": "\(platform)", "version": "\(release.version)", "action": "\(action.name)",
                                                   "percent": "\(r.percent)", "state": "\(r.state.rawValue)"])
        return r
    }

    /// The health of each release of a platform over the auto-pause window (counting, for a resumed
    /// rollout, only reports since it was resumed).
    func health(platform: String, rollouts: [String: Rollout], now: Date) throws -> [String: ReleaseHealth] {
        let windowStart = now.addingTimeInterval(-TimeInterval(configuration.autoPauseWindowSeconds))
        // One count per distinct start: the window's, or a later resume.
        var byStart: [Date: [String]] = [:]
        for (version, rollout) in rollouts {
            byStart[max(windowStart, rollout.resumedAt ?? windowStart), default: []].append(version)
        }
        var out: [String: ReleaseHealth] = [:]
        for (start, versions) in byStart {
            // Clients, not reports (`ReleaseHealth.counting`): one that reports a failure again, under
            // any outcome, version or kind, is still one failure.
            let reports = try catalog.clientReports(platform: platform, since: start)
            for version in versions {
                out[version] = ReleaseHealth.counting(clients: reports, version: version)
            }
        }
        return out
    }

    /// Applies due scheduled advances and the auto-pause to every release. The server runs this every
    /// few seconds and after each install report; tests call it with their own clock.
    public func tickRollouts(now: Date = Date()) {
        do {
            for platform in try catalog.platforms() {
                try tickRollouts(platform: platform, now: now)
            }
        } catch {
            logger.error("rollout tick failed", metadata: ["error": "\(error)"])
        }
    }

    func tickRollouts(platform: String, now: Date) throws {
        let rollouts = try catalog.rollouts(platform: platform)
        let health = try health(platform: platform, rollouts: rollouts, now: now)
        let policy = configuration.autoPause
        var changed = false
        for (version, stored) in rollouts {
            var current = stored
            let settled = stored.settled(at: now)
            if settled.percent != stored.percent {
                current = try catalog.updateRollout(platform: platform, version: version, action: "schedule",
                                                    detail: "scheduled advance to \(settled.percent)%") { r in r = r.settled(at: now) }
                changed = true
            }
            guard current.state != .paused, let h = health[version], let reason = policy.pauseReason(h) else { continue }
            let r = try catalog.updateRollout(platform: platform, version: version, action: "auto-pause", detail: reason) { r in
                r.pause(reason: reason, at: now)
            }
            changed = true
            logger.warning("rollout auto-paused", metadata: ["platform": "\(platform)", "version": "\(version)", "percent": "\(r.percent)",
                                                             "reason": "\(reason)"])
        }
        if changed { invalidate() }
    }

    /// Every release of a platform with its rollout (settled now) and health.
    public func rolloutStatus(platform: String, now: Date = Date()) throws -> [RolloutStatus] {
        let releases = try catalog.releases(platform: platform)
        guard !releases.isEmpty else { throw ServerError.notFound("unknown platform \"\(platform)\"") }
        let rollouts = try catalog.rollouts(platform: platform)
        let health = try health(platform: platform, rollouts: rollouts, now: now)
        return releases.sorted { $0.sortVersion > $1.sortVersion }.map { r in
            let rollout = (rollouts[r.version] ?? .complete(at: r.published)).settled(at: now)
            return RolloutStatus(platform: platform, version: r.version, channel: r.channel, critical: r.critical, rollout: rollout,
                                 nextAdvance: rollout.nextAdvance, health: health[r.version] ?? ReleaseHealth())
        }
    }

    /// After an install or rollback report: the platform's rollouts are looked at now, unless they were
    /// less than `reportTickInterval` ago. Each look counts the window's reports, so without this a
    /// flood of reports (anyone may send them) would make every one pay for all the others; the
    /// ticker looks every 10 s whatever happens.
    public func tickAfterReport(platform: String, now: Date = Date()) throws {
        // The monotonic clock: a wall clock set back would stop these looks until it caught up.
        let t = ProcessInfo.processInfo.systemUptime
        lock.lock()
        let due = lastReportTick[platform].map { t - $0 >= reportTickInterval } ?? true
        if due {
            // Any platform name may be reported: the map is kept small.
            if lastReportTick.count >= 1024 { lastReportTick.removeAll() }
            lastReportTick[platform] = t
        }
        lock.unlock()
        if due { try tickRollouts(platform: platform, now: now) }
    }

    /// Removes telemetry older than `telemetry_retention_days`, at most once an hour: without it the
    /// table grows with every report for as long as the server runs.
    public func pruneTelemetry(now: Date = Date()) {
        lock.lock()
        let due = lastPrune.map { now.timeIntervalSince($0) >= 3600 } ?? true
        if due { lastPrune = now }
        lock.unlock()
        guard due else { return }
        do {
            let removed = try catalog.deleteTelemetry(before: now.addingTimeInterval(-TimeInterval(configuration.telemetryRetentionDays) * 86400))
            if removed > 0 { logger.info("pruned telemetry", metadata: ["events": "\(removed)", "older than days": "\(configuration.telemetryRetentionDays)"]) }
        } catch {
            logger.error("telemetry pruning failed", metadata: ["error": "\(error)"])
        }
    }

    /// Every `interval` seconds on a background thread, until the service is gone: `tickRollouts`, the
    /// static manifests' re-signing (`refreshStaticManifests`), and the delta jobs that another
    /// process queued (`phoenix-server publish --background`).
    func startRolloutTicker(interval: TimeInterval = 10) {
        Thread.detachNewThread { [weak self] in
            while let self {
                self.tickRollouts()
                self.refreshStaticManifests()
                self.pruneTelemetry()
                // Running ones too: a job whose process died is taken over (`claimDelta` leaves the
                // others' alone).
                if let jobs = try? self.catalog.unfinishedDeltas(), !jobs.isEmpty {
                    self.startJobsInBackground()
                }
                Thread.sleep(forTimeInterval: interval)
            }
        }
    }
}
