import DiffEngine
import Foundation
import PatchFormat
import Patcher
import Testing
import TestSupport
import TreeIO

/// A small tmpfs (needs root, as CI has): an update that cannot fit is refused before anything is
/// written, and the installation is untouched.
@Suite(.serialized) struct DiskSpaceTests {
    static func smallFileSystem(kilobytes: Int) throws -> String? { try SmallFileSystem.mount(kilobytes: kilobytes) }
    static func unmount(_ path: String) { SmallFileSystem.unmount(path) }

    @Test func bundleThatDoesNotFitIsRefusedUpFront() throws {
        guard let fs = try Self.smallFileSystem(kilobytes: 1024) else { return }
        defer { Self.unmount(fs) }
        let work = try TemporaryDirectory()
        var rng = SeededGenerator(seed: 3)
        try TreeSpec.build(work.file("v1"), [.text("a.txt", "small")])
        try TreeSpec.build(work.file("v2"), [.text("a.txt", "small"), .file("big.bin", rng.bytes(1_500_000))])
        _ = try BundleMaker.make(oldRoot: work.file("v1"), newRoot: work.file("v2"), to: work.file("b"))
        let install = fs + "/app"
        try TreeSpec.copy(work.file("v1"), install)
        let before = try TreeSpec.digest(install)
        #expect {
            try BundleApplier.apply(directory: install, bundlePath: work.file("b"))
        } throws: { error in
            guard case PatcherError.insufficientSpace(_, let needed, let available) = error else { return false }
            return needed > available
        }
        #expect(try TreeSpec.digest(install) == before)
        #expect(!POSIX.exists(fs + "/.app.phoenix/staging"))
    }

    /// Writing behind (`AtomicFileWriter(behind: true)`), a write that fails on the other thread is
    /// thrown by a later call, before anything is committed, and abort leaves nothing.
    @Test func aWriteThatFailsBehindIsThrownAndLeavesNothing() throws {
        guard let fs = try Self.smallFileSystem(kilobytes: 512) else { return }
        defer { Self.unmount(fs) }
        var rng = SeededGenerator(seed: 5)
        let piece = rng.bytes(64 << 10)
        let w = try AtomicFileWriter(destination: fs + "/out", behind: true)
        var thrown: (any Error)?
        do {
            for _ in 0..<64 { try piece.withUnsafeBytes { try w.write($0) } }
            _ = try w.digest()
            try w.commit()
        } catch {
            thrown = error
        }
        guard case TreeIOError.io(let operation, let path, let code, _)? = thrown as? TreeIOError else {
            Issue.record("expected a write error, got \(String(describing: thrown))")
            return
        }
        #expect(operation == "cannot write" && code == ENOSPC)
        // Named by the destination, which the user knows (the temporary file is gone by then), and the temporary file.
        #expect(path.hasPrefix(fs + "/out (as its temporary file ") && path.contains(POSIX.fileName(of: w.temporaryPath)), "\(path)")
        w.abort()
        #expect(try FileManager.default.contentsOfDirectory(atPath: fs) == [])
    }

    @Test func filePatchThatDoesNotFitIsRefusedUpFront() throws {
        guard let fs = try Self.smallFileSystem(kilobytes: 512) else { return }
        defer { Self.unmount(fs) }
        let work = try TemporaryDirectory()
        var rng = SeededGenerator(seed: 4)
        let old = rng.bytes(100_000)
        let new = old + rng.bytes(900_000)
        try work.write("patch", try DiffEngine.makePatch(old: old, new: new))
        let target = fs + "/app.bin"
        try Data(old).write(to: URL(fileURLWithPath: target))
        #expect {
            try PatchApplier.applyInPlace(path: target, patchPath: work.file("patch"))
        } throws: { error in
            guard case PatcherError.insufficientSpace = error else { return false }
            return true
        }
        #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: target))) == old)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fs) == ["app.bin"])
    }
}
