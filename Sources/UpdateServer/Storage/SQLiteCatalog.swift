import Foundation
import GRDB
import UpdateModels

/// The catalog in one SQLite file (GRDB, WAL mode, so the CLI and a running server can share it).
public final class SQLiteCatalog: Catalog {
    let pool: DatabasePool

    public init(path: String) throws {
        var config = Configuration()
        config.busyMode = .timeout(10)
        pool = try DatabasePool(path: path, configuration: config)
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
        try migrator.migrate(pool)
    }

    public func insertTelemetry(_ event: TelemetryEvent, received: Date) throws {
        let json = String(decoding: try JSONEncoder().encode(event), as: UTF8.self)
        try pool.write { db in
            try db.execute(sql: "INSERT INTO telemetry (received, platform, event) VALUES (?, ?, ?)",
                           arguments: [received, event.platform, json])
        }
    }

    public func telemetry(platform: String, since: Date) throws -> [TelemetryEvent] {
        try pool.read { db in
            try String.fetchAll(db, sql: "SELECT event FROM telemetry WHERE platform = ? AND received >= ? ORDER BY id",
                                arguments: [platform, since])
                .compactMap { try? JSONDecoder().decode(TelemetryEvent.self, from: Data($0.utf8)) }
        }
    }

    static func bump(_ db: Database) throws {
        try db.execute(sql: "UPDATE revision SET value = value + 1 WHERE id = 1")
    }

    public func insertRelease(_ release: ReleaseRecord, pendingDeltas: [DeltaRecord]) throws {
        let version = try SemanticVersion(parsing: release.version)
        try pool.write { db in
            let existing = try ReleaseRow.filter(Column("platform") == release.platform).fetchAll(db)
            if existing.contains(where: { $0.record.semanticVersion == version }) {
                throw ServerError.conflict("\(release.platform) \(release.version) is already published")
            }
            try ReleaseRow(release).insert(db)
            for d in pendingDeltas { try DeltaRow(d).insert(db) }
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
