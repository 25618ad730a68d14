import Foundation
import Glibc
import NIOCore
import PatchFormat
import Testing
import TestSupport
import TreeIO
@testable import UpdateClient

/// A hostile HTTP/1.1 server on 127.0.0.1 for the client's stall defences: it answers every request
/// with `interims` 100 Continue heads (one every `interval` seconds), a 200 head for `body`, and then
/// the body `chunk` bytes at a time every `interval` seconds, or nothing at all (`chunk` 0).
final class StallingServer: @unchecked Sendable {
    let port: Int
    private let listener: Int32
    private let body: [UInt8]
    private let chunk: Int
    private let interval: Double
    private let interims: Int
    private let lock = NSLock()
    private var stopped = false
    private let done = DispatchGroup()

    init(body: [UInt8], chunk: Int, interval: Double, interims: Int = 0) throws {
        (self.body, self.chunk, self.interval, self.interims) = (body, chunk, interval, interims)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { a in
                bind(fd, a, len) == 0 && listen(fd, 8) == 0 && getsockname(fd, a, &len) == 0
            }
        }
        guard fd >= 0, ok else { throw CocoaError(.fileWriteUnknown) }
        listener = fd
        port = Int(UInt16(bigEndian: addr.sin_port))
        done.enter()
        Thread.detachNewThread { [self] in serve(); done.leave() }
    }

    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    func stop() {
        lock.lock(); stopped = true; lock.unlock()
        done.wait()
        close(listener)
    }

    private func serve() {
        while !isStopped {
            var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 50) > 0 else { continue }
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { continue }
            answer(fd)
            close(fd)
        }
    }

    private func send(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) == $0.count }
    }

    private func answer(_ fd: Int32) {
        // Read the request up to its blank line.
        var request = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !request.suffix(4).elementsEqual("\r\n\r\n".utf8) {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return }
            request += buffer[..<n]
        }
        for _ in 0..<interims {
            guard !isStopped, send(fd, ArraySlice("HTTP/1.1 100 Continue\r\n\r\n".utf8)) else { return }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, Int32(interval * 1000)) > 0 && recv(fd, &buffer, buffer.count, 0) <= 0 { return }
        }
        let head = "HTTP/1.1 200 OK\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        guard send(fd, ArraySlice(head.utf8)) else { return }
        var at = 0
        while !isStopped {
            if chunk > 0 && at < body.count {
                let end = min(at + chunk, body.count)
                guard send(fd, body[at..<end]) else { return }
                at = end
            }
            // Until the client hangs up (or the test ends): a peer that closed makes poll return.
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, Int32(interval * 1000)) > 0 {
                if recv(fd, &buffer, buffer.count, 0) <= 0 { return }
            }
        }
    }
}

/// The client gives up on a server that stalls, with an error that says so, and keeps what arrived
/// for the next attempt to resume (the "slow retrieval" attack of update-systems.md).
@Suite(.serialized) struct StallTests {
    static func fetch(_ server: StallingServer, size: Int, sha256: String, readTimeout: TimeAmount,
                      minimumRate: RateFloor, into dir: TemporaryDirectory) async throws -> String {
        var d = Downloader()
        d.readTimeout = readTimeout
        d.minimumRate = minimumRate
        return try await d.fetch(url: "http://127.0.0.1:\(server.port)/package", size: UInt64(size), sha256: sha256,
                                 into: dir.path)
    }

    /// The error a fetch of `body` from `server` ends with; nil, and an issue recorded (`accepted`),
    /// when the download succeeds.
    static func refusal(_ server: StallingServer, of body: [UInt8], readTimeout: TimeAmount, minimumRate: RateFloor,
                        into dir: TemporaryDirectory, accepted: Comment) async throws -> ClientError? {
        do {
            _ = try await fetch(server, size: body.count, sha256: Hex.encode(SHA256Hasher.hash(body)),
                                readTimeout: readTimeout, minimumRate: minimumRate, into: dir)
            Issue.record(accepted)
            return nil
        } catch let e as ClientError {
            return e
        }
    }

    @Test(.timeLimit(.minutes(1))) func aSilentServerIsGivenUpOn() async throws {
        let body = [UInt8](repeating: 7, count: 1000)
        let server = try StallingServer(body: body, chunk: 0, interval: 0.05)
        defer { server.stop() }
        let e = try await Self.refusal(server, of: body, readTimeout: .milliseconds(400), minimumRate: RateFloor(bytes: 1, seconds: 600),
                                       into: try TemporaryDirectory(), accepted: "a server that sent no body was waited out")
        #expect(e?.category == "network")
        #expect(e?.description.contains("the server sent no response data for 0.4 s") == true, "\(String(describing: e))")
    }

    @Test(.timeLimit(.minutes(1))) func aTrickleIsGivenUpOnAndWhatArrivedIsKept() async throws {
        let body = [UInt8](repeating: 7, count: 100_000)
        let sha = Hex.encode(SHA256Hasher.hash(body))
        // 2 bytes every 20 ms (100 bytes/s, less on a busy machine), never silent for the 5 s read timeout.
        let server = try StallingServer(body: body, chunk: 2, interval: 0.02)
        defer { server.stop() }
        let dir = try TemporaryDirectory()
        let e = try await Self.refusal(server, of: body, readTimeout: .seconds(5), minimumRate: RateFloor(bytes: 1000, seconds: 0.5),
                                       into: dir, accepted: "a trickle of 100 bytes/s was accepted against a floor of 2000")
        #expect(e?.category == "network")
        #expect(e?.description.contains("below the minimum of 1000 bytes per 0.5 s") == true, "\(String(describing: e))")
        #expect(e?.description.contains("will resume") == true, "\(String(describing: e))")
        let kept = try dir.read(sha + ".part")
        #expect(!kept.isEmpty && kept.count < body.count)
        #expect(kept == Array(body.prefix(kept.count)))
    }

    /// Interim (1xx) responses do not count as an answer: a server that sends them one after another
    /// (each well within the read timeout) is still given up on after the read timeout.
    @Test(.timeLimit(.minutes(1))) func endlessInterimResponsesDoNotHoldTheClient() async throws {
        let body = [UInt8](repeating: 7, count: 100)
        let server = try StallingServer(body: body, chunk: 100, interval: 0.1, interims: 600)
        defer { server.stop() }
        let e = try await Self.refusal(server, of: body, readTimeout: .milliseconds(700), minimumRate: RateFloor(bytes: 1, seconds: 600),
                                       into: try TemporaryDirectory(), accepted: "a minute of 100 Continue was waited through")
        #expect(e?.description.contains("the server sent no response data for 0.7 s") == true, "\(String(describing: e))")
    }

    /// The floor is not a deadline: a slow server above it finishes, and the download checks out.
    @Test(.timeLimit(.minutes(1))) func aSlowServerAboveTheFloorFinishes() async throws {
        let body = (0..<60_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        // 300 bytes every 20 ms (15 KB/s) for four seconds, through windows of 2 s that need 1000 bytes
        // each: a 30x margin, so a busy test machine does not make it fail.
        let server = try StallingServer(body: body, chunk: 300, interval: 0.02)
        defer { server.stop() }
        let dir = try TemporaryDirectory()
        let sha = Hex.encode(SHA256Hasher.hash(body))
        let path = try await Self.fetch(server, size: body.count, sha256: sha, readTimeout: .seconds(5),
                                        minimumRate: RateFloor(bytes: 1000, seconds: 2), into: dir)
        #expect(try POSIX.readFile(path) == body)
    }
}
