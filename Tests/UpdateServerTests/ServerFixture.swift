import Foundation
import Logging
import PatchFormat
import TestSupport
import TreeIO
import UpdateModels
import UpdateServer

/// A data directory with a signing key and a published release series of generated app trees:
/// 1.0.0 -> 1.0.1 (patch) -> 1.1.0 (minor) -> 2.0.0 (major), and 2.1.0-beta.1 on the beta channel.
final class ServerFixture: @unchecked Sendable {
    let dir: TemporaryDirectory
    let key: Ed25519.PrivateKey
    let service: UpdateService
    let trees: [String: String]
    static let platform = "linux-x86_64"
    static let token = "s3cret-admin-token"

    /// `stages`: the rollout of every release after the first (default: everyone at once, so tests of
    /// other features see each release immediately).
    init(deltaThreshold: Double = 0.5, maxUpload: UInt64 = 64 << 20, publish: Bool = true, stages: [Int] = [100],
         configure: (inout ServerConfiguration) -> Void = { _ in }) throws {
        dir = try TemporaryDirectory()
        key = try Ed25519.PrivateKey.generate()
        let keyPath = dir.file("key.pem")
        try Array(key.pem.utf8).withUnsafeBytes { try POSIX.writeNewFile(keyPath, $0, mode: 0o600) }
        var c = ServerConfiguration(dataDirectory: dir.file("data"))
        c.keyPath = keyPath
        c.adminToken = Self.token
        c.port = 0
        c.deltaThreshold = deltaThreshold
        c.maxUploadBytes = maxUpload
        c.threads = 2
        c.rolloutStages = stages
        configure(&c)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        service = try UpdateService(configuration: c, logger: logger)

        var rng = SeededGenerator(seed: 2026)
        let core = TestData.structured(200_000, rng: &rng)
        let core2 = TestData.mutate(core, edits: 5, rng: &rng)
        let core3 = TestData.mutate(core2, edits: 20, rng: &rng)
        let core4 = rng.bytes(150_000)
        var t: [String: String] = [:]
        let src = dir.file("src")
        func tree(_ v: String, _ spec: [TreeSpec]) throws {
            let p = src + "/" + v
            try TreeSpec.build(p, spec)
            t[v] = p
        }
        try tree("1.0.0", [.file("lib/core.so", core, mode: 0o755), .text("VERSION", "1.0.0"), .text("res/a.txt", "a")])
        try tree("1.0.1", [.file("lib/core.so", core2, mode: 0o755), .text("VERSION", "1.0.1"), .text("res/a.txt", "a")])
        try tree("1.1.0", [.file("lib/core.so", core3, mode: 0o755), .text("VERSION", "1.1.0"), .text("res/a.txt", "a"),
                           .text("res/b.txt", "b")])
        try tree("2.0.0", [.file("lib/core.so", core4, mode: 0o755), .text("VERSION", "2.0.0"), .text("res/b.txt", "b")])
        try tree("2.1.0-beta.1", [.file("lib/core.so", TestData.mutate(core4, edits: 3, rng: &rng), mode: 0o755),
                                  .text("VERSION", "2.1.0-beta.1"), .text("res/b.txt", "b")])
        trees = t
        if publish {
            for v in ["1.0.0", "1.0.1", "1.1.0", "2.0.0"] {
                _ = try service.publish(.init(platform: Self.platform, version: v, changelog: "Release \(v)\n- fixes"), bundleDirectory: t[v]!)
            }
            _ = try service.publish(.init(platform: Self.platform, version: "2.1.0-beta.1", channel: "beta"), bundleDirectory: t["2.1.0-beta.1"]!)
            service.runPendingJobs()
        }
    }

    var publicKey: Ed25519.PublicKey { try! key.publicKey() }

    func digest(_ version: String) throws -> String { try TreeSpec.digest(trees[version]!) }
}
