import Foundation
import Hummingbird
import HTTPTypes
import HummingbirdTesting
import PatchFormat
import Testing
import TestSupport
import TreeIO
import UpdateClient
import UpdateModels
// Testable for `Routes.respond` and `JSONErrorMiddleware` on a router of the test's own.
@testable import UpdateServer

/// An error no route expects.
private struct UnexpectedFailure: Error {}

@Suite(.serialized) struct RouteTests {
    static let fixture = try! ServerFixture()
    let f = RouteTests.fixture
    var app: some ApplicationProtocol { buildApplication(service: f.service) }

    func decode<T: Decodable>(_ type: T.Type, _ buffer: ByteBuffer) throws -> T {
        try WireJSON.decoder().decode(type, from: Data(buffer.readableBytesView))
    }

    func check(_ query: String) -> String { "/api/version/check?\(query)" }

    @Test func healthz() async throws {
        try await app.test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { r in
                #expect(r.status == .ok)
                #expect(String(buffer: r.body).contains("ok"))
            }
        }
    }

    @Test func checkFollowsThePolicy() async throws {
        let p = ServerFixture.platform
        try await app.test(.router) { client in
            // Patch-level client on 1.1.0's line: latest stable is 2.0.0, a major jump: full.
            try await client.execute(uri: check("current_version=1.1.0&platform=\(p)"), method: .get) { r in
                #expect(r.status == .ok)
                let c = try decode(CheckResponse.self, r.body)
                #expect(c.updateAvailable && c.kind == "full" && c.latestVersion?.description == "2.0.0")
                #expect(c.downloadURL == "/api/version/download?version=2.0.0&platform=\(p)")
            }
            try await client.execute(uri: check("current_version=2.0.0&platform=\(p)"), method: .get) { r in
                let c = try decode(CheckResponse.self, r.body)
                #expect(!c.updateAvailable && c.kind == nil)
            }
            try await client.execute(uri: check("current_version=2.0.0&platform=\(p)&channel=beta&client_id=abc"), method: .get) { r in
                let c = try decode(CheckResponse.self, r.body)
                #expect(c.kind == "delta" && c.fromVersion?.description == "2.0.0" && c.latestVersion?.description == "2.1.0-beta.1")
            }
            try await client.execute(uri: check("current_version=9.0.0&platform=\(p)"), method: .get) { r in
                let c = try decode(CheckResponse.self, r.body)
                #expect(!c.updateAvailable, "no downgrade")
            }
        }
    }

    /// With a history of one, a stable release after a pre-release still gets a delta from the last
    /// stable release: stable clients are on it, and the pre-release alone filled the window before.
    @Test func stableReleaseAfterPrereleaseGetsDeltaFromStable() throws {
        let f = try ServerFixture(configure: { $0.deltaHistory = 1 })
        let next = f.dir.file("src/2.1.0")
        try TreeSpec.build(next, [.file("lib/core.so", try POSIX.readFile(f.trees["2.1.0-beta.1"]! + "/lib/core.so"), mode: 0o755),
                                  .text("VERSION", "2.1.0"), .text("res/b.txt", "b")])
        _ = try f.service.publish(.init(platform: ServerFixture.platform, version: "2.1.0"), bundleDirectory: next)
        f.service.runPendingJobs()
        let into = try f.service.catalog.deltas(platform: ServerFixture.platform).filter { $0.toVersion == "2.1.0" }
        #expect(Set(into.map(\.fromVersion)) == ["2.0.0", "2.1.0-beta.1"])
        #expect(into.allSatisfy { $0.state == .ready })
        let c = try f.service.check(current: try SemanticVersion(parsing: "2.0.0"), platform: ServerFixture.platform, channel: .stable)
        #expect(c.kind == "delta" && c.fromVersion?.description == "2.0.0" && c.latestVersion?.description == "2.1.0")
    }

    /// Another process (a second service on the same data directory, as `phoenix-server publish`
    /// beside a running server) publishes while this one's last read of the catalog's revision is
    /// still taken as current: the offer, read from the catalog, must be in the manifest embedded
    /// with it, or the client refuses it as unsigned. (The revision is taken as current for a minute
    /// here, so that the publish always falls inside that window.)
    @Test func anOfferAnotherProcessPublishedIsInTheEmbeddedManifest() throws {
        try UpdateService.$revisionPoll.withValue(60) {
            let f = try ServerFixture(publish: false)
            let p = ServerFixture.platform
            for v in ["1.0.0", "1.0.1"] { _ = try f.service.publish(.init(platform: p, version: v), bundleDirectory: f.trees[v]!) }
            f.service.runPendingJobs()
            let installed = try SemanticVersion(parsing: "1.0.1")
            #expect(try !f.service.check(current: installed, platform: p, channel: .stable).updateAvailable)
            let other = try UpdateService(configuration: f.service.configuration)
            _ = try other.publish(.init(platform: p, version: "1.1.0"), bundleDirectory: f.trees["1.1.0"]!)
            other.runPendingJobs()
            let check = try f.service.check(current: installed, platform: p, channel: .stable)
            #expect(check.updateAvailable && check.latestVersion?.description == "1.1.0" && check.kind == "delta")
            let verifier = OfferVerifier(trustedKeys: [f.publicKey], platform: p, channel: "stable", installed: installed,
                                         highestManifestVersion: 0)
            let offer = try verifier.verify(check)
            #expect(offer?.version == "1.1.0" && offer?.fromVersion == "1.0.1")
        }
    }

    @Test func deltasAreMadeVerifiedAndListed() async throws {
        let deltas = try f.service.catalog.deltas(platform: ServerFixture.platform)
        let ready = Set(deltas.filter { $0.state == .ready }.map { "\($0.fromVersion)->\($0.toVersion)" })
        #expect(ready.contains("1.0.0->1.0.1"))
        #expect(ready.contains("1.0.1->1.1.0"))
        #expect(ready.contains("2.0.0->2.1.0-beta.1"))
        // 2.0.0's content is new: deltas into it are not smaller than half the full package.
        #expect(deltas.filter { $0.toVersion == "2.0.0" }.allSatisfy { $0.state == .dropped })
        try await app.test(.router) { client in
            try await client.execute(uri: "/api/releases/\(ServerFixture.platform)/1.1.0", method: .get) { r in
                #expect(r.status == .ok)
                let text = String(buffer: r.body)
                #expect(text.contains("\"state\":\"ready\""))
                #expect(text.contains("\"from_version\"") || text.contains("\"fromVersion\""))
            }
        }
    }

    @Test func manifestIsSignedAndComplete() async throws {
        let digest110 = try f.digest("1.1.0")
        try await app.test(.router) { client in
            try await client.execute(uri: "/api/manifest?platform=\(ServerFixture.platform)", method: .get) { r in
                #expect(r.status == .ok)
                let env = try decode(SignedEnvelope.self, r.body)
                let m = try Manifest.decode(try env.verifiedPayload(trusting: [f.publicKey]))
                #expect(m.platform == ServerFixture.platform && m.channel == "stable")
                #expect(m.releases.map(\.version.description) == ["1.0.0", "1.0.1", "1.1.0", "2.0.0"])
                #expect(m.expires > Date().addingTimeInterval(6 * 24 * 3600))
                let r110 = m.releases.first { $0.version.description == "1.1.0" }!
                #expect(r110.deltas.contains { $0.from.description == "1.0.1" })
                #expect(r110.changelog.hasPrefix("Release 1.1.0"))
                #expect(r110.treeDigest == digest110)
                // Signed by another key: refused.
                #expect(throws: SignedEnvelope.VerificationError.self) {
                    try env.verifiedPayload(trusting: [try Ed25519.PrivateKey.generate().publicKey()])
                }
            }
            try await client.execute(uri: "/api/manifest?platform=\(ServerFixture.platform)&channel=beta", method: .get) { r in
                let m = try Manifest.decode(try decode(SignedEnvelope.self, r.body).verifiedPayload(trusting: [f.publicKey]))
                #expect(m.releases.last?.version.description == "2.1.0-beta.1")
            }
        }
    }

    @Test func downloadsWithRangesHeadAndETag() async throws {
        let p = ServerFixture.platform
        let c = try f.service.check(current: try SemanticVersion(parsing: "1.0.1"), platform: p, channel: .stable)
        let full = try f.service.package(platform: p, version: try SemanticVersion(parsing: "2.0.0"), from: nil)
        let bytes = try POSIX.readFile(full.path)
        try await app.test(.router) { client in
            let uri = "/api/version/download?version=2.0.0&platform=\(p)"
            try await client.execute(uri: uri, method: .get) { r in
                #expect(r.status == .ok)
                #expect(r.headers[.contentLength] == "\(bytes.count)")
                #expect(r.headers[.acceptRanges] == "bytes")
                #expect(r.headers[.eTag] == "\"\(full.sha256)\"")
                #expect(Hex.encode(SHA256Hasher.hash(Array(r.body.readableBytesView))) == full.sha256)
            }
            try await client.execute(uri: uri, method: .get, headers: [.range: "bytes=100-199"]) { r in
                #expect(r.status == .partialContent)
                #expect(r.headers[.contentRange] == "bytes 100-199/\(bytes.count)")
                #expect(Array(r.body.readableBytesView) == Array(bytes[100..<200]))
            }
            try await client.execute(uri: uri, method: .get, headers: [.range: "bytes=-10"]) { r in
                #expect(r.status == .partialContent)
                #expect(Array(r.body.readableBytesView) == Array(bytes.suffix(10)))
            }
            try await client.execute(uri: uri, method: .get, headers: [.range: "bytes=\(bytes.count)-"]) { r in
                #expect(r.status == .rangeNotSatisfiable)
                #expect(r.headers[.contentRange] == "bytes */\(bytes.count)")
            }
            try await client.execute(uri: uri, method: .head) { r in
                #expect(r.status == .ok)
                #expect(r.headers[.contentLength] == "\(bytes.count)")
                #expect(r.body.readableBytes == 0)
            }
            // The delta a check offers is downloadable and matches its signed hash.
            try await client.execute(uri: c.downloadURL!, method: .get) { r in
                #expect(r.status == .ok)
                #expect(Hex.encode(SHA256Hasher.hash(Array(r.body.readableBytesView))) == c.sha256)
            }
        }
    }

    @Test func badRequestsGetJSONErrors() async throws {
        let p = ServerFixture.platform
        let cases: [(String, HTTPResponse.Status, String)] = [
            (check("platform=\(p)"), .badRequest, "missing query parameter current_version"),
            (check("current_version=1.0&platform=\(p)"), .badRequest, "invalid semantic version"),
            (check("current_version=01.0.0&platform=\(p)"), .badRequest, "leading zero"),
            (check("current_version=1.0.0&platform=nope"), .notFound, "unknown platform"),
            (check("current_version=1.0.0&platform=../etc"), .badRequest, "invalid platform"),
            (check("current_version=1.0.0&platform=\(p)&channel=nightly"), .badRequest, "invalid channel"),
            // An escape that is not one, in a value or a name: the parameter is named, not checked raw.
            (check("current_version=1.0.0&platform=\(p)&channel=beta%ZZ"), .badRequest, "query parameter \"channel\": invalid percent-encoding"),
            (check("current_version=1.0.0%2&platform=\(p)"), .badRequest, "query parameter \"current_version\": invalid percent-encoding"),
            (check("current%ZZversion=1.0.0&platform=\(p)"), .badRequest, "invalid percent-encoding"),
            ("/api/version/download?version=7.7.7&platform=\(p)", .notFound, "has no version 7.7.7"),
            ("/api/version/download?version=2.0.0&platform=\(p)&from=1.0.0", .notFound, "no delta from 1.0.0"),
            ("/api/manifest", .badRequest, "missing query parameter platform"),
        ]
        try await app.test(.router) { client in
            for (uri, status, text) in cases {
                try await client.execute(uri: uri, method: .get) { r in
                    #expect(r.status == status, "\(uri)")
                    let e = try decode(ErrorBody.self, r.body)
                    #expect(e.error.message.contains(text), "\(uri): \(e.error.message)")
                }
            }
        }
    }

    /// Path segments as clients that encode them send them (encodeURIComponent, Python's requests):
    /// `+` as %2B, `-` as %2D. Before, `1.1.0%2Bb1` was "not a semantic version".
    @Test func pathParametersArePercentDecoded() async throws {
        let p = ServerFixture.platform
        try await app.test(.router) { client in
            for uri in ["/api/releases/\(p)/1.1.0%2Bb1", "/api/releases/linux%2Dx86_64/1.1.0", "/api/releases/\(p)/1.1.0+b1"] {
                try await client.execute(uri: uri, method: .get) { r in
                    #expect(r.status == .ok, "\(uri): \(String(buffer: r.body))")
                    #expect(String(buffer: r.body).contains("\"version\":\"1.1.0\""), "\(uri)")
                }
            }
            // An escape that is not one is refused, on the admin routes too (nothing is changed).
            let bad: [(String, HTTPRequest.Method)] = [("/api/releases/\(p)/1.1.0%ZZ", .get), ("/api/releases/\(p)/1.1.0%2", .get),
                                                       ("/api/admin/rollouts/\(p)/1.1.0/%ZZ", .post)]
            for (uri, method) in bad {
                try await client.execute(uri: uri, method: method, headers: [.authorization: "Bearer \(ServerFixture.token)"]) { r in
                    #expect(r.status == .badRequest, "\(uri)")
                    let e = try decode(ErrorBody.self, r.body)
                    #expect(e.error.code == "bad_request" && e.error.message.contains("invalid percent-encoding"), "\(uri): \(e.error.message)")
                }
            }
        }
    }

    /// "/", "a/" and "/b" passed: the check split with empty pieces dropped.
    @Test func telemetryVariantNeedsBothHalves() async throws {
        try await app.test(.router) { client in
            for variant in ["/", "a/", "/b", "a/b/c", "a//b"] {
                let event = TelemetryEvent(clientID: "c1", platform: ServerFixture.platform, channel: "stable", stage: .check,
                                           outcome: "success", fromVersion: "1.0.0", toVersion: nil, kind: nil, durationMs: 5, variant: variant)
                let body = ByteBuffer(bytes: try WireJSON.encoder().encode(event))
                try await client.execute(uri: "/api/telemetry", method: .post, body: body) { r in
                    #expect(r.status == .badRequest, "\(variant)")
                    let e = try decode(ErrorBody.self, r.body)
                    #expect(e.error.code == "bad_request" && e.error.message.contains("variant must be EXPERIMENT/VARIANT"),
                            "\(variant): \(e.error.message)")
                }
            }
        }
    }

    /// Checks naming platforms that do not exist are answered 404 and leave no more than the cache's
    /// bound of rollouts behind, however many names are tried.
    @Test func checksForUnknownPlatformsAreBoundedInMemory() async throws {
        let limit = UpdateService.rolloutCacheLimit
        try await app.test(.router) { client in
            for i in 0..<(limit + 200) {
                try await client.execute(uri: check("current_version=1.0.0&platform=nowhere-\(i)"), method: .get) { r in
                    #expect(r.status == .notFound)
                }
            }
        }
        let cached = f.service.lock.withLock { f.service.rolloutCache.count }
        #expect(cached > 0 && cached <= limit, "\(cached) platforms' rollouts cached")
    }

    /// The scheme's name is case-insensitive (RFC 9110 11.1); the token is not.
    @Test func bearerSchemeIsCaseInsensitive() async throws {
        let uri = "/api/admin/rollouts?platform=\(ServerFixture.platform)"
        try await app.test(.router) { client in
            for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
                try await client.execute(uri: uri, method: .get, headers: [.authorization: "\(scheme) \(ServerFixture.token)"]) { r in
                    #expect(r.status == .ok, "\(scheme): \(String(buffer: r.body))")
                }
            }
            try await client.execute(uri: uri, method: .get, headers: [.authorization: "bearer \(ServerFixture.token.uppercased())"]) { r in
                #expect(r.status == .forbidden)
                let body = try decode(ErrorBody.self, r.body)
                #expect(body.error.code == "forbidden")
            }
            try await client.execute(uri: uri, method: .get, headers: [.authorization: "Basic \(ServerFixture.token)"]) { r in
                #expect(r.status == .unauthorized)
                let body = try decode(ErrorBody.self, r.body)
                #expect(body.error.code == "unauthorized")
            }
        }
    }

    /// A path no route has, and a method a path does not serve, get the JSON error body the README
    /// promises (Hummingbird's own 404 has an empty body); the download keeps its HEAD.
    @Test func unknownRoutesGetJSONErrors() async throws {
        let p = ServerFixture.platform
        try await app.test(.router) { client in
            let unknown: [(String, HTTPRequest.Method)] = [("/nope", .get), ("/api/releases/\(p)/1.1.0/extra", .get), ("/api", .post)]
            for (uri, method) in unknown {
                try await client.execute(uri: uri, method: method) { r in
                    #expect(r.status == .notFound, "\(method) \(uri)")
                    #expect(r.headers[.contentType]?.hasPrefix("application/json") == true, "\(uri)")
                    let e = try decode(ErrorBody.self, r.body)
                    #expect(e.error.code == "not_found" && e.error.message.contains(uri), "\(uri): \(e.error.message)")
                }
            }
            try await client.execute(uri: "/nope", method: .head) { r in
                #expect(r.status == .notFound && r.body.readableBytes == 0)
            }
            let wrongMethod: [(String, HTTPRequest.Method, String)] = [
                ("/healthz", .post, "GET, HEAD"),
                ("/api/releases?platform=\(p)", .delete, "GET, HEAD, POST"),
                ("/api/telemetry", .get, "POST"),
                ("/api/version/download?version=2.0.0&platform=\(p)", .put, "GET, HEAD"),
            ]
            for (uri, method, allow) in wrongMethod {
                try await client.execute(uri: uri, method: method) { r in
                    #expect(r.status == .methodNotAllowed, "\(method) \(uri)")
                    #expect(r.headers[.allow] == allow, "\(method) \(uri)")
                    let body = try decode(ErrorBody.self, r.body)
                    #expect(body.error.code == "method_not_allowed", "\(method) \(uri)")
                }
            }
            try await client.execute(uri: "/api/version/download?version=2.0.0&platform=\(p)", method: .head) { r in
                #expect(r.status == .ok && r.body.readableBytes == 0)
            }
            // HEAD wherever GET is served: the GET's status and headers, no body.
            for uri in ["/healthz", "/api/releases?platform=\(p)", "/api/manifest?platform=\(p)"] {
                var getLength: String? = nil
                try await client.execute(uri: uri, method: .get) { r in
                    #expect(r.status == .ok, "GET \(uri)")
                    getLength = r.headers[.contentLength] ?? "\(r.body.readableBytes)"
                }
                try await client.execute(uri: uri, method: .head) { r in
                    #expect(r.status == .ok && r.body.readableBytes == 0, "HEAD \(uri)")
                    #expect(r.headers[.contentLength] == getLength, "HEAD \(uri)")
                }
            }
            // Range is for GET: a HEAD with one describes the whole package.
            let size = try POSIX.readFile(try f.service.package(platform: p, version: try SemanticVersion(parsing: "2.0.0"), from: nil).path).count
            try await client.execute(uri: "/api/version/download?version=2.0.0&platform=\(p)", method: .head,
                                     headers: [.range: "bytes=0-9"]) { r in
                #expect(r.status == .ok && r.headers[.contentLength] == "\(size)" && r.headers[.contentRange] == nil)
            }
        }
    }

    /// RFC 9110 14.2: a Range header that is not a valid range is ignored (200, the whole file); a valid
    /// one that selects nothing is 416. Before, `bytes=-5-` was 416 and `bytes=99999999999999999999-`
    /// (a start past any file, too large for an Int) 200.
    @Test func malformedRangesAreIgnoredAndUnsatisfiableOnesRefused() async throws {
        let p = ServerFixture.platform
        let full = try f.service.package(platform: p, version: try SemanticVersion(parsing: "2.0.0"), from: nil)
        let size = try POSIX.readFile(full.path).count
        let uri = "/api/version/download?version=2.0.0&platform=\(p)"
        try await app.test(.router) { client in
            for header in ["bytes=-5-", "bytes=abc", "bytes=5-3", "bytes=-", "bytes=+5-", "bytes=5--3", "bytes=-+5", "items=0-1"] {
                try await client.execute(uri: uri, method: .get, headers: [.range: header]) { r in
                    #expect(r.status == .ok, "\(header)")
                    #expect(r.body.readableBytes == size, "\(header)")
                }
            }
            for header in ["bytes=99999999999999999999-", "bytes=99999999999999999999-99999999999999999999", "bytes=\(size)-\(size + 10)",
                           "bytes=-0"] {
                try await client.execute(uri: uri, method: .get, headers: [.range: header]) { r in
                    #expect(r.status == .rangeNotSatisfiable, "\(header)")
                    #expect(r.headers[.contentRange] == "bytes */\(size)", "\(header)")
                }
            }
            // An end too large for an Int is the end of the file; the unit's name is case-insensitive.
            try await client.execute(uri: uri, method: .get, headers: [.range: "Bytes=10-99999999999999999999"]) { r in
                #expect(r.status == .partialContent)
                #expect(r.headers[.contentRange] == "bytes 10-\(size - 1)/\(size)")
                #expect(r.body.readableBytes == size - 10)
            }
            try await client.execute(uri: uri, method: .get, headers: [.range: "bytes=-99999999999999999999"]) { r in
                #expect(r.status == .partialContent)
                #expect(r.headers[.contentRange] == "bytes 0-\(size - 1)/\(size)")
            }
        }
    }

    /// An unexpected error is a 500 `internal_error` (before, every route called it `publish_failed`),
    /// and one that escapes a handler gets the same JSON body instead of an empty 500.
    @Test func unexpectedErrorsAreInternalErrors() async throws {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: JSONErrorMiddleware())
        router.get("/caught") { _, _ in
            await Routes.respond { throw UnexpectedFailure() }
        }
        router.get("/escapes") { (_: Request, _: BasicRequestContext) async throws -> Response in
            throw UnexpectedFailure()
        }
        try await Application(router: router).test(.router) { client in
            for uri in ["/caught", "/escapes"] {
                try await client.execute(uri: uri, method: .get) { r in
                    #expect(r.status == .internalServerError, "\(uri)")
                    let e = try decode(ErrorBody.self, r.body)
                    #expect(e.error.code == "internal_error" && e.error.message.contains("UnexpectedFailure"), "\(uri): \(e.error.message)")
                }
            }
        }
    }

    @Test func adminRoutesNeedTheToken() async throws {
        let full = try TemporaryDirectory()
        try TreeSpec.build(full.file("app"), [.text("VERSION", "3.0.0")])
        _ = try DiffEngineShim.fullBundle(of: full.file("app"), to: full.file("b"))
        let body = ByteBuffer(bytes: try POSIX.readFile(full.file("b")))
        let uri = "/api/releases?platform=adminplat&version=3.0.0"
        try await app.test(.router) { client in
            try await client.execute(uri: uri, method: .post, body: body) { r in
                #expect(r.status == .unauthorized)
            }
            try await client.execute(uri: uri, method: .post, headers: [.authorization: "Bearer wrong"], body: body) { r in
                #expect(r.status == .forbidden)
            }
            let notes = Data("Admin publish".utf8).base64EncodedString()
            try await client.execute(uri: uri, method: .post,
                                     headers: [.authorization: "Bearer \(ServerFixture.token)",
                                               HTTPField.Name("X-Phoenix-Changelog-Base64")!: notes], body: body) { r in
                #expect(r.status == .created, "\(String(buffer: r.body))")
            }
            try await client.execute(uri: uri, method: .post, headers: [.authorization: "Bearer \(ServerFixture.token)"], body: body) { r in
                #expect(r.status == .conflict, "publishing the same version twice is refused")
            }
            try await client.execute(uri: "/api/releases?platform=adminplat&version=3.0.1", method: .post,
                                     headers: [.authorization: "Bearer \(ServerFixture.token)"],
                                     body: ByteBuffer(bytes: Array("not a bundle".utf8))) { r in
                #expect(r.status == .badRequest)
            }
            try await client.execute(uri: "/api/releases?platform=adminplat", method: .get) { r in
                #expect(String(buffer: r.body).contains("Admin publish"))
            }
        }
    }
}

@Suite struct UploadLimitTests {
    @Test func oversizedUploadIsRefused() async throws {
        let f = try ServerFixture(maxUpload: 1000, publish: false)
        let app = buildApplication(service: f.service)
        try await app.test(.router) { client in
            try await client.execute(uri: "/api/releases?platform=x&version=1.0.0", method: .post,
                                     headers: [.authorization: "Bearer \(ServerFixture.token)"],
                                     body: ByteBuffer(bytes: [UInt8](repeating: 7, count: 5000))) { r in
                #expect(r.status == .contentTooLarge)
            }
        }
        #expect(try f.service.catalog.platforms().isEmpty)
    }

    @Test func publishingIsValidated() throws {
        let f = try ServerFixture(publish: false)
        let tree = f.trees["1.0.0"]!
        #expect(throws: ServerError.self) { try f.service.publish(.init(platform: "p", version: "1.0"), bundleDirectory: tree) }
        #expect(throws: ServerError.self) { try f.service.publish(.init(platform: "p", version: "2.0.0-rc.1"), bundleDirectory: tree) }
        #expect(throws: ServerError.self) { try f.service.publish(.init(platform: "a/b", version: "1.0.0"), bundleDirectory: tree) }
        for notes in ["<script>alert(1)</script>", "[x](javascript:alert(1))", "<img src=x onerror=alert(1)>", "see file:///etc/passwd",
                      "<svg/onload=alert(1)>", "<img/src=x/onerror=alert(1)>", "[x](javascript&colon;alert(1))",
                      "[x](&#106;avascript:alert(1))", "<JavaScript:alert(1)>", "![x](data:image/svg+xml;base64,PHN2Zz4=)",
                      "<details x<1 open ontoggle=alert(1)>", "<div>\n<x:y onmouseover=alert(1)>hi</x:y>", "[x](data:&#32;text/html,hi)",
                      "[x](&#0000000106;avascript:alert(1))",
                      "[x](javascript\\:alert(1))", "[x]: data\\:text/html,hi", "<foo onmouseover=alert(1)>", "<ScRiPt>", "</script>",
                      "[x](&#106avascript:alert(1))", "[x](java&Tab;script:alert(1))", "<iframe>",
                      "[x](&#74;avascript:alert(1))", "[x](&#X4A;avascript:alert(1))", "\\` <img src=x onerror=alert(1)> \\`",
                      "a ~~~ <img src=x onerror=alert(1)> ~~~", "[x](<data: text/html,hi>)", "see file:\\\\host\\share",
                      "[x](java&#13;&#10;script:alert(1))"] {
            #expect(throws: ServerError.self, "\(notes)") {
                try f.service.publish(.init(platform: "p", version: "1.0.0", changelog: notes), bundleDirectory: tree)
            }
        }
        _ = try f.service.publish(.init(platform: "p", version: "1.0.0", changelog: "## 1.0.0\n- **Faster** sync, see <https://example.org/notes>\n"
                                  + "- a < b for AT&T users; the config file: x.toml; user data: kept\n"
                                  + "- `Vec<u8>` and Array<String>, run `--config <file>` and press <Enter>; mail <a@b.org>\n"
                                  + "- AT&T; Verizon; export data: csv/json; docker pull <image>; see <path/to/file>; a line<br/>\n"
                                  + "- `List<?>`, `git diff <base>` <!-- Release notes generated by a tool -->"),
                                  bundleDirectory: tree)
        #expect {
            try f.service.publish(.init(platform: "p", version: "1.0.0+build.2"), bundleDirectory: tree)
        } throws: { error in
            guard case ServerError.conflict(let m) = error else { return false }
            return m.contains("already published")
        }
        // A publish whose tree was left behind by a crash (no catalog row) starts again cleanly.
        try TreeSpec.build(f.service.treesDirectory + "/p/1.0.1", [.text("junk", "left over")])
        _ = try f.service.publish(.init(platform: "p", version: "1.0.1"), bundleDirectory: f.trees["1.0.1"]!)
        #expect(try TreeSpec.digest(f.service.treesDirectory + "/p/1.0.1") == f.digest("1.0.1"))
    }
}
