import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import TestSupport
import TreeIO
import UpdateClient
import UpdateModels
import UpdateServer

/// The client's download directory on a small tmpfs: a package that cannot fit is refused before a
/// byte is written, a disk that fills up mid-download stops it cleanly; the installation is untouched
/// and no partial file stays behind.
@Suite(.serialized) struct ClientDiskFullTests {
    /// 1.0.0 (small) and 2.0.0 (3 MB of random bytes: a major jump, so a full download).
    static func withServer(_ body: @escaping @Sendable (ServerFixture, String) async throws -> Void) async throws {
        let f = try ServerFixture(publish: false)
        var rng = SeededGenerator(seed: 21)
        try TreeSpec.build(f.dir.file("v1"), [.text("VERSION", "1.0.0")])
        try TreeSpec.build(f.dir.file("v2"), [.text("VERSION", "2.0.0"), .file("big.bin", rng.bytes(3 << 20))])
        _ = try f.service.publish(.init(platform: "desktop", version: "1.0.0"), bundleDirectory: f.dir.file("v1"))
        _ = try f.service.publish(.init(platform: "desktop", version: "2.0.0"), bundleDirectory: f.dir.file("v2"))
        f.service.runPendingJobs()
        try await buildApplication(service: f.service).test(.live) { client in
            try await body(f, "http://127.0.0.1:\(client.port!)")
        }
    }

    /// A client whose settings, state and downloads live in `home` (on the small file system).
    static func client(_ f: ServerFixture, _ url: String, home: String) throws -> Updater {
        let install = f.dir.file("installed-\(UUID().uuidString)")
        try TreeSpec.copy(f.dir.file("v1"), install)
        let paths = ClientPaths(config: home + "/config.json")
        var s = ClientSettings()
        try s.set("server_url", url)
        try s.set("public_key", f.publicKey.base64)
        try s.set("platform", "desktop")
        try s.set("install_dir", install)
        try s.set("current_version", "1.0.0")
        s.telemetry = false
        try paths.save(s)
        return try Updater(paths: paths)
    }

    @Test func aPackageThatCannotFitIsRefusedUpFront() async throws {
        guard let fs = try SmallFileSystem.mount(kilobytes: 1024) else { return }
        defer { SmallFileSystem.unmount(fs) }
        try await Self.withServer { f, url in
            let u = try Self.client(f, url, home: fs + "/client")
            let before = try TreeSpec.digest(u.settings.installDir)
            await #expect { _ = try await u.install() } throws: { ($0 as? ClientError)?.category == "disk_full" }
            #expect(try TreeSpec.digest(u.settings.installDir) == before)
            #expect(u.settings.currentVersion == "1.0.0")
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: u.paths.downloads)) ?? []).isEmpty)
        }
    }

    @Test func aDiskThatFillsUpMidDownloadStopsCleanly() async throws {
        guard let fs = try SmallFileSystem.mount(kilobytes: 6144) else { return }
        defer { SmallFileSystem.unmount(fs) }
        try await Self.withServer { f, url in
            let u = try Self.client(f, url, home: fs + "/client")
            let before = try TreeSpec.digest(u.settings.installDir)
            let filler = Box<String?>(nil)
            // After the first bytes arrive, something else takes all the free space.
            await #expect {
                _ = try await u.install { _ in filler.setIfNil(SmallFileSystem.fill(fs)) }
            } throws: { error in
                guard let e = error as? ClientError, e.category == "disk_full" else { return false }
                return e.description.contains("No space left on device")
            }
            #expect(filler.value != nil, "the download never reported progress")
            #expect(try TreeSpec.digest(u.settings.installDir) == before)
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: u.paths.downloads)) ?? []).isEmpty,
                    "the partial download was left behind")
            // Space back: the update goes through.
            if let path = filler.value { try POSIX.unlink(path) }
            let r = try await Updater(paths: u.paths).install()
            #expect(r.version == "2.0.0" && r.kind == "full")
            #expect(try TreeSpec.digest(u.settings.installDir) == TreeSpec.digest(f.dir.file("v2")))
        }
    }
}
