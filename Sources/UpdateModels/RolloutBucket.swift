import Foundation
import PatchFormat

/// A client's place, 0..<10000, in the rollout of one release: a stable hash of its id and the release,
/// so a client inside 10% stays inside at 25%, and different releases reach different clients first.
public enum RolloutBucket {
    public static let count = 10_000

    public static func bucket(clientID: String, platform: String, version: String) -> Int {
        hash(Array("rollout\u{0}\(platform)\u{0}\(version)\u{0}\(clientID)".utf8))
    }

    /// A uniform value in 0..<count from SHA-256 of `bytes`.
    static func hash(_ bytes: [UInt8]) -> Int {
        Int(hash64(bytes) % UInt64(count))
    }

    /// The first 64 bits of SHA-256 of `bytes`.
    static func hash64(_ bytes: [UInt8]) -> UInt64 {
        let digest = SHA256Hasher.hash(bytes)
        var v: UInt64 = 0
        for b in digest.prefix(8) { v = v << 8 | UInt64(b) }
        return v
    }

    /// Bucket b is inside p% when b < p x count / 100.
    public static func isInside(bucket: Int, percent: Int) -> Bool {
        bucket < percent * (count / 100)
    }
}
