import Foundation

/// The signed release manifest for one platform and channel (the payload of a `SignedEnvelope`).
/// Keys are snake_case so that clients in any language read it directly.
public struct Manifest: Codable, Sendable, Equatable {
    public static let typeName = "phoenix-manifest"

    public var type: String
    /// Increases every time the catalog changes; clients refuse a manifest older than one they saw.
    public var manifestVersion: UInt64
    public var platform: String
    public var channel: String
    public var generatedAt: Date
    /// Clients refuse the manifest after this time (freeze protection).
    public var expires: Date
    public var releases: [Release]

    public struct Package: Codable, Sendable, Equatable {
        public var size: UInt64
        public var sha256: String
        /// Where to download it: an absolute URL (with `--base-url`) or a path on the update server.
        public var url: String

        public init(size: UInt64, sha256: String, url: String) {
            self.size = size
            self.sha256 = sha256
            self.url = url
        }
    }

    public struct Delta: Codable, Sendable, Equatable {
        public var from: SemanticVersion
        public var size: UInt64
        public var sha256: String
        public var url: String
        /// Tree digest of the installation the delta applies to.
        public var fromTreeDigest: String

        public init(from: SemanticVersion, size: UInt64, sha256: String, url: String, fromTreeDigest: String) {
            self.from = from
            self.size = size
            self.sha256 = sha256
            self.url = url
            self.fromTreeDigest = fromTreeDigest
        }

        enum CodingKeys: String, CodingKey {
            case from, size, sha256, url
            case fromTreeDigest = "from_tree_digest"
        }
    }

    public struct Release: Codable, Sendable, Equatable {
        public var version: SemanticVersion
        public var channel: String
        public var published: Date
        /// Plain text or Markdown; never HTML to render.
        public var changelog: String
        /// Tree digest of the installed release.
        public var treeDigest: String
        public var full: Package
        public var deltas: [Delta]
        public var critical: Bool

        public init(version: SemanticVersion, channel: String, published: Date, changelog: String, treeDigest: String,
                    full: Package, deltas: [Delta], critical: Bool = false) {
            self.version = version
            self.channel = channel
            self.published = published
            self.changelog = changelog
            self.treeDigest = treeDigest
            self.full = full
            self.deltas = deltas
            self.critical = critical
        }

        enum CodingKeys: String, CodingKey {
            case version, channel, published, changelog, full, deltas, critical
            case treeDigest = "tree_digest"
        }
    }

    public init(manifestVersion: UInt64, platform: String, channel: String, generatedAt: Date, expires: Date, releases: [Release]) {
        self.type = Self.typeName
        self.manifestVersion = manifestVersion
        self.platform = platform
        self.channel = channel
        self.generatedAt = generatedAt
        self.expires = expires
        self.releases = releases
    }

    enum CodingKeys: String, CodingKey {
        case type, platform, channel, expires, releases
        case manifestVersion = "manifest_version"
        case generatedAt = "generated_at"
    }

    /// Canonical bytes: sorted keys, ISO 8601 dates, no insignificant whitespace.
    public func encoded() throws -> [UInt8] {
        Array(try WireJSON.encoder().encode(self))
    }

    public static func decode(_ bytes: [UInt8]) throws -> Manifest {
        let m = try WireJSON.decoder().decode(Manifest.self, from: Data(bytes))
        guard m.type == typeName else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "not a \(typeName): \(m.type)"))
        }
        return m
    }
}

/// JSON settings shared by server and client.
public enum WireJSON {
    public static func encoder(pretty: Bool = false) -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return e
    }

    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }
}

/// The answer to `GET /api/version/check`.
public struct CheckResponse: Codable, Sendable, Equatable {
    public var updateAvailable: Bool
    public var currentVersion: SemanticVersion
    public var latestVersion: SemanticVersion?
    /// `delta` or `full` (nil when no update is available).
    public var kind: String?
    public var fromVersion: SemanticVersion?
    public var downloadURL: String?
    public var size: UInt64?
    public var sha256: String?
    public var changelog: String?
    public var critical: Bool?
    /// The signed manifest that lists (and so authorises) the offered package.
    public var manifest: SignedEnvelope
    /// The client's A/B variant when the server runs an experiment (not signed: it only tunes how
    /// often the client checks and how the app announces an update).
    public var variant: AssignedVariant?

    public init(updateAvailable: Bool, currentVersion: SemanticVersion, latestVersion: SemanticVersion?, kind: String?,
                fromVersion: SemanticVersion?, downloadURL: String?, size: UInt64?, sha256: String?, changelog: String?,
                critical: Bool?, manifest: SignedEnvelope, variant: AssignedVariant? = nil) {
        self.updateAvailable = updateAvailable
        self.currentVersion = currentVersion
        self.latestVersion = latestVersion
        self.kind = kind
        self.fromVersion = fromVersion
        self.downloadURL = downloadURL
        self.size = size
        self.sha256 = sha256
        self.changelog = changelog
        self.critical = critical
        self.manifest = manifest
        self.variant = variant
    }

    enum CodingKeys: String, CodingKey {
        case kind, size, sha256, changelog, critical, manifest, variant
        case updateAvailable = "update_available"
        case currentVersion = "current_version"
        case latestVersion = "latest_version"
        case fromVersion = "from_version"
        case downloadURL = "download_url"
    }
}

/// The JSON error body of every failed request: `{"error": {"code": ..., "message": ...}}`.
public struct ErrorBody: Codable, Sendable, Equatable {
    public struct Detail: Codable, Sendable, Equatable {
        public var code: String
        public var message: String
    }
    public var error: Detail

    public init(code: String, message: String) {
        error = Detail(code: code, message: message)
    }
}
