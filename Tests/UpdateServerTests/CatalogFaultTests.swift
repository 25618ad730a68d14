import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import TestSupport
import TreeIO
import UpdateModels
import UpdateServer

/// The catalog database locked by another process, or corrupted: a clear error and no data lost.
@Suite(.serialized) struct CatalogFaultTests {
    @Test func aCorruptedCatalogIsReportedAndLeftAsItIs() throws {
        let f = try ServerFixture(publish: false)
        let path = f.service.configuration.dataDirectory + "/catalog.sqlite"
        var rng = SeededGenerator(seed: 4)
        let garbage = rng.bytes(64 << 10)
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        try garbage.withUnsafeBytes { try POSIX.writeNewFile(path, $0, mode: 0o600) }
        #expect {
            _ = try UpdateService(configuration: f.service.configuration)
        } throws: { error in
            guard case ServerError.badConfiguration(let m) = error else { return false }
            return m.contains(path) && m.contains("left unchanged")
        }
        let status = try Run.process(Run.product("phoenix-server"), ["status", "--data", f.service.configuration.dataDirectory])
        #expect(status.status != 0 && status.stderr.contains("catalog.sqlite"), "\(status.stderr)")
        #expect(try POSIX.readFile(path) == garbage, "the damaged catalog must not be overwritten")
    }

    @Test func aLockedCatalogStillAnswersChecksAndWritesGet503WithRetryAfter() async throws {
        let f = try ServerFixture { $0.catalogBusyTimeoutSeconds = 0.3 }
        let path = f.service.configuration.dataDirectory + "/catalog.sqlite"
        let before = try f.service.catalog.releases(platform: ServerFixture.platform).count
        // Another process takes the write lock and keeps it.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        holder.arguments = ["python3", "-c", """
            import sqlite3, sys, time
            c = sqlite3.connect(sys.argv[1], isolation_level=None)
            c.execute("BEGIN EXCLUSIVE")
            print("locked", flush=True)
            time.sleep(60)
            """, path]
        let out = Pipe()
        holder.standardOutput = out
        try holder.run()
        // SIGKILL: a child of the test runner may start with SIGTERM blocked.
        defer { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() }
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        #expect(line.contains("locked"))
        let event = TelemetryEvent(clientID: "c1", platform: ServerFixture.platform, channel: "stable", stage: .check, outcome: "success",
                                   fromVersion: "1.0.0", toVersion: nil, kind: nil, durationMs: 3)
        try await buildApplication(service: f.service).test(.router) { client in
            // Reads go on (WAL): checks are answered.
            try await client.execute(uri: "/api/version/check?current_version=1.0.0&platform=\(ServerFixture.platform)", method: .get) { r in
                #expect(r.status == .ok)
            }
            // A write waits for the lock, then says so: 503, Retry-After, a JSON error naming the cause.
            try await client.execute(uri: "/api/telemetry", method: .post, body: ByteBuffer(bytes: try WireJSON.encoder().encode(event))) { r in
                #expect(r.status == .serviceUnavailable)
                #expect(r.headers[.retryAfter] == "5")
                #expect(String(buffer: r.body).contains("locked by another process"))
            }
        }
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        // The lock gone, the same write succeeds and nothing was lost.
        try f.service.catalog.insertTelemetry(event, received: Date())
        #expect(try f.service.catalog.releases(platform: ServerFixture.platform).count == before)
    }
}
