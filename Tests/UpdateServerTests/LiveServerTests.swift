import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PatchFormat
import Patcher
import Testing
import TestSupport
import TreeIO
import UpdateModels
import UpdateServer

/// A real server on 127.0.0.1 and a real HTTP client (AsyncHTTPClient): the whole path a client takes.
@Suite(.serialized) struct LiveServerTests {
    static func get(_ url: String, range: String? = nil) async throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        var request = HTTPClientRequest(url: url)
        if let range { request.headers.add(name: "Range", value: range) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        var body = [UInt8]()
        for try await chunk in response.body { body.append(contentsOf: chunk.readableBytesView) }
        var headers: [String: String] = [:]
        for h in response.headers { headers[h.name.lowercased()] = h.value }
        return (Int(response.status.code), headers, body)
    }

    /// Checks from `installed`, downloads what the server offers (in two ranged halves, as a resumed
    /// download would), verifies it against the signed manifest, and applies it in place.
    static func update(_ install: String, from installed: String, base: String, platform: String, channel: String,
                       key: Ed25519.PublicKey) async throws -> CheckResponse {
        let r = try await get("\(base)/api/version/check?current_version=\(installed)&platform=\(platform)&channel=\(channel)")
        #expect(r.status == 200)
        let check = try WireJSON.decoder().decode(CheckResponse.self, from: Data(r.body))
        let manifest = try Manifest.decode(try check.manifest.verifiedPayload(trusting: [key]))
        #expect(manifest.expires > Date())
        guard check.updateAvailable, let url = check.downloadURL, let size = check.size, let sha = check.sha256 else { return check }
        // The offer must be in the signed manifest, with the same size and hash.
        let release = try #require(manifest.releases.first { $0.version == check.latestVersion })
        if check.kind == "delta" {
            let d = try #require(release.deltas.first { $0.from == check.fromVersion })
            #expect(d.size == size && d.sha256 == sha && d.url == url)
        } else {
            #expect(release.full.size == size && release.full.sha256 == sha && release.full.url == url)
        }
        let half = size / 2
        let first = try await get(base + url, range: "bytes=0-\(half - 1)")
        #expect(first.status == 206)
        let rest = try await get(base + url, range: "bytes=\(half)-")
        #expect(rest.status == 206)
        #expect(rest.headers["content-range"] == "bytes \(half)-\(size - 1)/\(size)")
        let whole = try await get(base + url)
        #expect(whole.status == 200 && whole.headers["etag"] == "\"\(sha)\"")
        let bytes = first.body + rest.body
        #expect(bytes == whole.body)
        #expect(UInt64(bytes.count) == size)
        #expect(Hex.encode(SHA256Hasher.hash(bytes)) == sha)
        let dir = try TemporaryDirectory()
        try dir.write("package", bytes)
        let result = try BundleApplier.apply(directory: install, bundlePath: dir.file("package"))
        #expect(result.newDigest == release.treeDigest)
        return check
    }

    @Test func clientsUpdateByDeltaAndFullOverRealHTTP() async throws {
        let f = try ServerFixture()
        var c = f.service.configuration
        c.port = 0
        let app = buildApplication(service: f.service)
        try await app.test(.live) { client in
            let base = "http://127.0.0.1:\(client.port!)"
            let p = ServerFixture.platform
            // 1.0.1 -> 1.1.0 would be the delta on the 1.x line, but 2.0.0 is newer: a major jump, full.
            let install = f.dir.file("installed-app")
            try TreeSpec.copy(f.trees["1.0.1"]!, install)
            let c1 = try await Self.update(install, from: "1.0.1", base: base, platform: p, channel: "stable", key: f.publicKey)
            #expect(c1.kind == "full" && c1.latestVersion?.description == "2.0.0")
            #expect(try TreeSpec.digest(install) == f.digest("2.0.0"))
            // On beta, 2.0.0 -> 2.1.0-beta.1 by delta.
            let c2 = try await Self.update(install, from: "2.0.0", base: base, platform: p, channel: "beta", key: f.publicKey)
            #expect(c2.kind == "delta")
            #expect(try TreeSpec.digest(install) == f.digest("2.1.0-beta.1"))
            let c3 = try await Self.update(install, from: "2.1.0-beta.1", base: base, platform: p, channel: "beta", key: f.publicKey)
            #expect(!c3.updateAvailable)
            // The static export carries the same signed manifest.
            let staticEnvelope = try WireJSON.decoder().decode(
                SignedEnvelope.self, from: Data(contentsOf: URL(fileURLWithPath: f.service.staticDirectory + "/manifest/\(p)/stable.json")))
            #expect(try Manifest.decode(try staticEnvelope.verifiedPayload(trusting: [f.publicKey])).releases.count == 4)
        }
    }

    @Test func deltaAlongTheSameMajorLine() async throws {
        // Only the 1.x releases: 1.0.0 -> 1.0.1 -> 1.1.0 by deltas.
        let f = try ServerFixture(publish: false)
        for v in ["1.0.0", "1.0.1", "1.1.0"] {
            _ = try f.service.publish(.init(platform: "desktop", version: v), bundleDirectory: f.trees[v]!)
        }
        f.service.runPendingJobs()
        let app = buildApplication(service: f.service)
        try await app.test(.live) { client in
            let base = "http://127.0.0.1:\(client.port!)"
            let install = f.dir.file("app")
            try TreeSpec.copy(f.trees["1.0.0"]!, install)
            // 1.0.0 -> 1.1.0: a delta from exactly 1.0.0 exists and is small.
            let c = try await Self.update(install, from: "1.0.0", base: base, platform: "desktop", channel: "stable", key: f.publicKey)
            #expect(c.kind == "delta" && c.latestVersion?.description == "1.1.0")
            #expect(try TreeSpec.digest(install) == f.digest("1.1.0"))
        }
    }

    /// Opt-in (PHOENIX_CORPUS): the Django release series from ../shared/corpus (5.2.16 -> 5.2.19,
    /// 5.1.15, 4.2.27): publish all, then update from each version and compare trees.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["PHOENIX_CORPUS"] != nil))
    func djangoSeries() async throws {
        let corpus = ProcessInfo.processInfo.environment["PHOENIX_CORPUS"]! + "/series/django"
        let f = try ServerFixture(publish: false)
        let versions = ["4.2.27", "5.1.15", "5.2.16", "5.2.17", "5.2.18", "5.2.19"]
        for v in versions {
            _ = try f.service.publish(.init(platform: "django", version: v), bundleDirectory: corpus + "/" + v)
        }
        f.service.runPendingJobs()
        let app = buildApplication(service: f.service)
        try await app.test(.live) { client in
            let base = "http://127.0.0.1:\(client.port!)"
            for v in versions.dropLast() {
                let install = f.dir.file("django-\(v)")
                try TreeSpec.copy(corpus + "/" + v, install)
                let c = try await Self.update(install, from: v, base: base, platform: "django", channel: "stable", key: f.publicKey)
                print("django \(v) -> 5.2.19: \(c.kind ?? "none"), \(c.size ?? 0) bytes")
                #expect(c.kind == (v.hasPrefix("5.") ? "delta" : "full"), "same major: delta; 4.x -> 5.x: full")
                #expect(try TreeSpec.digest(install) == TreeSpec.digest(corpus + "/5.2.19"))
            }
        }
    }
}
