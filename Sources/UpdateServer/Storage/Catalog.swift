import Foundation
import UpdateModels

/// A release in the catalog.
public struct ReleaseRecord: Codable, Sendable, Equatable {
    public var platform: String
    public var version: String
    public var channel: String
    public var changelog: String
    public var published: Date
    public var fullSHA256: String
    public var fullSize: UInt64
    public var treeDigest: String
    public var critical: Bool

    public init(platform: String, version: String, channel: String, changelog: String, published: Date,
                fullSHA256: String, fullSize: UInt64, treeDigest: String, critical: Bool = false) {
        self.platform = platform
        self.version = version
        self.channel = channel
        self.changelog = changelog
        self.published = published
        self.fullSHA256 = fullSHA256
        self.fullSize = fullSize
        self.treeDigest = treeDigest
        self.critical = critical
    }
}

/// A delta between two releases of a platform, and the state of the job that makes it.
public struct DeltaRecord: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        /// Waiting to be made.
        case pending
        /// Being made and verified.
        case running
        /// Made, verified by applying it, and offered.
        case ready
        /// Made and verified, but not smaller than the policy threshold: not offered.
        case dropped
        /// Making or verifying it failed (`error` says why).
        case failed
    }

    public var platform: String
    public var fromVersion: String
    public var toVersion: String
    public var state: State
    public var sha256: String?
    public var size: UInt64?
    public var error: String?
    public var updated: Date

    public init(platform: String, fromVersion: String, toVersion: String, state: State, sha256: String? = nil,
                size: UInt64? = nil, error: String? = nil, updated: Date = Date()) {
        self.platform = platform
        self.fromVersion = fromVersion
        self.toVersion = toVersion
        self.state = state
        self.sha256 = sha256
        self.size = size
        self.error = error
        self.updated = updated
    }
}

/// Where releases and delta jobs are recorded. SQLite by default (`SQLiteCatalog`); a shared database
/// for several server instances implements the same protocol.
public protocol Catalog: Sendable {
    /// Inserts a release and its pending delta jobs in one transaction; throws `conflict` when the
    /// version (by semver precedence) is already published for the platform.
    func insertRelease(_ release: ReleaseRecord, pendingDeltas: [DeltaRecord], rollout: Rollout) throws
    func releases(platform: String) throws -> [ReleaseRecord]
    func platforms() throws -> [String]
    func deltas(platform: String) throws -> [DeltaRecord]
    func updateDelta(_ delta: DeltaRecord) throws
    /// Jobs in state pending or running (a restart resumes those that were running).
    func unfinishedDeltas() throws -> [DeltaRecord]
    /// Takes the next job to make, in one transaction: a pending one, or one left running by a process
    /// that is gone (`isAlive` false for its claim token, or no token). Marks it running by `owner`;
    /// nil when none.
    func claimDelta(owner: String, isAlive: (String) -> Bool) throws -> DeltaRecord?
    /// A number that grows every time the catalog changes (the manifest version).
    func revision() throws -> UInt64
    /// Raises the revision to the clock's seconds if it is below (a catalog restored from a backup, or
    /// a new one): the server calls it when it starts serving.
    func raiseRevisionToClock() throws
    /// Stores a validated telemetry event.
    func insertTelemetry(_ event: TelemetryEvent, received: Date) throws
    /// Telemetry events of a platform since a time, oldest first.
    func telemetry(platform: String, since: Date) throws -> [TelemetryEvent]
    /// Telemetry of a platform since a time, counted per time bucket (`bucketSeconds` wide, aligned to
    /// the epoch) and per stage, outcome, versions, kind and variant.
    func telemetrySummary(platform: String, since: Date, bucketSeconds: Int) throws -> [TelemetrySummaryRow]
    /// The distinct install and rollback reports of a platform since a time, with their client ids
    /// (what auto-pause counts: `ReleaseHealth.counting`).
    func clientReports(platform: String, since: Date) throws -> [ReleaseHealth.ClientReport]
    /// Removes telemetry received before `date`; returns how many events.
    func deleteTelemetry(before date: Date) throws -> Int

    /// The rollouts of a platform's releases, by version string.
    func rollouts(platform: String) throws -> [String: Rollout]
    /// Reads a release's rollout, lets `change` modify it and, if it changed, stores it with an entry in
    /// the rollout log, all in one transaction (so concurrent changes from the CLI and the server do not
    /// lose each other). Returns the stored rollout.
    @discardableResult
    func updateRollout(platform: String, version: String, action: String, detail: String,
                       _ change: (inout Rollout) throws -> Void) throws -> Rollout
    /// The newest entries of the rollout log, newest first.
    func rolloutLog(platform: String?, limit: Int) throws -> [RolloutLogEntry]
}

/// One change of a rollout, by hand, by the schedule or by the auto-pause.
public struct RolloutLogEntry: Codable, Sendable, Equatable {
    public var at: Date
    public var platform: String
    public var version: String
    /// `publish`, `advance`, `schedule`, `pause`, `auto-pause`, `resume` or `set`.
    public var action: String
    public var percent: Int
    public var state: String
    public var detail: String
}

/// Telemetry counted by `Catalog.telemetrySummary`.
public struct TelemetrySummaryRow: Sendable, Equatable {
    public var bucket: Date
    public var stage: TelemetryEvent.Stage
    public var outcome: String
    public var fromVersion: String?
    public var toVersion: String?
    public var kind: String?
    public var variant: String?
    public var count: Int
    /// Sum of the events' `bytes`.
    public var bytes: UInt64
}

/// Where package bytes live, addressed by their SHA-256. A directory by default (`FilePackageStore`);
/// object storage implements the same protocol.
public protocol PackageStore: Sendable {
    /// Moves the file at `path` into the store (it is consumed) and returns its address.
    func add(fileAt path: String) throws -> (sha256: String, size: UInt64)
    /// A local path to read the package from, or nil if the store does not have it.
    func path(for sha256: String) -> String?
}

extension ReleaseRecord {
    /// The release's version, parsed (catalog rows only ever hold versions that parsed when published).
    public var semanticVersion: SemanticVersion? { try? SemanticVersion(parsing: version) }

    /// Sort key: the version, or 0.0.0 for a row that somehow does not parse.
    var sortVersion: SemanticVersion { semanticVersion ?? SemanticVersion(major: 0, minor: 0, patch: 0) }
}

extension DeltaRecord {
    public var fromSemanticVersion: SemanticVersion? { try? SemanticVersion(parsing: fromVersion) }
}
