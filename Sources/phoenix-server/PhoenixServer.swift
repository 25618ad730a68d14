import ArgumentParser
import Foundation
import Hummingbird
import Logging
import TreeIO
import UpdateModels
import UpdateServer

@main
struct PhoenixServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "phoenix-server",
        abstract: "The Phoenix update server: release catalog, delta generation, signed manifests, downloads.",
        version: "0.1.0",
        subcommands: [Serve.self, Keygen.self, RotateKey.self, Publish.self, Status.self, RolloutCommand.self]
    )
}

/// Options shared by the commands that open a data directory.
struct DataOptions: ParsableArguments {
    @Option(help: "JSON configuration file (keys: data, host, port, key, admin_token, base_url, delta_history, delta_threshold, ...).")
    var config: String?
    @Option(help: "Data directory (catalog, packages, trees, static files). Env: PHOENIX_DATA.") var data: String?
    @Option(help: "Ed25519 private key (PEM) that signs manifests. Env: PHOENIX_KEY.") var key: String?
    @Option(help: "A key rotation statement to serve with manifests (repeatable; from rotate-key).") var rotation: [String] = []
    @Option(help: "Download base URL for manifests (a CDN serving the static directory). Env: PHOENIX_BASE_URL.") var baseURL: String?
    @Option(help: "Make deltas from this many previous releases of each channel (default 5).") var deltaHistory: Int?
    @Option(help: "Offer a delta only below this fraction of the full package (default 0.5).") var deltaThreshold: Double?

    func resolve() throws -> ServerConfiguration {
        var c: ServerConfiguration
        if let config {
            c = try ServerConfiguration.load(file: config)
        } else {
            c = ServerConfiguration(dataDirectory: "")
        }
        c.applyEnvironment()
        if let data { c.dataDirectory = data }
        if let key { c.keyPath = key }
        if !rotation.isEmpty { c.rotationPaths = rotation }
        if let baseURL { c.baseURL = baseURL }
        if let deltaHistory { c.deltaHistory = deltaHistory }
        if let deltaThreshold { c.deltaThreshold = deltaThreshold }
        guard !c.dataDirectory.isEmpty else { throw ValidationError("a data directory is required: --data DIR, PHOENIX_DATA or --config") }
        try c.validate()
        return c
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the HTTP(S) server (stops cleanly on SIGTERM or SIGINT; SIGHUP re-reads the TLS certificate).")
    @OptionGroup var options: DataOptions
    @Option(help: "Address to listen on. Env: PHOENIX_HOST.") var host: String?
    @Option(help: "Port. Env: PHOENIX_PORT.") var port: Int?
    @Option(help: "Bearer token for the admin routes. Env: PHOENIX_ADMIN_TOKEN.") var adminToken: String?
    @Option(help: "PEM certificate chain, leaf first: serve HTTPS (TLS 1.2+, HTTP/2). Env: PHOENIX_TLS_CERT.") var tlsCert: String?
    @Option(help: "PEM private key of the certificate. Env: PHOENIX_TLS_KEY.") var tlsKey: String?

    func run() async throws {
        var c = try options.resolve()
        if let host { c.host = host }
        if let port { c.port = port }
        if let adminToken { c.adminToken = adminToken }
        if let tlsCert { c.tlsCertificatePath = tlsCert }
        if let tlsKey { c.tlsKeyPath = tlsKey }
        do { try c.validate() } catch let e as ServerError { throw ValidationError(e.description) }
        var logger = Logger(label: "phoenix-server")
        logger.logLevel = .info
        if c.keyPath == nil { logger.warning("no signing key (--key): manifests and checks will answer 500 until one is configured") }
        let service = try UpdateService(configuration: c, logger: logger)
        // Manifest versions above any that this data directory issued before a restore (or a new
        // catalog); a catalog another process holds locked keeps its value until the next change.
        do { try service.catalog.raiseRevisionToClock() } catch {
            logger.warning("the catalog revision was not raised to the clock", metadata: ["error": "\(error)"])
        }
        var tls: CertificateReloader?
        var reload: DispatchSourceSignal?
        if let cert = c.tlsCertificatePath, let key = c.tlsKeyPath {
            let reloader: CertificateReloader
            do { reloader = try CertificateReloader(certificatePath: cert, keyPath: key) } catch let e as ServerError {
                throw ValidationError(e.description)
            }
            tls = reloader
            // SIGHUP: re-read the certificate and key; new connections get them, open ones keep theirs.
            signal(SIGHUP, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
            source.setEventHandler { [logger] in
                do {
                    try reloader.reload()
                    logger.notice("SIGHUP: reloaded the TLS certificate", metadata: ["certificate": "\(cert)"])
                } catch {
                    logger.error("SIGHUP: the TLS certificate did not reload; still serving the previous one", metadata: ["error": "\(error)"])
                }
            }
            source.resume()
            reload = source
            logger.info("serving HTTPS", metadata: ["certificate": "\(cert)"])
        } else if !["127.0.0.1", "localhost", "::1"].contains(c.host) {
            logger.warning("serving plain HTTP on \(c.host): clients refuse plain HTTP off loopback; use --tls-cert and --tls-key, or a TLS proxy in front")
        }
        let app = try buildApplication(service: service, tls: tls, logger: logger)
        try await app.runService()
        reload?.cancel()
    }
}

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write a new Ed25519 signing key (mode 0600) and print its public key.")
    @Option(help: "Where to write the private key (PEM). Refuses to overwrite.") var out: String

    func run() throws {
        if POSIX.exists(out) { throw ValidationError("\(out) exists; refusing to overwrite a key") }
        let key = try Ed25519.PrivateKey.generate()
        let bytes = Array(key.pem.utf8)
        try bytes.withUnsafeBytes { try POSIX.writeNewFile(out, $0, mode: 0o600) }
        let pub = try key.publicKey()
        print("public key: \(pub.base64)")
        print("key id:     \(pub.keyID)")
    }
}

struct RotateKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-key",
        abstract: "Sign, with the old key, a statement that the new key takes over; serve it with --rotation.")
    @Option(help: "The current (old) private key.") var old: String
    @Option(help: "The new private key (from keygen).") var new: String
    @Option(help: "Where to write the statement (JSON).") var out: String

    func run() throws {
        let oldKey = try Ed25519.PrivateKey(pem: String(contentsOfFile: old, encoding: .utf8))
        let newKey = try Ed25519.PrivateKey(pem: String(contentsOfFile: new, encoding: .utf8)).publicKey()
        let statement = try KeyRotation.sign(from: oldKey, to: newKey)
        let data = try WireJSON.encoder(pretty: true).encode(statement)
        try data.withUnsafeBytes { try POSIX.writeNewFile(out, $0, mode: 0o644) }
        print("rotation \(try oldKey.publicKey().keyID) -> \(newKey.keyID) written to \(out); serve with --key \(new) --rotation \(out)")
    }
}

struct Publish: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish BUNDLE_DIR as a release: store its full bundle, then make deltas from previous releases.")
    @OptionGroup var options: DataOptions
    @Option(help: "Platform name (letters, digits, - _ .).") var platform: String
    @Option(help: "Semantic version of the release.") var version: String
    @Option(help: "stable or beta (pre-releases only beta).") var channel: String = "stable"
    @Option(help: "Changelog file (plain text or Markdown).") var changelog: String?
    @Flag(help: "Mark the release critical (bypasses phased rollout).") var critical = false
    @Option(help: "Rollout stages in percent, comma-separated, ending at 100 (default 10,25,50,100; '100' = everyone at once).")
    var stages: String?
    @Option(help: "Seconds between automatic stage advances (default 86400; 0 = only by hand).") var rolloutInterval: Int?
    @Flag(help: "Only queue the deltas; a running server makes them.") var background = false
    @Argument(help: "The release's directory tree.") var bundleDir: String

    func run() throws {
        let c = try options.resolve()
        let service = try UpdateService(configuration: c)
        let notes = try changelog.map { try String(contentsOfFile: $0, encoding: .utf8) } ?? ""
        do {
            let stageList = try stages.map { text in
                try text.split(separator: ",").map { part -> Int in
                    guard let p = Int(part.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--stages: \"\(part)\" is not an integer") }
                    return p
                }
            }
            let r = try service.publish(.init(platform: platform, version: version, channel: channel, changelog: notes, critical: critical,
                                              stages: stageList, rolloutIntervalSeconds: rolloutInterval),
                                        bundleDirectory: bundleDir)
            print("published \(r.platform) \(r.version) (\(r.channel)): full bundle \(r.fullSize) bytes, sha256 \(r.fullSHA256)")
        } catch let e as ServerError {
            throw ValidationError(e.description)
        }
        if !background {
            service.runPendingJobs()
            for d in try service.catalog.deltas(platform: platform) where d.toVersion == version {
                print("delta \(d.fromVersion) -> \(d.toVersion): \(d.state.rawValue)\(d.size.map { ", \($0) bytes" } ?? "")\(d.error.map { " (\($0))" } ?? "")")
            }
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show releases and delta jobs.")
    @OptionGroup var options: DataOptions
    @Option(help: "Only this platform.") var platform: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let c = try options.resolve()
        let service = try UpdateService(configuration: c)
        let platforms = try platform.map { [$0] } ?? service.catalog.platforms()
        var all: [[String: String]] = []
        for p in platforms {
            let deltas = try service.catalog.deltas(platform: p)
            let zero = SemanticVersion(major: 0, minor: 0, patch: 0)
            for r in try service.catalog.releases(platform: p).sorted(by: { ($0.semanticVersion ?? zero) < ($1.semanticVersion ?? zero) }) {
                if !json { print("\(p) \(r.version) [\(r.channel)] full \(r.fullSize) bytes") }
                all.append(["platform": p, "version": r.version, "channel": r.channel, "full_size": "\(r.fullSize)"])
                for d in deltas where d.toVersion == r.version {
                    if !json {
                        print("  delta from \(d.fromVersion): \(d.state.rawValue)\(d.size.map { ", \($0) bytes" } ?? "")\(d.error.map { " (\($0))" } ?? "")")
                    }
                    all.append(["platform": p, "version": r.version, "delta_from": d.fromVersion, "state": d.state.rawValue,
                                "size": d.size.map { "\($0)" } ?? ""])
                }
            }
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: all, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }
}
