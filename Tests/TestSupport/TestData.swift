import Foundation

/// A small, fast, seedable generator (SplitMix64), so that every random test can print its seed and be
/// replayed exactly.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(count + 8)
        while out.count < count {
            withUnsafeBytes(of: next()) { out.append(contentsOf: $0) }
        }
        return Array(out.prefix(count))
    }
}

public enum TestData {
    /// "Executable-like" data: a mix of random bytes, small-alphabet runs and repeated records, so that
    /// diffs see both matchable structure and noise.
    public static func structured(_ count: Int, rng: inout SeededGenerator) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(count)
        let records = (0..<16).map { _ in rng.bytes(Int(rng.next() % 48) + 8) }
        while out.count < count {
            switch rng.next() % 4 {
            case 0: out.append(contentsOf: rng.bytes(Int(rng.next() % 200) + 1))
            case 1: out.append(contentsOf: records[Int(rng.next() % 16)])
            case 2:
                let b = UInt8(truncatingIfNeeded: rng.next())
                out.append(contentsOf: repeatElement(b, count: Int(rng.next() % 64) + 1))
            default:
                for _ in 0..<(Int(rng.next() % 32) + 1) { out.append(UInt8(0x41 + rng.next() % 26)) }
            }
        }
        return Array(out.prefix(count))
    }

    /// A "new version" of `old`: substitutions, insertions, deletions and a moved block, each random.
    public static func mutate(_ old: [UInt8], edits: Int, rng: inout SeededGenerator) -> [UInt8] {
        var new = old
        for _ in 0..<edits {
            let kind = rng.next() % 5
            let at = new.isEmpty ? 0 : Int(rng.next() % UInt64(new.count))
            switch kind {
            case 0 where !new.isEmpty:
                new[at] = UInt8(truncatingIfNeeded: rng.next())
            case 1:
                new.insert(contentsOf: rng.bytes(Int(rng.next() % 300) + 1), at: at)
            case 2 where !new.isEmpty:
                let n = min(Int(rng.next() % 300) + 1, new.count - at)
                new.removeSubrange(at..<at + n)
            case 3 where new.count > 16:
                // Move a block elsewhere.
                let n = min(Int(rng.next() % 2000) + 1, new.count - at)
                let block = Array(new[at..<at + n])
                new.removeSubrange(at..<at + n)
                let to = new.isEmpty ? 0 : Int(rng.next() % UInt64(new.count))
                new.insert(contentsOf: block, at: to)
            default:
                // Shift a run of bytes by a constant, like relocated addresses in code.
                let n = min(Int(rng.next() % 64) + 1, new.count - at)
                let delta = UInt8(truncatingIfNeeded: rng.next() % 7 + 1)
                for i in at..<at + n { new[i] &+= delta }
            }
        }
        return new
    }

    /// A fresh seed from the clock, or the one in PHOENIX_TEST_SEED to replay a failure.
    public static func seed() -> UInt64 {
        if let s = ProcessInfo.processInfo.environment["PHOENIX_TEST_SEED"], let v = UInt64(s) { return v }
        return UInt64(Date().timeIntervalSince1970 * 1_000_000) ^ UInt64(ProcessInfo.processInfo.processIdentifier)
    }
}

/// A scratch directory removed at deinit.
public final class TemporaryDirectory {
    public let path: String

    public init() throws {
        var template = Array((NSTemporaryDirectory() + "/phoenix-test-XXXXXX").utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw CocoaError(.fileWriteUnknown)
        }
        path = String(cString: p)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    public func file(_ name: String) -> String { path + "/" + name }

    @discardableResult
    public func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let p = file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    public func read(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: file(name))))
    }

    /// Names in the directory, sorted.
    public func listing() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: path).sorted()
    }
}

/// Runs a program and captures its exit status and output.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    /// True when the process was ended by a signal (status then holds the signal number).
    public var signaled: Bool = false
}

public enum Run {
    /// Runs `executable` with `arguments`; stdin is empty.
    public static func process(_ executable: String, _ arguments: [String], cwd: String? = nil,
                               environment: [String: String] = [:]) throws -> ProcessResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if !environment.isEmpty {
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try spawnWithNoSignalsBlocked { try p.run() }
        // Read both pipes fully before waiting, so a chatty child cannot block on a full pipe.
        let group = DispatchGroup()
        nonisolated(unsafe) var outData = Data(), errData = Data()
        group.enter()
        DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        errData = err.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return ProcessResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                             stderr: String(decoding: errData, as: UTF8.self),
                             signaled: p.terminationReason == .uncaughtSignal)
    }

    /// Runs `spawn` with no signal blocked on this thread, so that the child it starts inherits none.
    /// Tests run on libdispatch's worker threads, which block every asynchronous signal, and
    /// Foundation's `Process` passes the mask on: a shell started so waits forever in `wait` for a child
    /// that is still running (dash sleeps in `sigsuspend` with SIGCHLD still blocked; seen as a CI run
    /// that hung in an interrupt test), and a program's SIGTERM would stay pending.
    static func spawnWithNoSignalsBlocked(_ spawn: () throws -> Void) rethrows {
        var none = sigset_t(), saved = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, &saved)
        defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
        try spawn()
    }

    /// `process`, waited for on a thread of its own: a test that serves HTTP in-process (`.live`) must
    /// not block one of Swift concurrency's few pool threads while the child talks to that server,
    /// or on a 2-core machine two such tests starve the server's handlers until the child times out.
    public static func processOffPool(_ executable: String, _ arguments: [String], cwd: String? = nil,
                                      environment: [String: String] = [:]) async throws -> ProcessResult {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try process(executable, arguments, cwd: cwd, environment: environment) })
            }
        }
    }

    /// The path of an executable product built alongside the tests (the test bundle sits in the same
    /// products directory).
    public static func product(_ name: String) -> String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let p = candidate.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// Finds a program on PATH (nil if absent).
    public static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
