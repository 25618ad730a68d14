import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdTLS
import PatchFormat
import Testing
import TestSupport
import TreeIO
import UpdateClient
import UpdateModels
import UpdateServer

/// Certificates made for one test with the `openssl` command line: a test CA, server certificates for
/// 127.0.0.1 (a second one with a new key, for reloads), one for another host name, an expired one,
/// and one from a CA nobody trusts.
struct TestPKI: @unchecked Sendable {
    let dir: TemporaryDirectory
    var caFile: String { dir.file("ca.pem") }

    struct Identity: Sendable {
        var cert: String
        var key: String
    }

    init() throws {
        dir = try TemporaryDirectory()
        try Self.ca(dir, "ca")
        try Self.ca(dir, "rogue-ca")
    }

    static func openssl(_ args: [String], cwd: String) throws {
        let r = try Run.process("/usr/bin/openssl", args, cwd: cwd)
        guard r.status == 0 else { throw TestPKIError(message: "openssl \(args.joined(separator: " ")): \(r.stderr)") }
    }

    struct TestPKIError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    static func ca(_ dir: TemporaryDirectory, _ name: String) throws {
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "\(name).key",
                     "-out", "\(name).pem", "-days", "30", "-subj", "/CN=Phoenix \(name)",
                     "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], cwd: dir.path)
    }

    /// A server certificate named `name`, for `san` (`IP:127.0.0.1`, `DNS:wrong.example`), signed by
    /// `issuer`, valid for `days` (negative: already expired).
    func server(_ name: String, san: String = "IP:127.0.0.1", issuer: String = "ca", days: Int = 30) throws -> Identity {
        _ = try dir.write("\(name).ext", Array("subjectAltName=\(san)\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n".utf8))
        try Self.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "\(name).key",
                          "-out", "\(name).csr", "-subj", "/CN=\(name)"], cwd: dir.path)
        try Self.openssl(["x509", "-req", "-in", "\(name).csr", "-CA", "\(issuer).pem", "-CAkey", "\(issuer).key", "-CAcreateserial",
                          "-out", "\(name).pem", "-days", "\(days)", "-extfile", "\(name).ext"], cwd: dir.path)
        return Identity(cert: dir.file("\(name).pem"), key: dir.file("\(name).key"))
    }

    /// The base64 SHA-256 of the certificate's public key (SPKI), as `tls_pin` takes it.
    func pin(_ id: Identity) throws -> String {
        let script = "openssl x509 -in '\(id.cert)' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64"
        let r = try Run.process("/bin/sh", ["-c", script])
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// HTTPS end to end: the server serves TLS itself; the client trusts only what it is told to.
@Suite(.serialized) struct TLSTests {
    /// The fixture's 1.x line served over HTTPS with `identity`.
    static func withTLSServer(_ identity: TestPKI.Identity, _ body: @escaping @Sendable (ServerFixture, String) async throws -> Void) async throws {
        let f = try ServerFixture(publish: false)
        for v in ["1.0.0", "1.0.1", "1.1.0"] {
            _ = try f.service.publish(.init(platform: "desktop", version: v), bundleDirectory: f.trees[v]!)
        }
        f.service.runPendingJobs()
        let tls = try CertificateReloader(certificatePath: identity.cert, keyPath: identity.key)
        let app = try buildApplication(service: f.service, tls: tls)
        try await app.test(.live) { client in
            try await body(f, "https://127.0.0.1:\(client.port!)")
        }
    }

    static func client(_ f: ServerFixture, _ url: String, ca: String?, pins: String? = nil) throws -> Updater {
        let u = try ClientTests.client(f, url, installed: "1.0.0")
        if let ca { try u.settings.set("ca_file", ca) }
        if let pins { try u.settings.set("tls_pin", pins) }
        try u.paths.save(u.settings)
        return try Updater(paths: u.paths)
    }

    @Test func updatesOverHTTPSWithTheCAAndResumesAPartialDownload() async throws {
        let pki = try TestPKI()
        let good = try pki.server("server")
        try await Self.withTLSServer(good) { f, url in
            let u = try Self.client(f, url, ca: pki.caFile, pins: try pki.pin(good))
            guard case .available(let offer) = try await u.check(force: true) else { Issue.record("no offer over HTTPS"); return }
            #expect(offer.kind == "delta" && offer.version == "1.1.0")
            // Half of the package is already on disk from an interrupted run: the client asks for the rest.
            let (path, _, size) = try f.service.package(platform: "desktop", version: try SemanticVersion(parsing: "1.1.0"),
                                                         from: try SemanticVersion(parsing: "1.0.0"))
            let bytes = try POSIX.readFile(path)
            try FileManager.default.createDirectory(atPath: u.paths.downloads, withIntermediateDirectories: true)
            let half = Int(size / 2)
            try Array(bytes[..<half]).withUnsafeBytes { try POSIX.writeNewFile(u.paths.downloads + "/" + offer.package.sha256 + ".part", $0, mode: 0o600) }
            let firstProgress = Box<UInt64?>(nil)
            let r = try await u.install { p in firstProgress.setIfNil(p.received) }
            #expect(r.kind == "delta" && r.version == "1.1.0")
            #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("1.1.0"))
            let first = try #require(firstProgress.value)
            #expect(first > UInt64(half), "the first progress report (\(first)) continues after the \(half) bytes already there")
            // Clients that speak HTTP/2 get it (ALPN); TLS 1.1 is refused.
            let h2 = try await Run.processOffPool("/usr/bin/curl", ["-sS", "-o", "/dev/null", "-w", "%{http_version}", "--http2",
                                                                   "--cacert", pki.caFile, url + "/healthz"])
            #expect(h2.stdout == "2", "HTTP version \(h2.stdout): \(h2.stderr)")
            let old = try await Run.processOffPool("/usr/bin/curl", ["-sS", "-o", "/dev/null", "--tlsv1.1", "--tls-max", "1.1",
                                                                    "--cacert", pki.caFile, url + "/healthz"])
            #expect(old.status != 0, "a TLS 1.1 handshake was accepted")
        }
    }

    static func expectRefusal(_ identity: TestPKI.Identity, ca: String?, pins: String? = nil, category: String,
                              mentions: String) async throws {
        try await withTLSServer(identity) { f, url in
            let u = try Self.client(f, url, ca: ca, pins: pins)
            await #expect {
                _ = try await u.install()
            } throws: { error in
                guard let e = error as? ClientError, e.category == category else { return false }
                return e.description.contains(mentions)
            }
            #expect(try TreeSpec.digest(u.settings.installDir) == f.digest("1.0.0"), "the installation is untouched")
            #expect(u.settings.currentVersion == "1.0.0")
            let downloads = (try? FileManager.default.contentsOfDirectory(atPath: u.paths.downloads)) ?? []
            #expect(downloads.isEmpty, "nothing was downloaded: \(downloads)")
        }
    }

    @Test func refusesAnUnknownIssuer() async throws {
        let pki = try TestPKI()
        try await Self.expectRefusal(try pki.server("rogue", issuer: "rogue-ca"), ca: pki.caFile, category: "tls_unknown_issuer",
                                     mentions: "not issued by the CA file")
        // Without a CA file the system's store is used, and it does not know the test CA either.
        try await Self.expectRefusal(try pki.server("server"), ca: nil, category: "tls_unknown_issuer",
                                     mentions: "the system's trusted certificates")
    }

    @Test func refusesAWrongHostName() async throws {
        let pki = try TestPKI()
        try await Self.expectRefusal(try pki.server("wrong", san: "DNS:wrong.example"), ca: pki.caFile, category: "tls_wrong_host",
                                     mentions: "is not for 127.0.0.1")
    }

    @Test func refusesAnExpiredCertificate() async throws {
        let pki = try TestPKI()
        try await Self.expectRefusal(try pki.server("expired", days: -1), ca: pki.caFile, category: "tls_expired",
                                     mentions: "validity period")
    }

    @Test func refusesAKeyThatIsNotPinned() async throws {
        let pki = try TestPKI()
        let other = try pki.server("other")
        try await Self.expectRefusal(try pki.server("server"), ca: pki.caFile, pins: try pki.pin(other), category: "tls_pin",
                                     mentions: "is not the pinned one")
    }

    @Test func refusesARedirectToPlainHTTP() async throws {
        let pki = try TestPKI()
        let good = try pki.server("server")
        let router = Router()
        router.get("/api/version/check") { _, _ in
            Response(status: .found, headers: [.location: "http://127.0.0.1:9/api/version/check"])
        }
        let tls = try CertificateReloader(certificatePath: good.cert, keyPath: good.key)
        let app = Application(router: router, server: try .tls(.http1(), tlsConfiguration: tls.serverConfiguration()),
                              configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        let f = try ServerFixture(publish: false)
        try await app.test(.live) { client in
            let u = try Self.client(f, "https://127.0.0.1:\(client.port!)", ca: pki.caFile)
            await #expect {
                _ = try await u.check(force: true)
            } throws: { error in
                (error as? ClientError)?.description.contains("refusing a redirect to plain HTTP") == true
            }
        }
    }

    @Test func dashboardSessionCookiesAreSecureOverHTTPS() async throws {
        let pki = try TestPKI()
        let good = try pki.server("server")
        let f = try ServerFixture(publish: false) { $0.tlsCertificatePath = good.cert; $0.tlsKeyPath = good.key }
        let app = try buildApplication(service: f.service, tls: try CertificateReloader(certificatePath: good.cert, keyPath: good.key))
        try await app.test(.live) { client in
            let r = try await Run.processOffPool("/usr/bin/curl", ["-sS", "-i", "--cacert", pki.caFile, "-d", "token=\(ServerFixture.token)",
                                                                  "https://127.0.0.1:\(client.port!)/dashboard/login"])
            // "\r\n" is one Character in Swift: split on either form of line end.
            let lines = r.stdout.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" })
            let cookie = lines.first { $0.lowercased().hasPrefix("set-cookie:") }.map(String.init) ?? ""
            #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Secure"), "status \(r.status): \(r.stdout.prefix(300)) \(r.stderr)")
        }
    }

    @Test func settingsRejectMalformedTLSOptions() throws {
        var s = ClientSettings()
        #expect(throws: ClientError.self) { try s.set("tls_pin", "not-base64!") }
        #expect(throws: ClientError.self) { try s.set("tls_pin", Data(count: 16).base64EncodedString()) }
        #expect(throws: ClientError.self) { try s.set("ca_file", "relative/ca.pem") }
        #expect(throws: ClientError.self) { try s.set("ca_file", "/nonexistent/ca.pem") }
        let pin = Data(repeating: 7, count: 32).base64EncodedString()
        try s.set("tls_pin", "sha256/\(pin), \(pin)")
        #expect(s.tlsPins == [pin, pin])
        try s.set("tls_pin", "")
        #expect(s.tlsPins.isEmpty)
    }

    @Test func theServerRefusesAKeyThatDoesNotMatchItsCertificate() throws {
        let pki = try TestPKI()
        let a = try pki.server("a"), b = try pki.server("b")
        #expect(throws: ServerError.self) { _ = try CertificateReloader(certificatePath: a.cert, keyPath: b.key) }
        #expect(throws: ServerError.self) { _ = try CertificateReloader(certificatePath: pki.dir.file("missing.pem"), keyPath: a.key) }
    }
}

/// A real `phoenix-server serve --tls-cert --tls-key` process: SIGHUP swaps the certificate for new
/// connections while a download already in flight finishes on the old one.
@Suite struct TLSReloadTests {
    @Test func sighupReloadsTheCertificateWithoutDroppingADownload() async throws {
        let pki = try TestPKI()
        let first = try pki.server("first"), second = try pki.server("second")
        let f = try ServerFixture(publish: false)
        // A 24 MB full package that does not compress, so the download takes a while at a limited rate.
        var rng = SeededGenerator(seed: 99)
        try TreeSpec.build(f.dir.file("big"), [.file("payload.bin", rng.bytes(24 << 20)), .text("VERSION", "1.0.0")])
        let release = try f.service.publish(.init(platform: "desktop", version: "1.0.0"), bundleDirectory: f.dir.file("big"))
        // The server reads its certificate from these paths; the test replaces the files, then signals.
        let live = TestPKI.Identity(cert: f.dir.file("live.pem"), key: f.dir.file("live.key"))
        try FileManager.default.copyItem(atPath: first.cert, toPath: live.cert)
        try FileManager.default.copyItem(atPath: first.key, toPath: live.key)
        let port = try ResumeAfterServerDeathTests.freePort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: Run.product("phoenix-server"))
        server.arguments = ["serve", "--data", f.service.configuration.dataDirectory, "--key", f.service.configuration.keyPath!,
                            "--port", "\(port)", "--tls-cert", live.cert, "--tls-key", live.key]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { server.terminate(); server.waitUntilExit() }
        let base = "https://127.0.0.1:\(port)"
        var up = false
        for _ in 0..<100 where !up {
            up = (try? await Run.processOffPool("/usr/bin/curl", ["-sf", "--cacert", pki.caFile, base + "/healthz"]))?.status == 0
            if !up { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(up, "the HTTPS server did not come up")

        func servedPin(_ pins: String) async throws -> Bool {
            let u = try TLSTests.client(f, base, ca: pki.caFile, pins: pins)
            do { _ = try await u.check(force: true); return true } catch let e as ClientError where e.category == "tls_pin" { return false }
        }
        #expect(try await servedPin(try pki.pin(first)))

        // A download at 4 MB/s, in flight while the certificate changes.
        let out = f.dir.file("download.bin")
        let url = base + "/api/version/download?version=1.0.0&platform=desktop"
        let download = Task { try await Run.processOffPool("/usr/bin/curl", ["-sS", "--fail", "--cacert", pki.caFile, "--limit-rate", "4M",
                                                                              "-o", out, url]) }
        try await Task.sleep(for: .seconds(1))
        try FileManager.default.removeItem(atPath: live.cert)
        try FileManager.default.removeItem(atPath: live.key)
        try FileManager.default.copyItem(atPath: second.cert, toPath: live.cert)
        try FileManager.default.copyItem(atPath: second.key, toPath: live.key)
        kill(server.processIdentifier, SIGHUP)
        var switched = false
        for _ in 0..<50 where !switched {
            try await Task.sleep(for: .milliseconds(100))
            switched = try await servedPin(try pki.pin(second))
        }
        #expect(switched, "new connections get the new certificate after SIGHUP")
        #expect(!(try await servedPin(try pki.pin(first))))
        let finished = try await download.value
        #expect(finished.status == 0, "the download in flight was dropped: \(finished.stderr)")
        #expect(Hex.encode(try TreeScanner.hashFile(out)) == release.fullSHA256)
        // A reload that fails (a key that does not match) keeps serving the current certificate.
        try FileManager.default.removeItem(atPath: live.key)
        try FileManager.default.copyItem(atPath: first.key, toPath: live.key)
        kill(server.processIdentifier, SIGHUP)
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await servedPin(try pki.pin(second)))
    }
}

/// A value set from a @Sendable callback.
final class Box<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T { lock.lock(); defer { lock.unlock() }; return stored }
    func setIfNil<U>(_ v: U) where T == U? {
        lock.lock()
        if stored == nil { stored = v }
        lock.unlock()
    }
}
