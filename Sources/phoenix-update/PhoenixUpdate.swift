import ArgumentParser
import Foundation
import UpdateClient
import UpdateModels

@main
struct PhoenixUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "phoenix-update",
        abstract: "Keep an installed application up to date from a Phoenix update server.",
        discussion: """
            Exit codes: 0 ok (or up to date), 1 usage or configuration, 2 verification failed (signature, TLS, \
            expiry, replay, checksum): nothing installed, 3 install failed (rolled back or untouched), \
            4 network or server error, 5 busy: another run or update holds a lock (nothing done).
            """,
        version: "0.1.0",
        subcommands: [Check.self, Install.self, Rollback.self, Status.self, Confirm.self, Launched.self, Settings.self]
    )
}

struct Common: ParsableArguments {
    @Option(help: "Settings file (default: $XDG_CONFIG_HOME/phoenix-update/config.json).") var config: String?
    @Flag(help: "Print JSON (progress events too, one per line).") var json = false
    @Flag(help: "Allow plain http:// to hosts other than loopback.") var allowInsecure = false

    func updater() throws -> Updater {
        try Updater(paths: ClientPaths(config: config), allowInsecure: allowInsecure)
    }
}

func emit<T: Encodable>(_ value: T) {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    e.dateEncodingStrategy = .iso8601
    if let d = try? e.encode(value) { print(String(decoding: d, as: UTF8.self)) }
}

func exitCode(for error: Error) -> Int32 {
    guard let e = error as? ClientError else { return 1 }
    switch e {
    case .notConfigured, .badSetting, .badFile, .insecureURL: return 1
    case .verification, .checksum, .tls: return 2
    case .install: return 3
    case .network, .server: return 4
    case .busy: return 5
    case .nothingToDo: return 0
    }
}

/// Runs a command body, turning errors into one stderr line (or a JSON error) and the exit code.
func guarded(_ json: Bool, _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let e as ClientError {
        if json {
            emit(["error": ["category": e.category, "message": e.description]])
        } else {
            FileHandle.standardError.write(Data("phoenix-update: \(e.description)\n".utf8))
        }
        throw ExitCode(exitCode(for: e))
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Ask the server whether an update is available.")
    @OptionGroup var common: Common
    @Flag(help: "Check now, whatever the frequency and Retry-After say.") var force = false
    @Flag(help: "A check the user asked for: implies --force and bypasses the server's phased rollout.") var manual = false

    func run() async throws {
        try await guarded(common.json) {
            let u = try common.updater()
            let result = try await u.check(force: force || manual, manual: manual)
            switch result {
            case .notDue(let next) where next == .distantFuture:
                // frequency on-demand: no check is ever due.
                if common.json { emit(["status": "not_due", "frequency": "on-demand"]) } else {
                    print("not due: checks are on demand (frequency on-demand; use --force or --manual)")
                }
            case .notDue(let next):
                if common.json { emit(["status": "not_due", "next_check": ISO8601DateFormatter().string(from: next)]) } else {
                    print("not due: next check after \(next) (use --force)")
                }
            case .upToDate:
                if common.json { emit(["status": "up_to_date", "version": u.settings.currentVersion]) } else {
                    print("up to date (\(u.settings.currentVersion))")
                }
            case .available(let offer):
                if common.json { emit(offer) } else {
                    print("update available: \(u.settings.currentVersion) -> \(offer.version) as a \(offer.kind) of \(offer.package.size) bytes (full package \(offer.full.size) bytes)")
                    if let v = u.state.variant { print("notification style: \(v.notificationStyle ?? "default") (experiment \(v.experiment), variant \(v.name))") }
                    if !offer.changelog.isEmpty { print("\n" + offer.changelog) }
                }
                if u.settings.autoUpdate {
                    let r = try await u.install(manual: manual)
                    if common.json { emit(r) } else { print("auto_update is on: installed \(r.version) by \(r.kind)") }
                }
            }
        }
    }
}

struct Install: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Download, verify and install the available update.")
    @OptionGroup var common: Common
    @Flag(help: "Do not ask for confirmation.") var yes = false
    @Flag(help: "The user asked for this update: bypass the server's phased rollout.") var manual = false

    func run() async throws {
        try await guarded(common.json) {
            let u = try common.updater()
            if !yes && isatty(0) == 1 && !common.json {
                if case .available(let offer) = try await u.check(force: true, manual: manual) {
                    print("install \(offer.version) (\(offer.kind), \(offer.package.size) bytes)? [y/N] ", terminator: "")
                    guard readLine()?.lowercased().hasPrefix("y") == true else { return }
                }
            }
            let json = common.json
            let tty = isatty(2) == 1 && !json
            let result = try await u.install(manual: manual) { p in
                if json {
                    emit(["event": "progress", "received": "\(p.received)", "total": "\(p.total)"])
                } else if tty {
                    let f = p.total == 0 ? 1 : Double(p.received) / Double(p.total)
                    let left = p.bytesPerSecond > 0 ? Double(p.total - p.received) / p.bytesPerSecond : 0
                    FileHandle.standardError.write(Data(String(format: "\r%3.0f%% %llu/%llu bytes %.1f MB/s %.0fs left\u{1B}[K",
                                                               f * 100, p.received, p.total, p.bytesPerSecond / 1e6, left).utf8))
                }
            }
            if tty { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            if json { emit(result) } else {
                print("installed \(result.version) (was \(result.previousVersion)) by \(result.kind): downloaded \(result.downloadedBytes) bytes, the full package is \(result.fullSize)")
                if let why = result.deltaFallbackReason { print("note: \(why)") }
                if let until = result.pendingUntil { print("waiting for `phoenix-update confirm` until \(until); otherwise it is rolled back") }
            }
        }
    }
}

struct Rollback: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Restore the version installed before the last update.")
    @OptionGroup var common: Common
    func run() async throws {
        try await guarded(common.json) {
            let u = try common.updater()
            let version = try u.rollback()
            await u.flushReports()
            if common.json { emit(["status": "rolled_back", "version": version]) } else { print("rolled back to \(version)") }
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the installed version, pending update and settings.")
    @OptionGroup var common: Common
    func run() async throws {
        try await guarded(common.json) {
            let s = try common.updater().status()
            if common.json { emit(s) } else {
                print("version \(s.currentVersion) on \(s.platform) (\(s.channel)), from \(s.serverURL.isEmpty ? "(no server set)" : s.serverURL)")
                print("installed at \(s.installDir.isEmpty ? "(not set)" : s.installDir); rollback \(s.rollbackAvailable ? "available" : "not available")")
                if let p = s.pending { print("pending: \(p.version) must be confirmed by \(p.deadline)") }
                print("last check: \(s.lastCheck.map { "\($0)" } ?? "never")")
            }
        }
    }
}

struct Confirm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mark the installed update as working (the new version calls this).")
    @OptionGroup var common: Common
    func run() async throws {
        try await guarded(common.json) {
            let u = try common.updater()
            try u.confirm()
            if common.json { emit(["status": "confirmed", "version": u.settings.currentVersion]) } else {
                print("confirmed \(u.settings.currentVersion)")
            }
        }
    }
}

struct Launched: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Report a start of the new version; too many starts without a confirmation roll it back.")
    @OptionGroup var common: Common
    func run() async throws {
        try await guarded(common.json) {
            let u = try common.updater()
            let rolledBack = try u.launched()
            await u.flushReports()
            if common.json { emit(["rolled_back": rolledBack ? "true" : "false", "version": u.settings.currentVersion]) } else {
                print(rolledBack ? "rolled back to \(u.settings.currentVersion): the update never confirmed" : "noted")
            }
        }
    }
}

struct Settings: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show settings, or set one: settings set KEY VALUE.",
        discussion: "Keys: \(ClientSettings.settableKeys.joined(separator: ", ")).")
    @OptionGroup var common: Common
    @Argument(help: "show, or set KEY VALUE") var words: [String] = []

    func run() async throws {
        try await guarded(common.json) {
            let paths = ClientPaths(config: common.config)
            let loaded = try paths.loadSettings()
            var s = loaded
            switch words.first ?? "show" {
            case "show":
                guard words.count <= 1 else { throw ValidationError("settings show takes no arguments") }
            case "set":
                guard words.count == 3 else { throw ValidationError("usage: settings set KEY VALUE") }
                try s.set(words[1], words[2])
                s = try paths.save(s, since: loaded)
            default:
                throw ValidationError("usage: settings [show | set KEY VALUE]")
            }
            if common.json { emit(s) } else {
                let e = JSONEncoder()
                e.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try e.encode(s), as: UTF8.self))
            }
        }
    }
}
