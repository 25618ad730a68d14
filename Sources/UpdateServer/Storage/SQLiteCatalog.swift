import Foundation
import GRDB
import UpdateModels

/// The catalog in one SQLite file (GRDB, WAL mode, so the CLI and a running server can share it).
public final class SQLiteCatalog: Catalog {
    let pool: DatabasePool

    /// Opens (creating and migrating) the catalog. A file that is not a healthy SQLite database is
    /// reported and left exactly as it is, for the operator to restore. `busyTimeout`: how long a write
    /// waits for another process's lock before failing with SQLITE_BUSY.
    public convenience init(path: String, busyTimeout: TimeInterval = 10) throws {
        do {
            try self.init(opening: path, busyTimeout: busyTimeout)
        } catch let e as DatabaseError {
            throw ServerError.badConfiguration(
                "the catalog \(path) cannot be used: \(e.message ?? "\(e.resultCode)") (SQLite \(e.resultCode)); it was left unchanged: restore it from a backup, or move it away to start an empty catalog")
        }
    }

    private init(opening path: String, busyTimeout: TimeInterval) throws {
        var config = Configuration()
        config.busyMode = .timeout(busyTimeout)
        pool = try DatabasePool(path: path, configuration: config)
        // Reading the schema fails here, before any change, when the file is not a database.
        _ = try pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") }
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "release") { t in
                t.column("platform", .text).notNull()
                t.column("version", .text).notNull()
                t.column("channel", .text).notNull()
                t.column("changelog", .text).notNull()
                t.column("published", .datetime).notNull()
                t.column("fullSHA256", .text).notNull()
                t.column("fullSize", .integer).notNull()
                t.column("treeDigest", .text).notNull()
                t.column("critical", .boolean).notNull().defaults(to: false)
                t.primaryKey(["platform", "version"])
            }
            try db.create(table: "delta") { t in
                t.column("platform", .text).notNull()
                t.column("fromVersion", .text).notNull()
                t.column("toVersion", .text).notNull()
                t.column("state", .text).notNull()
                t.column("sha256", .text)
                t.column("size", .integer)
                t.column("error", .text)
                t.column("updated", .datetime).notNull()
                t.primaryKey(["platform", "fromVersion", "toVersion"])
            }
            try db.create(table: "revision") { t in
                t.column("id", .integer).primaryKey()
                t.column("value", .integer).notNull()
            }
            try db.execute(sql: "INSERT INTO revision (id, value) VALUES (1, 1)")
        }
        migrator.registerMigration("v2-telemetry") { db in
            try db.create(table: "telemetry") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("received", .datetime).notNull().indexed()
                t.column("platform", .text).notNull()
                t.column("event", .text).notNull()
            }
        }
        migrator.registerMigration("v3-rollouts") { db in
            try db.create(table: "rollout") { t in
                t.column("platform", .text).notNull()
                t.column("version", .text).notNull()
                t.column("rollout", .text).notNull()
                t.primaryKey(["platform", "version"])
            }
            // Releases published before rollouts existed are fully rolled out.
            let complete = String(decoding: try Self.encoder.encode(Rollout.complete(at: Date())), as: UTF8.self)
            try db.execute(sql: "INSERT INTO rollout (platform, version, rollout) SELECT platform, version, ? FROM release",
                           arguments: [complete])
            try db.create(table: "rollout_log") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("at", .datetime).notNull()
                t.column("platform", .text).notNull()
                t.column("version", .text).notNull()
                t.column("action", .text).notNull()
                t.column("percent", .integer).notNull()
                t.column("state", .text).notNull()
                t.column("detail", .text).notNull()
            }
            // The fields that rollouts and the dashboard count by, as columns.
            for column in ["stage", "outcome", "from_version", "to_version", "kind", "variant"] {
                try db.alter(table: "telemetry") { t in t.add(column: column, .text) }
                try db.execute(sql: "UPDATE telemetry SET \(column) = json_extract(event, '$.\(column)')")
            }
            try db.alter(table: "telemetry") { t in t.add(column: "bytes", .integer) }
            try db.execute(sql: "UPDATE telemetry SET bytes = json_extract(event, '$.bytes')")
            try db.create(index: "telemetry_platform_received", on: "telemetry", columns: ["platform", "received"])
        }
        migrator.registerMigration("v4-telemetry-client") { db in
            // Auto-pause counts clients, not reports: the client id as a column.
            try db.alter(table: "telemetry") { t in t.add(column: "client_id", .text) }
            try db.execute(sql: "UPDATE telemetry SET client_id = json_extract(event, '$.client_id')")
        }
        migrator.registerMigration("v5-delta-claims") { db in
            // The process making a delta job (its claim token): another process sharing the data
            // directory leaves it while that process lives.
            try db.alter(table: "delta") { t in t.add(column: "claimed_by", .text) }
        }
        try migrator.migrate(pool)
    }

    /// Rollouts are stored with full-precision times (ISO 8601 would drop the fraction of a second, and
    /// a resume must not count reports from the same second before it).
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .secondsSince1970
        e.outputFormatting = .sortedKeys
        return e
    }()

    static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .secondsSince1970
        return d
    }()

    public func insertTelemetry(_ event: TelemetryEvent, received: Date) throws {
        let json = String(decoding: try JSONEncoder().encode(event), as: UTF8.self)
        try pool.write { db in
            try db.execute(sql: """
                INSERT INTO telemetry (received, platform, event, stage, outcome, from_version, to_version, kind, variant, bytes, client_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                arguments: [received, event.platform, json, event.stage.rawValue, event.outcome, event.fromVersion, event.toVersion,
                            event.kind, event.variant, event.bytes.map { Int64(clamping: $0) }, event.clientID])
        }
    }

    public func telemetrySummary(platform: String, since: Date, bucketSeconds: Int) throws -> [TelemetrySummaryRow] {
        let width = max(1, bucketSeconds)
        return try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT (CAST(strftime('%s', received) AS INTEGER) / ?) * ? AS bucket, stage, outcome, from_version, to_version,
                       kind, variant, COUNT(*) AS n, TOTAL(bytes) AS total
                FROM telemetry WHERE platform = ? AND received >= ?
                GROUP BY bucket, stage, outcome, from_version, to_version, kind, variant
                ORDER BY bucket
                """, arguments: [width, width, platform, since])
            .compactMap { row -> TelemetrySummaryRow? in
                guard let stage = TelemetryEvent.Stage(rawValue: row["stage"] ?? "") else { return nil }
                // TOTAL, not SUM: a floating-point sum cannot overflow (SUM fails the query), and is exact
                // below 2^53 bytes.
                let total: Double = row["total"]
                return TelemetrySummaryRow(bucket: Date(timeIntervalSince1970: TimeInterval(row["bucket"] as Int64)), stage: stage,
                                           outcome: row["outcome"] ?? "", fromVersion: row["from_version"], toVersion: row["to_version"],
                                           kind: row["kind"], variant: row["variant"], count: row["n"], bytes: total >= 0x1p64 ? .max : UInt64(max(0, total)))
            }
        }
    }

    public func clientReports(platform: String, since: Date) throws -> [ReleaseHealth.ClientReport] {
        try pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT DISTINCT COALESCE(client_id, 'row ' || id) AS client, stage, outcome, from_version, to_version
                FROM telemetry WHERE platform = ? AND received >= ? AND stage IN ('install', 'rollback')
                """, arguments: [platform, since])
            .compactMap { row in
                guard let stage = TelemetryEvent.Stage(rawValue: row["stage"] ?? "") else { return nil }
                return ReleaseHealth.ClientReport(client: row["client"], stage: stage, outcome: row["outcome"] ?? "",
                                                  from: row["from_version"], to: row["to_version"])
            }
        }
    }

    /// In batches of 10,000, each its own transaction: the first prune after an upgrade may remove
    /// millions of rows, and one long write would hold off every other writer (503s).
    public func deleteTelemetry(before date: Date) throws -> Int {
        var total = 0
        while true {
            let n = try pool.write { db in
                try db.execute(sql: "DELETE FROM telemetry WHERE id IN (SELECT id FROM telemetry WHERE received < ? LIMIT 10000)",
                               arguments: [date])
                return db.changesCount
            }
            total += n
            if n < 10_000 { return total }
        }
    }

    public func rollouts(platform: String) throws -> [String: Rollout] {
        try pool.read { db in
            var out: [String: Rollout] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT version, rollout FROM rollout WHERE platform = ?", arguments: [platform]) {
                let text: String = row["rollout"]
                out[row["version"]] = try Self.decoder.decode(Rollout.self, from: Data(text.utf8))
            }
            return out
        }
    }

    @discardableResult
    public func updateRollout(platform: String, version: String, action: String, detail: String,
                              _ change: (inout Rollout) throws -> Void) throws -> Rollout {
        try pool.write { db in
            guard let text = try String.fetchOne(db, sql: "SELECT rollout FROM rollout WHERE platform = ? AND version = ?",
                                                 arguments: [platform, version]) else {
                throw ServerError.notFound("\(platform) has no release \(version)")
            }
            let before = try Self.decoder.decode(Rollout.self, from: Data(text.utf8))
            var after = before
            do { try change(&after) } catch let e as Rollout.RolloutError {
                throw ServerError.badRequest("\(platform) \(version): \(e.description)")
            }
            guard after != before else { return after }
            try db.execute(sql: "UPDATE rollout SET rollout = ? WHERE platform = ? AND version = ?",
                           arguments: [String(decoding: try Self.encoder.encode(after), as: UTF8.self), platform, version])
            try Self.log(db, platform: platform, version: version, action: action, rollout: after, detail: detail)
            try Self.bump(db)
            return after
        }
    }

    static func log(_ db: Database, platform: String, version: String, action: String, rollout: Rollout, detail: String) throws {
        try db.execute(sql: "INSERT INTO rollout_log (at, platform, version, action, percent, state, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       arguments: [Date(), platform, version, action, rollout.percent, rollout.state.rawValue, detail])
    }

    public func rolloutLog(platform: String?, limit: Int) throws -> [RolloutLogEntry] {
        try pool.read { db in
            let filter = platform == nil ? "" : "WHERE platform = ?"
            let args: StatementArguments = platform.map { [$0, limit] } ?? [limit]
            return try Row.fetchAll(db, sql: "SELECT * FROM rollout_log \(filter) ORDER BY id DESC LIMIT ?", arguments: args).map {
                RolloutLogEntry(at: $0["at"], platform: $0["platform"], version: $0["version"], action: $0["action"],
                                percent: $0["percent"], state: $0["state"], detail: $0["detail"])
            }
        }
    }

    public func telemetry(platform: String, since: Date) throws -> [TelemetryEvent] {
        try pool.read { db in
            try String.fetchAll(db, sql: "SELECT event FROM telemetry WHERE platform = ? AND received >= ? ORDER BY id",
                                arguments: [platform, since])
                .compactMap { try? JSONDecoder().decode(TelemetryEvent.self, from: Data($0.utf8)) }
        }
    }

    /// The revision is the manifest version, which clients keep as a replay floor: it grows by one
    /// and is never below the clock's seconds, so a catalog moved aside (as a corrupt one's error
    /// says) or restored from a backup still issues versions above every one issued before.
    static func bump(_ db: Database) throws {
        try db.execute(sql: "UPDATE revision SET value = MAX(value + 1, CAST(strftime('%s', 'now') AS INTEGER)) WHERE id = 1")
    }

    public func raiseRevisionToClock() throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE revision SET value = CAST(strftime('%s', 'now') AS INTEGER) "
                + "WHERE id = 1 AND value < CAST(strftime('%s', 'now') AS INTEGER)")
        }
    }

    public func insertRelease(_ release: ReleaseRecord, pendingDeltas: [DeltaRecord], rollout: Rollout) throws {
        let version = try SemanticVersion(parsing: release.version)
        try pool.write { db in
            let existing = try ReleaseRow.filter(Column("platform") == release.platform).fetchAll(db)
            if existing.contains(where: { $0.record.semanticVersion == version }) {
                throw ServerError.conflict("\(release.platform) \(release.version) is already published")
            }
            try ReleaseRow(release).insert(db)
            for d in pendingDeltas { try DeltaRow(d).insert(db) }
            try db.execute(sql: "INSERT INTO rollout (platform, version, rollout) VALUES (?, ?, ?)",
                           arguments: [release.platform, release.version, String(decoding: try Self.encoder.encode(rollout), as: UTF8.self)])
            try Self.log(db, platform: release.platform, version: release.version, action: "publish", rollout: rollout,
                         detail: "stages \(rollout.stages.map { "\($0)%" }.joined(separator: " -> "))")
            try Self.bump(db)
        }
    }

    public func releases(platform: String) throws -> [ReleaseRecord] {
        try pool.read { db in try ReleaseRow.filter(Column("platform") == platform).fetchAll(db).map(\.record) }
    }

    public func platforms() throws -> [String] {
        try pool.read { db in try String.fetchAll(db, sql: "SELECT DISTINCT platform FROM release ORDER BY platform") }
    }

    public func deltas(platform: String) throws -> [DeltaRecord] {
        try pool.read { db in try DeltaRow.filter(Column("platform") == platform).fetchAll(db).map(\.record) }
    }

    public func updateDelta(_ delta: DeltaRecord) throws {
        try pool.write { db in
            try DeltaRow(delta).save(db)
            try Self.bump(db)
        }
    }

    public func claimDelta(owner: String, isAlive: (String) -> Bool) throws -> DeltaRecord? {
        try pool.write { db in
            let rows = try Row.fetchAll(db, sql: "SELECT rowid AS rid, state, claimed_by FROM delta WHERE state IN ('pending', 'running') ORDER BY rowid")
            for row in rows {
                let state: String = row["state"]
                let by: String? = row["claimed_by"]
                if state == "running", let by, isAlive(by) { continue }
                let rid: Int64 = row["rid"]
                try db.execute(sql: "UPDATE delta SET state = 'running', claimed_by = ?, updated = ? WHERE rowid = ?",
                               arguments: [owner, Date(), rid])
                return try DeltaRow.fetchOne(db, sql: "SELECT * FROM delta WHERE rowid = ?", arguments: [rid])?.record
            }
            return nil
        }
    }

    public func unfinishedDeltas() throws -> [DeltaRecord] {
        try pool.read { db in
            try DeltaRow.filter(["pending", "running"].contains(Column("state"))).fetchAll(db).map(\.record)
        }
    }

    public func revision() throws -> UInt64 {
        try pool.read { db in UInt64(try Int64.fetchOne(db, sql: "SELECT value FROM revision WHERE id = 1") ?? 1) }
    }
}

struct ReleaseRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "release"
    var platform: String
    var version: String
    var channel: String
    var changelog: String
    var published: Date
    var fullSHA256: String
    var fullSize: Int64
    var treeDigest: String
    var critical: Bool

    init(_ r: ReleaseRecord) {
        platform = r.platform
        version = r.version
        channel = r.channel
        changelog = r.changelog
        published = r.published
        fullSHA256 = r.fullSHA256
        fullSize = Int64(r.fullSize)
        treeDigest = r.treeDigest
        critical = r.critical
    }

    var record: ReleaseRecord {
        ReleaseRecord(platform: platform, version: version, channel: channel, changelog: changelog, published: published,
                      fullSHA256: fullSHA256, fullSize: UInt64(fullSize), treeDigest: treeDigest, critical: critical)
    }
}

struct DeltaRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "delta"
    var platform: String
    var fromVersion: String
    var toVersion: String
    var state: String
    var sha256: String?
    var size: Int64?
    var error: String?
    var updated: Date

    init(_ d: DeltaRecord) {
        platform = d.platform
        fromVersion = d.fromVersion
        toVersion = d.toVersion
        state = d.state.rawValue
        sha256 = d.sha256
        size = d.size.map { Int64($0) }
        error = d.error
        updated = d.updated
    }

    var record: DeltaRecord {
        DeltaRecord(platform: platform, fromVersion: fromVersion, toVersion: toVersion,
                    state: DeltaRecord.State(rawValue: state) ?? .failed, sha256: sha256, size: size.map { UInt64($0) },
                    error: error, updated: updated)
    }
}
