import Foundation
import UpdateModels

/// An update the server offered, after every check against the signed manifest passed.
public struct VerifiedOffer: Sendable, Equatable, Codable {
    public struct Package: Sendable, Equatable, Codable {
        public var url: String
        public var size: UInt64
        public var sha256: String
    }

    public var version: String
    public var kind: String
    public var fromVersion: String?
    public var package: Package
    /// The full bundle of the same release: the fallback when a delta fails.
    public var full: Package
    public var fromTreeDigest: String?
    public var treeDigest: String
    public var changelog: String
    public var critical: Bool
    public var manifestVersion: UInt64
}

/// Checks a check response against the pinned key and the client's memory, failing closed:
/// signature, expiry, manifest version not older than the highest seen, platform and channel, no
/// downgrade, and the offered package listed in the signed manifest with the same size and hash.
public struct OfferVerifier: Sendable {
    public var trustedKeys: [Ed25519.PublicKey]
    public var platform: String
    public var channel: String
    public var installed: SemanticVersion
    public var highestManifestVersion: UInt64
    public var now: Date

    public init(trustedKeys: [Ed25519.PublicKey], platform: String, channel: String, installed: SemanticVersion,
                highestManifestVersion: UInt64, now: Date = Date()) {
        self.trustedKeys = trustedKeys
        self.platform = platform
        self.channel = channel
        self.installed = installed
        self.highestManifestVersion = highestManifestVersion
        self.now = now
    }

    func fail(_ category: String, _ detail: String) -> ClientError { .verification(category: category, detail: detail) }

    /// Verifies the manifest inside `check`; returns it.
    public func verifiedManifest(_ envelope: SignedEnvelope) throws -> Manifest {
        try verifiedManifestAndKey(envelope).manifest
    }

    /// The manifest and the key that signed it: a pinned key, or one reached from a pinned key through
    /// key rotation statements that the pinned key (or a key it rotated to) signed.
    public func verifiedManifestAndKey(_ envelope: SignedEnvelope) throws -> (manifest: Manifest, key: Ed25519.PublicKey) {
        let payload: [UInt8]
        let key: Ed25519.PublicKey
        let keys = KeyRotation.extend(trusted: trustedKeys, with: envelope.rotations ?? [])
        do { (payload, key) = try envelope.verified(trusting: keys) } catch {
            throw fail("signature", "\(error)")
        }
        let m: Manifest
        do { m = try Manifest.decode(payload) } catch { throw fail("signature", "the signed manifest does not parse: \(error)") }
        guard m.expires > now else { throw fail("expired", "the manifest expired at \(m.expires)") }
        guard m.manifestVersion >= highestManifestVersion else {
            throw fail("rollback", "manifest version \(m.manifestVersion) is older than \(highestManifestVersion), already seen (a replay)")
        }
        guard m.platform == platform else { throw fail("wrong_platform", "the manifest is for \(m.platform), not \(platform)") }
        guard m.channel == channel else { throw fail("wrong_channel", "the manifest is for channel \(m.channel), not \(channel)") }
        return (m, key)
    }

    /// The verified offer, or nil when the (verified) answer is "up to date".
    public func verify(_ check: CheckResponse) throws -> VerifiedOffer? {
        let m = try verifiedManifest(check.manifest)
        guard check.updateAvailable else { return nil }
        guard let latest = check.latestVersion, let kind = check.kind, let url = check.downloadURL, let size = check.size,
              let sha = check.sha256 else {
            throw fail("malformed", "the check response offers an update without version, kind, URL, size or hash")
        }
        guard latest > installed else { throw fail("downgrade", "offered \(latest), which is not newer than the installed \(installed)") }
        guard let release = m.releases.first(where: { $0.version == latest }) else {
            throw fail("unsigned", "\(latest) is not in the signed manifest")
        }
        if release.version.isPrerelease && channel != "beta" {
            throw fail("wrong_channel", "pre-release \(latest) offered on the \(channel) channel")
        }
        let full = VerifiedOffer.Package(url: release.full.url, size: release.full.size, sha256: release.full.sha256)
        switch kind {
        case "full":
            guard size == release.full.size, sha == release.full.sha256, url == release.full.url else {
                throw fail("unsigned", "the offered full package does not match the signed manifest")
            }
            return VerifiedOffer(version: latest.description, kind: kind, fromVersion: nil, package: full, full: full, fromTreeDigest: nil,
                                 treeDigest: release.treeDigest, changelog: release.changelog, critical: release.critical,
                                 manifestVersion: m.manifestVersion)
        case "delta":
            guard let from = check.fromVersion, from == installed,
                  let d = release.deltas.first(where: { $0.from == from }), d.size == size, d.sha256 == sha, d.url == url else {
                throw fail("unsigned", "the offered delta does not match a delta from \(installed) in the signed manifest")
            }
            return VerifiedOffer(version: latest.description, kind: kind, fromVersion: from.description,
                                 package: .init(url: url, size: size, sha256: sha), full: full, fromTreeDigest: d.fromTreeDigest,
                                 treeDigest: release.treeDigest, changelog: release.changelog, critical: release.critical,
                                 manifestVersion: m.manifestVersion)
        default:
            throw fail("malformed", "unknown package kind \"\(kind.prefix(20))\"")
        }
    }
}
