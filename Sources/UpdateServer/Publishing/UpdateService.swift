import DiffEngine
import Foundation
import Logging
import PatchFormat
import Patcher
import Synchronization
import TreeIO
import UpdateModels

/// The server's behaviour, independent of HTTP: publishing releases, making and verifying deltas,
/// answering checks with the delivery policy, and building signed manifests.
public final class UpdateService: @unchecked Sendable {
    public let configuration: ServerConfiguration
    public let catalog: any Catalog
    public let store: any PackageStore
    let signingKey: Ed25519.PrivateKey?
    let rotations: [SignedEnvelope]
    let logger: Logger
    let lock = NSLock()
    private var manifestCache: [String: (revision: UInt64, built: Date, envelope: SignedEnvelope)] = [:]
    private var checkCache: [String: (revision: UInt64, built: Date, bytes: [UInt8])] = [:]
    var rolloutCache: [String: (revision: UInt64, rollouts: [String: Rollout])] = [:]
    /// Dashboard login sessions and single-use login links (in memory: a restart logs everyone out).
    let sessions = SessionStore()
    private var revisionSeen: (value: UInt64, at: Date)?
    /// When the earliest static manifest of each platform expires, as this process last exported it.
    private var staticExpiry: [String: Date] = [:]
    /// When `pruneTelemetry` last ran.
    var lastPrune: Date?
    /// When a report last made `tickAfterReport` look at a platform's rollouts, and how often it may.
    var lastReportTick: [String: TimeInterval] = [:]
    public var reportTickInterval: TimeInterval = 2
    /// This process's claim on the delta jobs it makes (`ClaimToken`).
    public let claims: ClaimToken
    private var jobsRunning = false
    /// Calls of `runPendingJobs` under way in this process.
    private let jobRuns = Atomic<Int>(0)
    private var jobsRequested = false

    public var treesDirectory: String { configuration.dataDirectory + "/trees" }
    public var staticDirectory: String { configuration.dataDirectory + "/static" }
    var scratchDirectory: String { configuration.dataDirectory + "/tmp" }

    public init(configuration: ServerConfiguration, logger: Logger = Logger(label: "phoenix-server")) throws {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        let data = configuration.dataDirectory
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        for sub in ["trees", "static", "tmp"] {
            try FileManager.default.createDirectory(atPath: data + "/" + sub, withIntermediateDirectories: true)
        }
        catalog = try SQLiteCatalog(path: data + "/catalog.sqlite", busyTimeout: configuration.catalogBusyTimeoutSeconds)
        claims = try ClaimToken(directory: data + "/claims")
        store = try FilePackageStore(root: data + "/packages")
        if let keyPath = configuration.keyPath {
            signingKey = try Ed25519.PrivateKey(pem: String(contentsOfFile: keyPath, encoding: .utf8))
        } else {
            signingKey = nil
        }
        rotations = try configuration.rotationPaths.map {
            try WireJSON.decoder().decode(SignedEnvelope.self, from: Data(contentsOf: URL(fileURLWithPath: $0)))
        }
        // Scratch directories are named after the process that made them. Those of processes that are
        // gone are garbage; those of a live process (a running server while `phoenix-server publish`
        // or `status` opens the same data directory) are its work in progress and stay.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: scratchDirectory)) ?? [] {
            if let pid = Self.owner(ofScratch: name), Self.isAlive(pid) { continue }
            try? POSIX.removeTree(scratchDirectory + "/" + name)
        }
    }

    // MARK: Publishing

    public struct PublishRequest: Sendable {
        public var platform: String
        public var version: String
        public var channel: String
        public var changelog: String
        public var critical: Bool
        /// Rollout stages for this release (default: the configuration's).
        public var stages: [Int]?
        /// Seconds between automatic advances for this release (default: the configuration's).
        public var rolloutIntervalSeconds: Int?

        public init(platform: String, version: String, channel: String = "stable", changelog: String = "", critical: Bool = false,
                    stages: [Int]? = nil, rolloutIntervalSeconds: Int? = nil) {
            self.platform = platform
            self.version = version
            self.channel = channel
            self.changelog = changelog
            self.critical = critical
            self.stages = stages
            self.rolloutIntervalSeconds = rolloutIntervalSeconds
        }
    }

    static func validatePlatform(_ p: String) throws {
        guard !p.isEmpty, p.count <= 64, p.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }),
              p != ".", p != ".." else {
            throw ServerError.badRequest("invalid platform \"\(p.prefix(64))\": use letters, digits, '-', '_' and '.'")
        }
    }

    /// Markup that a renderer could execute (Sparkle's 2016 incident: script in release notes). The
    /// notes are plain text or Markdown, and Markdown passes HTML through, so refused are: anything
    /// from `<` and a letter to the next `>` holding an `=` (an attribute value, whatever the tag's
    /// name: `<img src=x onerror=...>`, `<svg/onload=...>`, `<x:y onmouseover=...>`), an element that
    /// runs or embeds something without attributes (`<script>`, `<style>`, `<iframe>`, `<svg>`, ...),
    /// and a script, data or file URL, looked for after character references are decoded (in any
    /// case) and backslashes and control characters dropped (`&#74;avascript:`, `javascript&colon;`,
    /// `javascript\:` all render as a script URL). Code spans are looked at too: where Markdown
    /// ends them is not for a filter to guess. Ordinary notes pass: `Vec<u8>`, `List<?>`,
    /// `--config <file>`, `git diff <base>`, `<Enter>`, `docker pull <image>`, `<https://...>`,
    /// `<a@b.org>`, `<!-- generated notes -->`, "AT&T", "config file: x", "export data: csv/json".
    static func activeContent(in text: String) -> String? {
        let lower = text.lowercased()
        func found(_ pattern: String, in s: String) -> String? {
            s.range(of: pattern, options: .regularExpression).map { String(s[$0.lowerBound...].prefix(24)) }
        }
        if let m = found(#"<[a-z][^>]*="#, in: lower) { return "an HTML tag with an attribute \"\(m)\"" }
        let elements = "script|style|iframe|frame|frameset|embed|applet|svg|math|template|noscript|xmp|plaintext|noembed"
        if let m = found("</?(\(elements))\\b", in: lower) { return "an HTML element \"\(m)\"" }
        // As a URL parser reads it: references decoded, then case folded; tabs, line breaks and other
        // controls dropped (by scalar: "\r\n" is one Character); backslashes kept for file: and
        // dropped for the rest (CommonMark removes those escapes).
        let decoded = String(String.UnicodeScalarView(Self.decodingReferences(text).lowercased().unicodeScalars.filter {
            !($0.value < 0x20 || $0.value == 0x7f)
        }))
        let plain = decoded.filter { $0 != "\\" }
        for scheme in ["javascript:", "vbscript:", "livescript:"] where plain.contains(scheme) { return "\"\(scheme)\"" }
        // A data URL: `data:type/...` anywhere, or after `<` with spaces (a `<...>` link destination).
        // (`data: text/html` with a space is a data URL too, where a link destination starts.)
        if found(#"data:[a-z]+/"#, in: plain) != nil || found(#"[(<]\s*data:"#, in: plain) != nil { return "a data: URL" }
        if found(#"file:[/\\]"#, in: decoded) != nil || found(#"file:/"#, in: plain) != nil { return "a file: URL" }
        return nil
    }

    /// `text` with HTML character references decoded as a browser would: numeric ones (with or
    /// without the semicolon) and the named ones that can spell a URL scheme or markup (in any case:
    /// more decoded than a browser would is only more refused).
    static func decodingReferences(_ text: String) -> String {
        guard text.contains("&") else { return text }
        let named: [String: String] = ["colon": ":", "tab": "\t", "newline": "\n", "sol": "/", "bsol": "\\", "lpar": "(",
                                       "rpar": ")", "period": ".", "excl": "!", "quest": "?", "lt": "<", "gt": ">", "amp": "&",
                                       "quot": "\"", "apos": "'", "nbsp": " ", "equals": "=", "num": "#", "semi": ";"]
        var out = ""
        var rest = Substring(text)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            let after = rest[rest.index(after: amp)...]
            // Any number of leading zeros, as browsers read them.
            if let m = after.prefixMatch(of: /#[xX]0*([0-9a-fA-F]{1,6});?/), let v = UInt32(m.1, radix: 16), let u = Unicode.Scalar(v) {
                out.unicodeScalars.append(u)
                rest = after[m.range.upperBound...]
            } else if let m = after.prefixMatch(of: /#0*([0-9]{1,7});?/), let v = UInt32(m.1), let u = Unicode.Scalar(v) {
                out.unicodeScalars.append(u)
                rest = after[m.range.upperBound...]
            } else if let m = after.prefixMatch(of: /([a-zA-Z]+);/), let c = named[m.1.lowercased()] {
                out += c
                rest = after[m.range.upperBound...]
            } else {
                out += "&"
                rest = after
            }
        }
        return out + rest
    }

    func validate(_ r: PublishRequest) throws -> SemanticVersion {
        try Self.validatePlatform(r.platform)
        let v: SemanticVersion
        do { v = try SemanticVersion(parsing: r.version) } catch let e as SemanticVersion.ParseError {
            throw ServerError.badRequest(e.description)
        }
        guard let channel = DeliveryPolicy.Channel(rawValue: r.channel) else {
            throw ServerError.badRequest("invalid channel \"\(r.channel.prefix(32))\": stable or beta")
        }
        if v.isPrerelease && channel == .stable {
            throw ServerError.badRequest("pre-release \(v) can only be published to the beta channel")
        }
        guard r.changelog.utf8.count <= 1 << 20 else { throw ServerError.badRequest("changelog is larger than 1 MiB") }
        if let bad = Self.activeContent(in: r.changelog) {
            throw ServerError.badRequest("changelog must be plain text or Markdown, without active HTML (found \(bad))")
        }
        if try catalog.releases(platform: r.platform).contains(where: { $0.semanticVersion == v }) {
            throw ServerError.conflict("\(r.platform) \(v) is already published")
        }
        _ = try rollout(for: r, isFirst: false, now: Date())
        return v
    }

    /// The rollout a new release starts with: a platform's first release is complete at once (there is
    /// no earlier release to hold clients back on).
    func rollout(for r: PublishRequest, isFirst: Bool, now: Date) throws -> Rollout {
        if isFirst { return Rollout.complete(at: now) }
        do {
            return try Rollout(stages: r.stages ?? configuration.rolloutStages,
                               intervalSeconds: r.rolloutIntervalSeconds ?? configuration.rolloutIntervalSeconds, start: now)
        } catch let e as Rollout.RolloutError {
            throw ServerError.badRequest(e.description)
        }
    }

    /// How the server makes its bundles (full and deltas): its threads, under `make_memory_limit` (a
    /// limit of the server's own choosing is a plan, not an error, when a tree's lists outgrow it), in
    /// the layouts every client reads when `compatible_deltas`.
    public var bundleOptions: BundleOptions {
        var o = BundleOptions(threads: configuration.threads, memoryLimit: configuration.bundleMemoryLimit)
        o.strictMemoryLimit = configuration.makeMemoryLimit != nil
        if configuration.compatibleDeltas {
            o.diffOrder = .natural
            o.splitControl = false
        }
        return o
    }

    /// Publishes the directory `bundleDirectory` as a release: makes its full bundle, then queues deltas.
    public func publish(_ request: PublishRequest, bundleDirectory: String) throws -> ReleaseRecord {
        _ = try validate(request)
        let work = try scratch()
        defer { try? POSIX.removeTree(work) }
        let bundle = work + "/full.bundle"
        _ = try BundleMaker.make(oldRoot: nil, newRoot: bundleDirectory, to: bundle,
                                 options: bundleOptions)
        return try publish(request, fullBundle: bundle)
    }

    /// Publishes an uploaded full bundle (it is consumed). The bundle is verified by installing it into
    /// the server's tree store, which both checks it and keeps the tree for making later deltas.
    public func publish(_ request: PublishRequest, fullBundle: String) throws -> ReleaseRecord {
        let version = try validate(request)
        guard BundleApplier.isBundle(path: fullBundle) else { throw ServerError.badRequest("the upload is not a Phoenix bundle") }
        let info = try BundleApplier.inspect(bundlePath: fullBundle)
        guard info.full else { throw ServerError.badRequest("a release must be published as a full bundle (make --full)") }
        let platformDir = treesDirectory + "/" + request.platform
        try FileManager.default.createDirectory(atPath: platformDir, withIntermediateDirectories: true)
        let tree = platformDir + "/" + version.description
        // One publish of a version at a time, across threads and processes (a CI retry after a timeout,
        // the CLI beside the server): another's tree is never removed, only one left by a publish that
        // died. Under the lock the version is looked up again: a publish that finished between
        // `validate` and here owns the tree now.
        guard let lock = try FileLock(path: platformDir + "/." + version.description + ".lock", patience: 0) else {
            throw ServerError.conflict("\(request.platform) \(version) is being published by another request")
        }
        defer { lock.release() }
        if try catalog.releases(platform: request.platform).contains(where: { $0.semanticVersion == version }) {
            throw ServerError.conflict("\(request.platform) \(version) is already published")
        }
        // A tree without a catalog row is left over from a publish that died: start again.
        try POSIX.removeTree(tree)
        try POSIX.removeTree(platformDir + "/." + version.description + ".phoenix")
        do {
            try BundleApplier.apply(directory: tree, bundlePath: fullBundle, options: BundleApplyOptions(threads: configuration.threads))
        } catch {
            try? POSIX.removeTree(tree)
            throw ServerError.badRequest("the bundle does not install: \(error)")
        }
        try POSIX.removeTree(platformDir + "/." + version.description + ".phoenix")
        let stored = try store.add(fileAt: fullBundle)
        let record = ReleaseRecord(platform: request.platform, version: version.description, channel: request.channel,
                                   changelog: request.changelog, published: Date(), fullSHA256: stored.sha256,
                                   fullSize: stored.size, treeDigest: info.newTreeDigest, critical: request.critical)
        // From reading the releases to inserting this one, one publish of the platform at a time (the
        // versions' locks are another's each): a release committed between another publish's read and
        // its insert got no delta into it, and two first releases both skipped the phased rollout.
        guard let platformLock = try FileLock(path: platformDir + "/.catalog.lock", patience: 60) else {
            try? POSIX.removeTree(tree)
            throw ServerError.conflict("another publish of \(request.platform) held its catalog lock for a minute; try again")
        }
        defer { platformLock.release() }
        // Deltas into this one from the previous K releases of each channel that sees it.
        let published = try catalog.releases(platform: request.platform)
        let existing = published.compactMap { r in
            r.semanticVersion.flatMap { v in DeliveryPolicy.Channel(rawValue: r.channel).map { (version: v, channel: $0, record: r) } }
        }
        let sources = DeliveryPolicy.deltaSources(for: version, channel: DeliveryPolicy.Channel(rawValue: request.channel) ?? .beta,
                                                  among: existing.map { ($0.version, $0.channel) }, history: configuration.deltaHistory)
        let jobs = sources.compactMap { v in existing.first { $0.version == v } }
            .map { DeltaRecord(platform: request.platform, fromVersion: $0.record.version, toVersion: record.version, state: .pending) }
        let isFirst = published.isEmpty
        do {
            try catalog.insertRelease(record, pendingDeltas: jobs, rollout: try rollout(for: request, isFirst: isFirst, now: record.published))
        } catch {
            try? POSIX.removeTree(tree)
            throw error
        }
        invalidate()
        logger.info("published release", metadata: ["platform": "\(record.platform)", "version": "\(record.version)",
                                                    "size": "\(record.fullSize)", "deltas queued": "\(jobs.count)"])
        try? exportStatic(platform: request.platform)
        return record
    }

    /// Whether process `pid` exists (EPERM: it does, as another user's).
    static func isAlive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 || errno == EPERM }

    /// The process id a scratch directory's name starts with (`PID-UUID`), or nil for other names.
    static func owner(ofScratch name: String) -> pid_t? {
        guard let dash = name.firstIndex(of: "-"), let pid = Int32(name[..<dash]), pid > 0 else { return nil }
        return pid
    }

    func scratch() throws -> String {
        let dir = scratchDirectory + "/\(getpid())-" + UUID().uuidString
        try POSIX.mkdir(dir, mode: 0o700)
        return dir
    }

    // MARK: Delta jobs

    /// Makes every pending delta, one after another, each on all cores. Each delta is verified by
    /// applying it to a copy of its source tree and comparing the result with the target's digest, and
    /// dropped when it is not smaller than the policy threshold.
    public func runPendingJobs() {
        // This process's own claims are the jobs it is making, unless no other call here is making
        // any (asked at each claim): then they are jobs whose result the catalog could not take (busy
        // past its timeout), made again rather than left claimed for as long as the process lives.
        jobRuns.add(1, ordering: .sequentiallyConsistent)
        defer { jobRuns.subtract(1, ordering: .sequentiallyConsistent) }
        let token = claims.token
        let isAlive = { [self] (owner: String) in
            owner == token ? jobRuns.load(ordering: .sequentiallyConsistent) > 1 : claims.isAlive(owner)
        }
        while true {
            // Claimed, so that a server and a `phoenix-server publish` on the same data directory do not
            // both make it (each takes hundreds of MB); one left by a process that died is taken over.
            let next: DeltaRecord?
            do { next = try catalog.claimDelta(owner: token, isAlive: isAlive) } catch {
                logger.error("cannot read the job list", metadata: ["error": "\(error)"])
                return
            }
            guard var job = next else { return }
            do {
                job = try makeDelta(job)
            } catch {
                job.state = .failed
                job.error = "\(error)"
                logger.error("delta failed", metadata: ["platform": "\(job.platform)", "from": "\(job.fromVersion)",
                                                        "to": "\(job.toVersion)", "error": "\(error)"])
            }
            job.updated = Date()
            do { try catalog.updateDelta(job) } catch {
                logger.error("cannot record a delta", metadata: ["error": "\(error)"])
                return
            }
            invalidate()
            try? exportStatic(platform: job.platform)
        }
    }

    /// Runs the pending jobs on a background thread (coalescing requests while one run is going).
    public func startJobsInBackground() {
        lock.lock()
        if jobsRunning {
            jobsRequested = true
            lock.unlock()
            return
        }
        jobsRunning = true
        lock.unlock()
        Thread.detachNewThread { [self] in
            while true {
                runPendingJobs()
                // Making a delta takes hundreds of MB (suffix array, trees) on worker threads; give the
                // freed memory back to the system instead of keeping it in malloc's per-thread arenas.
                POSIX.releaseFreeMemory()
                lock.lock()
                if jobsRequested {
                    jobsRequested = false
                    lock.unlock()
                    continue
                }
                jobsRunning = false
                lock.unlock()
                return
            }
        }
    }

    /// Waits until no job runner is active (tests and the CLI).
    public func waitForJobs(timeout: TimeInterval = 600) {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            lock.lock()
            let busy = jobsRunning
            lock.unlock()
            if !busy { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    func makeDelta(_ job: DeltaRecord) throws -> DeltaRecord {
        var job = job
        let fromTree = treesDirectory + "/" + job.platform + "/" + job.fromVersion
        let toTree = treesDirectory + "/" + job.platform + "/" + job.toVersion
        guard let target = try catalog.releases(platform: job.platform).first(where: { $0.version == job.toVersion }) else {
            throw ServerError.notFound("release \(job.toVersion) is not in the catalog")
        }
        let work = try scratch()
        defer { try? POSIX.removeTree(work) }
        let bundle = work + "/delta.bundle"
        _ = try BundleMaker.make(oldRoot: fromTree, newRoot: toTree, to: bundle, options: bundleOptions)
        // Verify by applying it to a copy of the source tree.
        let copy = work + "/check"
        guard try POSIX.runProcess("/bin/cp", ["-a", fromTree, copy]) == 0 else { throw ServerError.publishFailed("cannot copy \(fromTree) to verify the delta") }
        let result = try BundleApplier.apply(directory: copy, bundlePath: bundle, options: BundleApplyOptions(threads: configuration.threads))
        guard result.newDigest == target.treeDigest else {
            throw ServerError.publishFailed("the delta \(job.fromVersion) -> \(job.toVersion) does not rebuild the release")
        }
        let size = UInt64(try POSIX.lstat(bundle).st_size)
        if Double(size) >= configuration.deltaThreshold * Double(target.fullSize) {
            job.state = .dropped
            job.size = size
            job.error = "\(size) bytes is not below \(configuration.deltaThreshold) x the full package (\(target.fullSize) bytes)"
            return job
        }
        let stored = try store.add(fileAt: bundle)
        job.state = .ready
        job.sha256 = stored.sha256
        job.size = stored.size
        job.error = nil
        logger.info("delta ready", metadata: ["platform": "\(job.platform)", "from": "\(job.fromVersion)", "to": "\(job.toVersion)",
                                              "size": "\(stored.size)", "full": "\(target.fullSize)"])
        return job
    }

    // MARK: Manifests and checks

    public func downloadPath(platform: String, version: String, from: String?) -> String {
        var path = "/api/version/download?version=\(version)&platform=\(platform)"
        if let from { path += "&from=\(from)" }
        return path
    }

    func url(platform: String, version: String, from: String?, sha256: String) -> String {
        if let base = configuration.baseURL {
            return base.hasSuffix("/") ? base + "packages/" + sha256 : base + "/packages/" + sha256
        }
        return downloadPath(platform: platform, version: version, from: from)
    }

    /// The manifest for a platform and channel: every visible release with its full package and ready
    /// deltas.
    public func manifest(platform: String, channel: DeliveryPolicy.Channel, now: Date = Date()) throws -> Manifest {
        let releases = try catalog.releases(platform: platform)
        guard !releases.isEmpty else { throw ServerError.notFound("unknown platform \"\(platform)\"") }
        let deltas = try catalog.deltas(platform: platform).filter { $0.state == .ready }
        let digests = Dictionary(releases.map { ($0.version, $0.treeDigest) }, uniquingKeysWith: { a, _ in a })
        var entries: [Manifest.Release] = []
        for r in releases {
            guard let v = r.semanticVersion, let ch = DeliveryPolicy.Channel(rawValue: r.channel),
                  DeliveryPolicy.isVisible(version: v, releaseChannel: ch, to: channel) else { continue }
            let ds = deltas.filter { $0.toVersion == r.version }.compactMap { d -> Manifest.Delta? in
                guard let from = try? SemanticVersion(parsing: d.fromVersion), let sha = d.sha256, let size = d.size,
                      let fromDigest = digests[d.fromVersion] else { return nil }
                return Manifest.Delta(from: from, size: size, sha256: sha,
                                      url: url(platform: platform, version: r.version, from: d.fromVersion, sha256: sha),
                                      fromTreeDigest: fromDigest)
            }.sorted { $0.from < $1.from }
            entries.append(Manifest.Release(
                version: v, channel: r.channel, published: r.published, changelog: r.changelog, treeDigest: r.treeDigest,
                full: Manifest.Package(size: r.fullSize, sha256: r.fullSHA256,
                                       url: url(platform: platform, version: r.version, from: nil, sha256: r.fullSHA256)),
                deltas: ds, critical: r.critical))
        }
        entries.sort { $0.version < $1.version }
        let now = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        return Manifest(manifestVersion: try catalog.revision(), platform: platform, channel: channel.rawValue, generatedAt: now,
                        expires: now.addingTimeInterval(TimeInterval(configuration.manifestLifetimeSeconds)), releases: entries)
    }

    /// The signed manifest, cached until the catalog changes or half its lifetime has passed (`now`:
    /// tests move the clock). `fresh`: the catalog's revision is read now, not taken as last seen (up
    /// to `revisionPoll` ago), so that the manifest lists at least what the catalog held before the call.
    public func signedManifest(platform: String, channel: DeliveryPolicy.Channel, now: Date = Date(),
                               fresh: Bool = false) throws -> SignedEnvelope {
        guard let key = signingKey else { throw ServerError.noSigningKey }
        let key2 = platform + "\u{0}" + channel.rawValue
        let revision = fresh ? try freshRevision() : try currentRevision()
        lock.lock()
        if let cached = manifestCache[key2], cached.revision == revision,
           now.timeIntervalSince(cached.built) < Double(configuration.manifestLifetimeSeconds) / 2 {
            lock.unlock()
            return cached.envelope
        }
        lock.unlock()
        var envelope = try SignedEnvelope.sign(try manifest(platform: platform, channel: channel, now: now).encoded(), with: [key])
        if !rotations.isEmpty { envelope.rotations = rotations }
        lock.lock()
        manifestCache[key2] = (revision, now, envelope)
        lock.unlock()
        return envelope
    }

    /// How long a catalog revision read is taken as current (tests lengthen it).
    @TaskLocal static var revisionPoll: TimeInterval = 1

    /// The catalog revision, read at most once a second (another process may publish to the same data
    /// directory; in-process changes are seen at once because they go through `invalidate()`).
    func currentRevision() throws -> UInt64 {
        lock.lock()
        if let r = revisionSeen, Date().timeIntervalSince(r.at) < Self.revisionPoll {
            lock.unlock()
            return r.value
        }
        lock.unlock()
        return try freshRevision()
    }

    /// The catalog revision, read now (and remembered as last seen).
    func freshRevision() throws -> UInt64 {
        let v = try catalog.revision()
        lock.lock()
        revisionSeen = (v, Date())
        lock.unlock()
        return v
    }

    func invalidate() {
        lock.lock()
        revisionSeen = nil
        lock.unlock()
    }

    /// The JSON bytes of a check response, cached per platform, channel, version, the set of partly
    /// rolled-out releases the client is inside, and its variant, until the catalog changes (or for a
    /// minute, so that the embedded manifest is renewed well before it expires).
    public func checkResponseJSON(current: SemanticVersion, platform: String, channel: DeliveryPolicy.Channel,
                                  client: CheckClient = CheckClient(), now: Date = Date()) throws -> [UInt8] {
        let revision = try currentRevision()
        let gate = try rolloutGate(platform: platform, revision: revision, client: client, now: now)
        let variant = assignedVariant(client)
        let key = [platform, channel.rawValue, current.description, gate.key, variant?.name ?? ""].joined(separator: "\u{0}")
        lock.lock()
        // A minute at most, and a quarter of the manifest's lifetime: the manifest inside was signed up
        // to half its lifetime before, so what is served always has a quarter of its lifetime left.
        if let hit = checkCache[key], hit.revision == revision,
           Date().timeIntervalSince(hit.built) < min(60, Double(configuration.manifestLifetimeSeconds) / 4) {
            lock.unlock()
            return hit.bytes
        }
        lock.unlock()
        let bytes = Array(try WireJSON.encoder().encode(try check(current: current, platform: platform, channel: channel,
                                                                  gate: gate, variant: variant)))
        lock.lock()
        if checkCache.count > 10_000 { checkCache.removeAll() }
        checkCache[key] = (revision, Date(), bytes)
        lock.unlock()
        return bytes
    }

    /// Answers a client at `current` on `platform`/`channel` with the policy's decision, among the
    /// releases whose rollout offers them to this client.
    public func check(current: SemanticVersion, platform: String, channel: DeliveryPolicy.Channel,
                      client: CheckClient = CheckClient(), now: Date = Date()) throws -> CheckResponse {
        let gate = try rolloutGate(platform: platform, revision: try currentRevision(), client: client, now: now)
        return try check(current: current, platform: platform, channel: channel, gate: gate, variant: assignedVariant(client))
    }

    func check(current: SemanticVersion, platform: String, channel: DeliveryPolicy.Channel, gate: RolloutGate,
               variant: AssignedVariant?) throws -> CheckResponse {
        let releases = try catalog.releases(platform: platform)
        guard !releases.isEmpty else { throw ServerError.notFound("unknown platform \"\(platform)\"") }
        let deltas = try catalog.deltas(platform: platform).filter { $0.state == .ready }
        let candidates = releases.compactMap { r -> DeliveryPolicy.Candidate? in
            guard let v = r.semanticVersion, let ch = DeliveryPolicy.Channel(rawValue: r.channel),
                  gate.offers(r.version, critical: r.critical) else { return nil }
            var map: [SemanticVersion: UInt64] = [:]
            for d in deltas where d.toVersion == r.version {
                if let from = try? SemanticVersion(parsing: d.fromVersion), let size = d.size { map[from] = size }
            }
            return DeliveryPolicy.Candidate(version: v, channel: ch, fullSize: r.fullSize, deltas: map)
        }
        let decision = DeliveryPolicy(deltaThreshold: configuration.deltaThreshold).decide(current: current, channel: channel, releases: candidates)
        // The offer comes from the catalog as read just now, so the manifest must be at least as new:
        // a revision last seen up to a second ago could predate a release or delta that another
        // process (`phoenix-server publish`) added since, and the client would refuse the offer as not
        // in the signed manifest.
        let envelope = try signedManifest(platform: platform, channel: channel, fresh: true)
        func release(_ v: SemanticVersion) -> ReleaseRecord? {
            releases.first { $0.semanticVersion == v }
        }
        switch decision {
        case .upToDate:
            return CheckResponse(updateAvailable: false, currentVersion: current, latestVersion: nil, kind: nil, fromVersion: nil,
                                 downloadURL: nil, size: nil, sha256: nil, changelog: nil, critical: nil, manifest: envelope,
                                 variant: variant)
        case .delta(let to, let from, let size):
            let r = release(to)!
            let d = deltas.first { $0.toVersion == r.version && $0.fromSemanticVersion == from }!
            return CheckResponse(updateAvailable: true, currentVersion: current, latestVersion: to, kind: "delta", fromVersion: from,
                                 downloadURL: url(platform: platform, version: r.version, from: d.fromVersion, sha256: d.sha256 ?? ""),
                                 size: size, sha256: d.sha256, changelog: r.changelog, critical: r.critical, manifest: envelope,
                                 variant: variant)
        case .full(let to, let size):
            let r = release(to)!
            return CheckResponse(updateAvailable: true, currentVersion: current, latestVersion: to, kind: "full", fromVersion: nil,
                                 downloadURL: url(platform: platform, version: r.version, from: nil, sha256: r.fullSHA256),
                                 size: size, sha256: r.fullSHA256, changelog: r.changelog, critical: r.critical, manifest: envelope,
                                 variant: variant)
        }
    }

    /// The stored package for a download request: the full bundle of `version`, or the ready delta
    /// from `from`.
    public func package(platform: String, version: SemanticVersion, from: SemanticVersion?) throws -> (path: String, sha256: String, size: UInt64) {
        let releases = try catalog.releases(platform: platform)
        guard !releases.isEmpty else { throw ServerError.notFound("unknown platform \"\(platform)\"") }
        guard let r = releases.first(where: { $0.semanticVersion == version }) else {
            throw ServerError.notFound("\(platform) has no version \(version)")
        }
        var sha = r.fullSHA256
        if let from {
            guard let d = try catalog.deltas(platform: platform).first(where: {
                $0.toVersion == r.version && $0.state == .ready && $0.fromSemanticVersion == from
            }), let dsha = d.sha256 else {
                throw ServerError.notFound("there is no delta from \(from) to \(version) for \(platform)")
            }
            sha = dsha
        }
        guard let path = store.path(for: sha) else { throw ServerError.notFound("package \(sha) is missing from the store") }
        return (path, sha, UInt64(try POSIX.lstat(path).st_size))
    }

    // MARK: Static export

    /// Re-exports the static manifests of every platform whose files expire within half the manifest
    /// lifetime (or that this process has not exported yet): nothing else re-signs them, and a CDN
    /// serving an expired manifest stops every client that reads it. The ticker calls this.
    public func refreshStaticManifests(now: Date = Date()) {
        guard signingKey != nil else { return }
        let platforms: [String]
        do { platforms = try catalog.platforms() } catch {
            logger.error("static manifest export failed", metadata: ["error": "\(error)"])
            return
        }
        for platform in platforms {
            lock.lock()
            let expires = staticExpiry[platform]
            lock.unlock()
            if let expires, expires.timeIntervalSince(now) > Double(configuration.manifestLifetimeSeconds) / 2 { continue }
            // Each platform on its own: one that fails (a directory it cannot write) must not keep
            // the others from being re-signed.
            do { try exportStatic(platform: platform, now: now) } catch {
                logger.error("static manifest export failed", metadata: ["platform": "\(platform)", "error": "\(error)"])
            }
        }
    }

    /// Writes the signed manifests of `platform` and links its packages under `static/`, so that a CDN
    /// or object store can serve the same files (`static/manifest/P/CHANNEL.json`, `static/packages/SHA`).
    public func exportStatic(platform: String, now: Date = Date()) throws {
        guard signingKey != nil else { return }
        var earliest = Date.distantFuture
        let manifestDir = staticDirectory + "/manifest/" + platform
        let packageDir = staticDirectory + "/packages"
        try FileManager.default.createDirectory(atPath: manifestDir, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: packageDir, withIntermediateDirectories: true)
        for channel in DeliveryPolicy.Channel.allCases {
            let envelope = try signedManifest(platform: platform, channel: channel, now: now)
            if let payload = Data(base64Encoded: envelope.payload), let m = try? Manifest.decode(Array(payload)) {
                earliest = min(earliest, m.expires)
            } else {
                earliest = now  // unreadable: exported again at the next tick
            }
            let bytes = try WireJSON.encoder(pretty: true).encode(envelope)
            let w = try AtomicFileWriter(destination: manifestDir + "/" + channel.rawValue + ".json", mode: 0o644)
            try bytes.withUnsafeBytes { try w.write($0) }
            try w.commit()
            let m = try manifest(platform: platform, channel: channel)
            for r in m.releases {
                for sha in [r.full.sha256] + r.deltas.map(\.sha256) {
                    let target = packageDir + "/" + sha
                    if !POSIX.exists(target), let src = store.path(for: sha), !POSIX.link(src, target) {
                        try POSIX.copyFile(from: src, to: target, mode: 0o644)
                    }
                }
            }
        }
        // Recorded only once every channel is written: a failed export is tried again at the next tick.
        lock.lock()
        staticExpiry[platform] = earliest
        lock.unlock()
    }
}
