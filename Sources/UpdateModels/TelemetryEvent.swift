import Foundation

/// One outcome a client reports (`POST /api/telemetry`). No personal data: the client id is random.
public struct TelemetryEvent: Codable, Sendable, Equatable {
    public enum Stage: String, Codable, Sendable, CaseIterable { case check, download, install, rollback }

    public var clientID: String
    public var platform: String
    public var channel: String
    public var stage: Stage
    /// `success`, or a failure category: signature, expired, rollback, checksum, delta_failed, disk_full,
    /// io, network, server, health, ...
    public var outcome: String
    public var fromVersion: String
    public var toVersion: String?
    /// `delta` or `full`.
    public var kind: String?
    public var durationMs: Int
    public var bytes: UInt64?
    /// The A/B variant the client was assigned (`experiment/variant`), if any.
    public var variant: String?

    public init(clientID: String, platform: String, channel: String, stage: Stage, outcome: String, fromVersion: String,
                toVersion: String?, kind: String?, durationMs: Int, bytes: UInt64? = nil, variant: String? = nil) {
        self.clientID = clientID
        self.platform = platform
        self.channel = channel
        self.stage = stage
        self.outcome = outcome
        self.fromVersion = fromVersion
        self.toVersion = toVersion
        self.kind = kind
        self.durationMs = durationMs
        self.bytes = bytes
        self.variant = variant
    }

    enum CodingKeys: String, CodingKey {
        case platform, channel, stage, outcome, kind, bytes, variant
        case clientID = "client_id", fromVersion = "from_version", toVersion = "to_version", durationMs = "duration_ms"
    }

    /// Checks every field's shape and length (the server stores nothing it has not checked).
    public func validate() throws {
        func check(_ ok: Bool, _ what: String) throws {
            if !ok { throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: what)) }
        }
        let token: (String, Int) -> Bool = { s, max in
            !s.isEmpty && s.count <= max && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.+".contains($0)) }
        }
        try check(token(clientID, 64), "client_id must be 1-64 characters of [A-Za-z0-9-_.+]")
        try check(token(platform, 64), "platform is invalid")
        try check(channel == "stable" || channel == "beta", "channel must be stable or beta")
        try check(token(outcome, 32), "outcome must be success or a short failure category")
        try check((try? SemanticVersion(parsing: fromVersion)) != nil, "from_version is not a semantic version")
        if let t = toVersion { try check((try? SemanticVersion(parsing: t)) != nil, "to_version is not a semantic version") }
        if let k = kind { try check(k == "delta" || k == "full", "kind must be delta or full") }
        if let v = variant {
            // Exactly one "/" between two tokens: the pieces are checked with the empty ones kept, or
            // "/", "a/" and "/b" would pass as nothing but valid tokens.
            let parts = v.split(separator: "/", omittingEmptySubsequences: false)
            try check(v.count <= 65 && parts.count == 2 && parts.allSatisfy { token(String($0), 32) },
                      "variant must be EXPERIMENT/VARIANT")
        }
        try check(durationMs >= 0 && durationMs <= 86_400_000, "duration_ms must be 0...86400000")
        if let b = bytes { try check(b <= Self.maxBytes, "bytes must be 0...\(Self.maxBytes)") }
    }

    /// The largest `bytes` a report may carry (1 TiB, far above any package): the dashboard adds them
    /// up, and sums of anything a client may send must stay far from 64 bits.
    public static let maxBytes: UInt64 = 1 << 40
}
