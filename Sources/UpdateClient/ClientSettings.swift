import Foundation
import TreeIO
import UpdateModels

/// The client's settings (`phoenix-update settings set KEY VALUE`), one JSON file. Keys are the ones the
/// command line uses.
public struct ClientSettings: Codable, Sendable, Equatable {
    public enum Frequency: String, Codable, Sendable, CaseIterable {
        case daily, weekly
        case onDemand = "on-demand"

        var interval: TimeInterval? {
            switch self {
            case .daily: 24 * 3600
            case .weekly: 7 * 24 * 3600
            case .onDemand: nil
            }
        }
    }

    public var serverURL: String = ""
    /// Base64 of the pinned Ed25519 public key (32 bytes).
    public var publicKey: String = ""
    public var platform: String = ""
    public var installDir: String = ""
    public var currentVersion: String = "0.0.0"
    public var autoUpdate: Bool = false
    public var frequency: Frequency = .daily
    public var channel: String = "stable"
    public var telemetry: Bool = true
    /// Random, generated once; no personal data.
    public var clientID: String = UUID().uuidString.lowercased()
    /// Run after an install (for example to relaunch the app). Local configuration only.
    public var restartCommand: String?
    /// When set, run after the restart; success confirms the update.
    public var healthCommand: String?
    /// Seconds the new version has to confirm before it is rolled back.
    public var confirmDeadlineSeconds: Int = 300
    /// Unconfirmed launches of a new version (`phoenix-update launched`) before it is rolled back.
    public var maxLaunches: Int = 3
    /// PEM file of the CA certificates to trust for the server; nil = the system's store.
    public var caFile: String?
    /// Base64 SHA-256 pins of the server's public key (any one must match); empty = no pinning.
    public var tlsPins: [String] = []

    public var trust: TLSTrust { TLSTrust(caFile: caFile, pins: tlsPins) }

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case serverURL = "server_url", publicKey = "public_key", platform, installDir = "install_dir"
        case currentVersion = "current_version", autoUpdate = "auto_update", frequency, channel, telemetry
        case clientID = "client_id", restartCommand = "restart_command", healthCommand = "health_command"
        case confirmDeadlineSeconds = "confirm_deadline_seconds", maxLaunches = "max_launches"
        case caFile = "ca_file", tlsPins = "tls_pin"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var s = ClientSettings()
        s.serverURL = try c.decodeIfPresent(String.self, forKey: .serverURL) ?? s.serverURL
        s.publicKey = try c.decodeIfPresent(String.self, forKey: .publicKey) ?? s.publicKey
        s.platform = try c.decodeIfPresent(String.self, forKey: .platform) ?? s.platform
        s.installDir = try c.decodeIfPresent(String.self, forKey: .installDir) ?? s.installDir
        s.currentVersion = try c.decodeIfPresent(String.self, forKey: .currentVersion) ?? s.currentVersion
        s.autoUpdate = try c.decodeIfPresent(Bool.self, forKey: .autoUpdate) ?? s.autoUpdate
        s.frequency = try c.decodeIfPresent(Frequency.self, forKey: .frequency) ?? s.frequency
        s.channel = try c.decodeIfPresent(String.self, forKey: .channel) ?? s.channel
        s.telemetry = try c.decodeIfPresent(Bool.self, forKey: .telemetry) ?? s.telemetry
        s.clientID = try c.decodeIfPresent(String.self, forKey: .clientID) ?? s.clientID
        s.restartCommand = try c.decodeIfPresent(String.self, forKey: .restartCommand)
        s.healthCommand = try c.decodeIfPresent(String.self, forKey: .healthCommand)
        s.confirmDeadlineSeconds = try c.decodeIfPresent(Int.self, forKey: .confirmDeadlineSeconds) ?? s.confirmDeadlineSeconds
        s.maxLaunches = try c.decodeIfPresent(Int.self, forKey: .maxLaunches) ?? s.maxLaunches
        s.caFile = try c.decodeIfPresent(String.self, forKey: .caFile)
        s.tlsPins = try c.decodeIfPresent([String].self, forKey: .tlsPins) ?? []
        self = s
    }

    /// The keys `settings set` accepts.
    public static let settableKeys = ["server_url", "public_key", "platform", "install_dir", "current_version", "auto_update",
                                      "frequency", "channel", "telemetry", "restart_command", "health_command",
                                      "confirm_deadline_seconds", "max_launches", "ca_file", "tls_pin"]

    /// Sets one key from text, validating it.
    public mutating func set(_ key: String, _ value: String) throws {
        func bool() throws -> Bool {
            switch value.lowercased() {
            case "on", "true", "yes", "1": return true
            case "off", "false", "no", "0": return false
            default: throw ClientError.badSetting(key, "expected on or off, got \"\(value)\"")
            }
        }
        switch key {
        case "server_url":
            guard value.hasPrefix("https://") || value.hasPrefix("http://"), URL(string: value)?.host != nil else {
                throw ClientError.badSetting(key, "expected an http(s) URL")
            }
            serverURL = value.hasSuffix("/") ? String(value.dropLast()) : value
        case "public_key":
            guard let d = Data(base64Encoded: value), d.count == 32 else {
                throw ClientError.badSetting(key, "expected the server's Ed25519 public key: base64 of 32 bytes")
            }
            publicKey = value
        case "platform":
            guard !value.isEmpty else { throw ClientError.badSetting(key, "empty") }
            platform = value
        case "install_dir":
            guard value.hasPrefix("/") else { throw ClientError.badSetting(key, "expected an absolute path") }
            installDir = value
        case "current_version":
            currentVersion = value
        case "auto_update":
            autoUpdate = try bool()
        case "frequency":
            guard let f = Frequency(rawValue: value) else { throw ClientError.badSetting(key, "expected daily, weekly or on-demand") }
            frequency = f
        case "channel":
            guard value == "stable" || value == "beta" else { throw ClientError.badSetting(key, "expected stable or beta") }
            channel = value
        case "telemetry":
            telemetry = try bool()
        case "restart_command":
            restartCommand = value.isEmpty ? nil : value
        case "health_command":
            healthCommand = value.isEmpty ? nil : value
        case "ca_file":
            guard value.isEmpty || value.hasPrefix("/") else { throw ClientError.badSetting(key, "expected an absolute path to a PEM file, or empty") }
            guard value.isEmpty || FileManager.default.isReadableFile(atPath: value) else {
                throw ClientError.badSetting(key, "\(value) is not a readable file")
            }
            caFile = value.isEmpty ? nil : value
        case "tls_pin":
            // Comma-separated; each "sha256/BASE64" or BASE64 of a 32-byte SHA-256 of the key's SPKI.
            let pins = try value.split(separator: ",").map { raw -> String in
                var p = raw.trimmingCharacters(in: .whitespaces)
                if p.hasPrefix("sha256/") { p.removeFirst(7) }
                guard let d = Data(base64Encoded: p), d.count == 32 else {
                    throw ClientError.badSetting(key, "\"\(raw)\" is not base64 of a SHA-256 (32 bytes)")
                }
                return p
            }
            tlsPins = pins
        case "max_launches":
            guard let n = Int(value), n >= 1 else { throw ClientError.badSetting(key, "expected at least 1") }
            maxLaunches = n
        case "confirm_deadline_seconds":
            guard let n = Int(value), n >= 10 else { throw ClientError.badSetting(key, "expected at least 10 seconds") }
            confirmDeadlineSeconds = n
        default:
            throw ClientError.badSetting(key, "unknown key; known: \(Self.settableKeys.joined(separator: ", "))")
        }
    }
}

/// What the client remembers between runs, beside the settings (outside the install directory, so that
/// a replaced installation cannot reset it).
public struct ClientState: Codable, Sendable, Equatable {
    /// Highest manifest version seen, per "platform/channel": an older manifest is a replay.
    public var highestManifestVersion: [String: UInt64] = [:]
    public var lastCheck: Date?
    /// Do not check again before this (the server's Retry-After).
    public var retryAfter: Date?
    /// SHA-256s of deltas that failed to apply: never tried again.
    public var failedDeltas: [String: String] = [:]
    /// An installed update waiting for `confirm`.
    public var pending: Pending?
    /// The version before the last install (what `rollback` returns to).
    public var previousVersion: String?
    /// An install under way: if the client dies, the next run finishes its bookkeeping (when the tree
    /// is the new one) or forgets it (when the tree is still the old one).
    public var installing: Installing?
    /// The A/B variant the server assigned at the last check.
    public var variant: AssignedVariant?
    /// Reports made while offline or outside an async call (rollbacks), sent with the next report.
    public var unsentReports: [TelemetryEvent]?
    /// A rollback under way: if the client dies, the next run finishes its bookkeeping (when the tree
    /// is no longer the one rolled back from) or forgets it.
    public var rollingBack: RollingBack?

    public struct RollingBack: Codable, Sendable, Equatable {
        public var fromVersion: String
        /// The version restored (nil: not known, as after a first install).
        public var toVersion: String?
        /// The digest of the tree rolled back from.
        public var fromTreeDigest: String
        /// Why: the report's outcome.
        public var category: String
        public var startedAt: Date
    }

    public struct Installing: Codable, Sendable, Equatable {
        public var version: String
        public var previousVersion: String
        public var treeDigest: String
    }

    public struct Pending: Codable, Sendable, Equatable {
        public var version: String
        public var previousVersion: String
        public var installedAt: Date
        public var deadline: Date
        public var launches: Int
    }

    public init() {}

    enum CodingKeys: String, CodingKey {
        case highestManifestVersion = "highest_manifest_version", lastCheck = "last_check", retryAfter = "retry_after"
        case failedDeltas = "failed_deltas", pending, previousVersion = "previous_version", installing, variant
        case unsentReports = "unsent_reports", rollingBack = "rolling_back"
    }

    /// A missing field reads as empty (files of other versions of the client), but for the replay
    /// floor, which every version writes: a file without it (or with null) is refused, not read as
    /// a floor of zero. A field of the wrong type is an error.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        highestManifestVersion = try c.decode([String: UInt64].self, forKey: .highestManifestVersion)
        lastCheck = try c.decodeIfPresent(Date.self, forKey: .lastCheck)
        retryAfter = try c.decodeIfPresent(Date.self, forKey: .retryAfter)
        failedDeltas = try c.decodeIfPresent([String: String].self, forKey: .failedDeltas) ?? [:]
        pending = try c.decodeIfPresent(Pending.self, forKey: .pending)
        previousVersion = try c.decodeIfPresent(String.self, forKey: .previousVersion)
        installing = try c.decodeIfPresent(Installing.self, forKey: .installing)
        variant = try c.decodeIfPresent(AssignedVariant.self, forKey: .variant)
        unsentReports = try c.decodeIfPresent([TelemetryEvent].self, forKey: .unsentReports)
        rollingBack = try c.decodeIfPresent(RollingBack.self, forKey: .rollingBack)
    }
}

/// Where the settings and state live: `--config FILE`, else `$XDG_CONFIG_HOME/phoenix-update/config.json`
/// (default `~/.config`); the state sits beside it, downloads in `downloads/`.
public struct ClientPaths: Sendable {
    public let config: String
    public var state: String { POSIX.directory(of: config) + "/state.json" }
    public var downloads: String { POSIX.directory(of: config) + "/downloads" }
    /// How long a run waits for another run's lock before giving up (`whileLocked`).
    public var lockPatience: Double = 120

    public init(config: String? = nil) {
        if let config {
            self.config = config
        } else {
            let env = ProcessInfo.processInfo.environment
            let base = env["XDG_CONFIG_HOME"] ?? ((env["HOME"] ?? NSHomeDirectory()) + "/.config")
            self.config = base + "/phoenix-update/config.json"
        }
    }

    public func loadSettings() throws -> ClientSettings {
        guard POSIX.exists(config) else { return ClientSettings() }
        return try decodeSettings(try Self.read(config))
    }

    func decodeSettings(_ bytes: [UInt8]) throws -> ClientSettings {
        do {
            return try JSONDecoder().decode(ClientSettings.self, from: Data(bytes))
        } catch {
            throw ClientError.badFile(path: config, detail: "not a valid settings file ("
                + ((error as? DecodingError).map { Self.describe($0, in: bytes) } ?? "\(error)") + ")")
        }
    }

    /// A settings or state file's bytes; a file that cannot be read is a configuration error.
    static func read(_ path: String) throws -> [UInt8] {
        do { return try POSIX.readFile(path) } catch { throw ClientError.badFile(path: path, detail: "cannot be read: \(error)") }
    }

    public func save(_ settings: ClientSettings) throws {
        try write(settings, to: config)
    }

    /// Saves the settings this run changed since it loaded `base`, over what is on disk now: another
    /// run (a timer's check during a user's install, `settings set` meanwhile) may have saved since,
    /// and a whole-file save lost its changes. Field by field, this run's changed fields win; the rest
    /// are the file's. Under the lock beside the file (`whileLocked`: a save waits while another run
    /// applies an install or a rollback). Returns what was written.
    public func save(_ mine: ClientSettings, since base: ClientSettings) throws -> ClientSettings {
        try whileLocked {
            let merged = try merged(mine, since: base).merged
            try write(merged, to: config)
            return merged
        }
    }

    /// `save(_:since:)` for the state. Besides the field rule: the highest manifest version seen is
    /// the larger of the two (a replay floor never goes down), failed deltas are the union, and the
    /// unsent reports are the file's, less those this run sent, plus those it queued.
    public func save(_ mine: ClientState, since base: ClientState) throws -> ClientState {
        try whileLocked {
            let merged = try merged(mine, since: base).merged
            try write(merged, to: state)
            return merged
        }
    }

    /// The settings on disk now with this run's changes since `base`, and the settings on disk (`base`
    /// when there is no file): hold the lock (`whileLocked`). The file is read once.
    func merged(_ mine: ClientSettings, since base: ClientSettings) throws -> (merged: ClientSettings, disk: ClientSettings) {
        guard POSIX.exists(config) else { return (mine, base) }
        let bytes = try Self.read(config)
        let disk = try decodeSettings(bytes)
        var merged = try Self.merge(base: base, mine: mine, disk: disk)
        // A file without a client id reads with a new random one each time: keep this run's.
        if (try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])?[ClientSettings.CodingKeys.clientID.rawValue] == nil {
            merged.clientID = mine.clientID
        }
        return (merged, disk)
    }

    /// The state on disk now with this run's changes since `base`, and the state on disk (`base` when
    /// there is no file): hold the lock (`whileLocked`).
    func merged(_ mine: ClientState, since base: ClientState) throws -> (merged: ClientState, disk: ClientState) {
        let disk = POSIX.exists(state) ? try loadState() : base
        var merged = try Self.merge(base: base, mine: mine, disk: disk)
        merged.highestManifestVersion = disk.highestManifestVersion.merging(mine.highestManifestVersion, uniquingKeysWith: max)
        merged.failedDeltas = disk.failedDeltas.merging(mine.failedDeltas) { _, ours in ours }
        let loaded = base.unsentReports ?? [], kept = mine.unsentReports ?? []
        let sent = loaded.filter { !kept.contains($0) }, queued = kept.filter { !loaded.contains($0) }
        let reports = (disk.unsentReports ?? []).filter { !sent.contains($0) } + queued
        merged.unsentReports = reports.isEmpty ? nil : Array(reports.suffix(100))
        return (merged, disk)
    }

    /// `disk` with each top-level field in which `mine` differs from `base` taken from `mine`.
    static func merge<T: Codable>(base: T, mine: T, disk: T) throws -> T {
        func fields(_ value: T) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: try encoder().encode(value)) as? [String: Any] ?? [:]
        }
        func same(_ a: Any?, _ b: Any?) throws -> Bool {
            guard let a, let b else { return a == nil && b == nil }
            let options: JSONSerialization.WritingOptions = [.sortedKeys, .fragmentsAllowed]
            return try JSONSerialization.data(withJSONObject: a, options: options) == JSONSerialization.data(withJSONObject: b, options: options)
        }
        let b = try fields(base), m = try fields(mine)
        var out = try fields(disk)
        for key in Set(b.keys).union(m.keys) where try !same(b[key], m[key]) {
            out[key] = m[key]
        }
        return try decoder().decode(T.self, from: JSONSerialization.data(withJSONObject: out))
    }

    /// Runs `body` holding the lock file beside the settings (flock). Held for a read and write, for a
    /// rollback of the installed tree (which hashes it), or for the apply of an install (so that two
    /// runs that found the same update install it once): waited on for up to `lockPatience` seconds
    /// (2 minutes unless a test shortens it), then `ClientError.busy`.
    func whileLocked<R>(_ body: () throws -> R) throws -> R {
        let dir = POSIX.directory(of: config)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        guard let lock = try FileLock(path: dir + "/.lock", patience: lockPatience) else {
            throw ClientError.busy("\(dir)/.lock is held by another run of phoenix-update for over \(Int(lockPatience)) s")
        }
        defer { lock.release() }
        return try body()
    }

    /// The state, or a new one when there is no file. A file that does not decode is refused, not
    /// read as new: it holds the replay floor (a new state would accept any older signed manifest
    /// again) and the pending update's deadline and rollback target. Saves are atomic, so only
    /// something outside the client (an edit, a disk fault) makes such a file.
    public func loadState() throws -> ClientState {
        guard POSIX.exists(state) else { return ClientState() }
        let bytes = try Self.read(state)
        do {
            return try Self.decoder().decode(ClientState.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw ClientError.badFile(path: state, detail: "not a valid state file (\(Self.describe(error, in: bytes))); "
                + "it holds the replay floor and any pending update, so it is not reset silently: "
                + "move it aside to start over with a new state")
        }
    }

    /// Where a decoding error of `bytes` is and what it is, in one line. JSONDecoder says only that the
    /// text is not JSON; JSONSerialization says where.
    static func describe(_ error: DecodingError, in bytes: [UInt8]) -> String {
        func at(_ context: DecodingError.Context) -> String {
            if context.codingPath.isEmpty, case .dataCorrupted = error {
                do {
                    _ = try JSONSerialization.jsonObject(with: Data(bytes), options: .fragmentsAllowed)
                } catch {
                    return "not JSON: " + ((error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)")
                }
            }
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? "." + $0.stringValue }.joined()
            return (path.isEmpty ? "" : "at \(path.hasPrefix(".") ? String(path.dropFirst()) : path): ") + context.debugDescription
        }
        switch error {
        case .keyNotFound(let key, let c):
            let inside = c.codingPath.map(\.stringValue).joined(separator: ".")
            return "the field \(inside.isEmpty ? "" : inside + ".")\(key.stringValue) is missing"
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): return at(c)
        @unknown default: return "\(error)"
        }
    }

    public func save(_ s: ClientState) throws {
        try write(s, to: state)
    }

    /// Reads what `encoder()` writes.
    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }

    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.dateEncodingStrategy = .iso8601
        return e
    }

    func write<T: Encodable>(_ value: T, to path: String) throws {
        try FileManager.default.createDirectory(atPath: POSIX.directory(of: path), withIntermediateDirectories: true)
        let data = try Self.encoder().encode(value)
        let w = try AtomicFileWriter(destination: path, mode: 0o600)
        try data.withUnsafeBytes { try w.write($0) }
        try w.commit()
    }
}
