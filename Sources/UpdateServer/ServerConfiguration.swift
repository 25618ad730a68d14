import DiffEngine
import Foundation
import UpdateModels

/// Everything the server needs, from a JSON file, command-line flags and `PHOENIX_*` environment
/// variables (flags win over the environment, which wins over the file).
public struct ServerConfiguration: Codable, Sendable, Equatable {
    /// Holds `catalog.sqlite`, `packages/` (content-addressed), `trees/` (each release unpacked, for
    /// making deltas) and `static/` (manifests and packages for a CDN).
    public var dataDirectory: String
    public var host: String = "127.0.0.1"
    public var port: Int = 8080
    /// PEM Ed25519 private key used to sign manifests. Without one, manifests cannot be served.
    public var keyPath: String?
    /// Key rotation statements (JSON files from `phoenix-server rotate-key`) served with every manifest,
    /// so that clients pinned to an older key follow the rotation to `keyPath`.
    public var rotationPaths: [String] = []
    /// Bearer token for the admin routes. Without one, the admin routes are disabled.
    public var adminToken: String?
    /// Absolute base URL for download links in manifests (a CDN serving `static/`); nil = this server.
    public var baseURL: String?
    /// How many previous releases of a platform get a delta to a new release.
    public var deltaHistory: Int = 5
    /// A delta is offered only when smaller than this fraction of the full package.
    public var deltaThreshold: Double = 0.5
    /// How long a signed manifest stays valid.
    public var manifestLifetimeSeconds: Int = 7 * 24 * 3600
    /// Largest accepted upload (POST /api/releases).
    public var maxUploadBytes: UInt64 = 4 << 30
    /// Cores used to make deltas.
    public var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    /// Most memory one bundle's making may use (a publish's full bundle, or a delta), in bytes
    /// (`BundleOptions.memoryLimit`). nil: half of `make`'s default (a publish and a delta job may run
    /// at once), three quarters of the memory the server may use, RAM or its control group's cap.
    public var makeMemoryLimit: Int?

    /// Bundles every client can read, including those from before bundle flag bits 1 and 2
    /// (2026-11-30): every file in natural order with interleaved control (larger deltas of
    /// executables). Default false: the smaller coding of each stream. For a migration: a client that
    /// cannot read a delta falls back to the full package. It applies to bundles made from then on;
    /// deltas already made are not remade.
    public var compatibleDeltas = false

    /// The memory limit each bundle is made under.
    public var bundleMemoryLimit: Int? {
        makeMemoryLimit ?? UsableMemory.defaultMakeLimit().map { max($0 / 2, DiffEngine.minimumMemoryLimit) }
    }
    /// Phased rollout of each new release (percentages, ending at 100). A platform's first release is
    /// offered to everyone at once.
    public var rolloutStages: [Int] = Rollout.defaultStages
    /// Seconds between automatic stage advances; 0 = advance only by hand.
    public var rolloutIntervalSeconds: Int = 24 * 3600
    /// A rollout pauses itself when more than this fraction of installs fail...
    public var autoPauseThreshold: Double = 0.05
    /// ...with at least this many install reports...
    public var autoPauseMinimumReports: Int = 20
    /// ...within this sliding window.
    public var autoPauseWindowSeconds: Int = 24 * 3600
    /// Telemetry older than this is removed (hourly), and so leaves the dashboard's charts.
    public var telemetryRetentionDays: Int = 90
    /// An A/B experiment over check interval and notification style, or none.
    public var experiment: Experiment?
    /// PEM certificate chain (leaf first) and private key: with both, the server speaks HTTPS
    /// (TLS 1.2+, HTTP/2 by ALPN) and re-reads them on SIGHUP.
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?

    public var servesTLS: Bool { tlsCertificatePath != nil }
    /// A connection that has not sent a complete request head (or anything, between requests) for this
    /// long is closed: slow or stalled clients (slowloris) cannot hold connections open. Slow uploads
    /// and downloads in progress are not affected.
    public var idleTimeoutSeconds: Int = 30
    /// How long a catalog write waits for another process's lock before the request gets a 503 with
    /// Retry-After.
    public var catalogBusyTimeoutSeconds: Double = 10

    public var autoPause: AutoPausePolicy {
        AutoPausePolicy(threshold: autoPauseThreshold, minimumReports: autoPauseMinimumReports, windowSeconds: autoPauseWindowSeconds)
    }

    public init(dataDirectory: String) {
        self.dataDirectory = dataDirectory
    }

    enum CodingKeys: String, CodingKey {
        case dataDirectory = "data", host, port, keyPath = "key", rotationPaths = "rotations", adminToken = "admin_token", baseURL = "base_url"
        case deltaHistory = "delta_history", deltaThreshold = "delta_threshold"
        case manifestLifetimeSeconds = "manifest_lifetime_seconds", maxUploadBytes = "max_upload_bytes", threads
        case makeMemoryLimit = "make_memory_limit", compatibleDeltas = "compatible_deltas"
        case rolloutStages = "rollout_stages", rolloutIntervalSeconds = "rollout_interval_seconds"
        case autoPauseThreshold = "auto_pause_threshold", autoPauseMinimumReports = "auto_pause_minimum_reports"
        case autoPauseWindowSeconds = "auto_pause_window_seconds", experiment
        case telemetryRetentionDays = "telemetry_retention_days"
        case tlsCertificatePath = "tls_cert", tlsKeyPath = "tls_key", idleTimeoutSeconds = "idle_timeout_seconds"
        case catalogBusyTimeoutSeconds = "catalog_busy_timeout_seconds"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        dataDirectory = try c.decode(String.self, forKey: .dataDirectory)
        host = try c.decodeIfPresent(String.self, forKey: .host) ?? host
        port = try c.decodeIfPresent(Int.self, forKey: .port) ?? port
        keyPath = try c.decodeIfPresent(String.self, forKey: .keyPath)
        rotationPaths = try c.decodeIfPresent([String].self, forKey: .rotationPaths) ?? []
        adminToken = try c.decodeIfPresent(String.self, forKey: .adminToken)
        baseURL = try c.decodeIfPresent(String.self, forKey: .baseURL)
        deltaHistory = try c.decodeIfPresent(Int.self, forKey: .deltaHistory) ?? deltaHistory
        deltaThreshold = try c.decodeIfPresent(Double.self, forKey: .deltaThreshold) ?? deltaThreshold
        manifestLifetimeSeconds = try c.decodeIfPresent(Int.self, forKey: .manifestLifetimeSeconds) ?? manifestLifetimeSeconds
        maxUploadBytes = try c.decodeIfPresent(UInt64.self, forKey: .maxUploadBytes) ?? maxUploadBytes
        threads = try c.decodeIfPresent(Int.self, forKey: .threads) ?? threads
        makeMemoryLimit = try c.decodeIfPresent(Int.self, forKey: .makeMemoryLimit)
        compatibleDeltas = try c.decodeIfPresent(Bool.self, forKey: .compatibleDeltas) ?? compatibleDeltas
        rolloutStages = try c.decodeIfPresent([Int].self, forKey: .rolloutStages) ?? rolloutStages
        rolloutIntervalSeconds = try c.decodeIfPresent(Int.self, forKey: .rolloutIntervalSeconds) ?? rolloutIntervalSeconds
        autoPauseThreshold = try c.decodeIfPresent(Double.self, forKey: .autoPauseThreshold) ?? autoPauseThreshold
        autoPauseMinimumReports = try c.decodeIfPresent(Int.self, forKey: .autoPauseMinimumReports) ?? autoPauseMinimumReports
        autoPauseWindowSeconds = try c.decodeIfPresent(Int.self, forKey: .autoPauseWindowSeconds) ?? autoPauseWindowSeconds
        telemetryRetentionDays = try c.decodeIfPresent(Int.self, forKey: .telemetryRetentionDays) ?? telemetryRetentionDays
        experiment = try c.decodeIfPresent(Experiment.self, forKey: .experiment)
        tlsCertificatePath = try c.decodeIfPresent(String.self, forKey: .tlsCertificatePath)
        tlsKeyPath = try c.decodeIfPresent(String.self, forKey: .tlsKeyPath)
        idleTimeoutSeconds = try c.decodeIfPresent(Int.self, forKey: .idleTimeoutSeconds) ?? idleTimeoutSeconds
        catalogBusyTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .catalogBusyTimeoutSeconds) ?? catalogBusyTimeoutSeconds
    }

    /// Reads a JSON configuration file.
    public static func load(file: String) throws -> ServerConfiguration {
        try JSONDecoder().decode(ServerConfiguration.self, from: Data(contentsOf: URL(fileURLWithPath: file)))
    }

    /// Applies `PHOENIX_DATA`, `PHOENIX_HOST`, `PHOENIX_PORT`, `PHOENIX_KEY`, `PHOENIX_ADMIN_TOKEN`,
    /// `PHOENIX_BASE_URL`, `PHOENIX_DELTA_HISTORY`, `PHOENIX_DELTA_THRESHOLD`, `PHOENIX_TLS_CERT`, `PHOENIX_TLS_KEY`.
    public mutating func applyEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) {
        if let v = env["PHOENIX_DATA"] { dataDirectory = v }
        if let v = env["PHOENIX_HOST"] { host = v }
        if let v = env["PHOENIX_PORT"].flatMap(Int.init) { port = v }
        if let v = env["PHOENIX_KEY"] { keyPath = v }
        if let v = env["PHOENIX_ADMIN_TOKEN"] { adminToken = v }
        if let v = env["PHOENIX_BASE_URL"] { baseURL = v }
        if let v = env["PHOENIX_DELTA_HISTORY"].flatMap(Int.init) { deltaHistory = v }
        if let v = env["PHOENIX_DELTA_THRESHOLD"].flatMap(Double.init) { deltaThreshold = v }
        if let v = env["PHOENIX_TLS_CERT"] { tlsCertificatePath = v }
        if let v = env["PHOENIX_TLS_KEY"] { tlsKeyPath = v }
    }

    public func validate() throws {
        guard (1...65535).contains(port) || port == 0 else { throw ServerError.badConfiguration("port \(port) is out of range") }
        if let m = makeMemoryLimit, m < DiffEngine.minimumMemoryLimit {
            throw ServerError.badConfiguration("make_memory_limit must be at least \(DiffEngine.minimumMemoryLimit) bytes, got \(m)")
        }
        guard deltaHistory >= 0 && deltaHistory <= 100 else { throw ServerError.badConfiguration("delta_history must be 0...100") }
        guard deltaThreshold > 0 && deltaThreshold <= 1 else { throw ServerError.badConfiguration("delta_threshold must be in (0, 1]") }
        guard manifestLifetimeSeconds >= 60 else { throw ServerError.badConfiguration("manifest_lifetime_seconds must be at least 60") }
        if let b = baseURL, !(b.hasPrefix("https://") || b.hasPrefix("http://")) {
            throw ServerError.badConfiguration("base_url must be an http(s) URL")
        }
        do { try Rollout.validate(stages: rolloutStages) } catch { throw ServerError.badConfiguration("rollout_stages: \(error)") }
        guard rolloutIntervalSeconds >= 0 else { throw ServerError.badConfiguration("rollout_interval_seconds must be 0 (by hand) or more") }
        guard autoPauseThreshold > 0 && autoPauseThreshold < 1 else { throw ServerError.badConfiguration("auto_pause_threshold must be in (0, 1)") }
        guard autoPauseMinimumReports >= 1 else { throw ServerError.badConfiguration("auto_pause_minimum_reports must be at least 1") }
        guard autoPauseWindowSeconds >= 60 else { throw ServerError.badConfiguration("auto_pause_window_seconds must be at least 60") }
        guard telemetryRetentionDays >= 1 && telemetryRetentionDays <= 36500,
              telemetryRetentionDays * 86400 >= autoPauseWindowSeconds else {
            throw ServerError.badConfiguration("telemetry_retention_days must be 1...36500 and cover auto_pause_window_seconds")
        }
        guard catalogBusyTimeoutSeconds >= 0 && catalogBusyTimeoutSeconds <= 600 else {
            throw ServerError.badConfiguration("catalog_busy_timeout_seconds must be 0...600")
        }
        guard (1...3600).contains(idleTimeoutSeconds) else { throw ServerError.badConfiguration("idle_timeout_seconds must be 1...3600") }
        guard (tlsCertificatePath == nil) == (tlsKeyPath == nil) else {
            throw ServerError.badConfiguration("TLS needs both a certificate (tls_cert, --tls-cert) and a key (tls_key, --tls-key)")
        }
        if let e = experiment {
            do { try e.validate() } catch { throw ServerError.badConfiguration("\(error)") }
        }
    }
}
