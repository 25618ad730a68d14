import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
import TestSupport
import UpdateModels
import UpdateServer

/// A raw TCP connection to 127.0.0.1, for requests no HTTP client would send.
final class RawConnection {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
    }

    deinit { close(fd) }

    /// False once the server has closed the connection.
    @discardableResult
    func send(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Everything the server sends until it closes or `seconds` pass without data; and whether it closed.
    func read(seconds: Double) -> (bytes: [UInt8], closed: Bool) {
        var out = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(seconds * 1000)) > 0 else { return (out, false) }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return (out, true) }
            out += buffer[..<n]
        }
    }
}

/// Slow and oversized requests are cut off without hurting other clients.
@Suite(.serialized) struct AbuseTests {
    /// One check on a connection of its own: a pooled keep-alive connection left idle past these
    /// tests' 1 s idle timeout (a loaded CI machine stretches the loop) can be closed by the server just
    /// as the client reuses it, a reset that says nothing about whether others are served.
    static func checkOK(_ base: String) async throws -> Bool {
        var request = HTTPClientRequest(url: base + "/api/version/check?current_version=1.0.0&platform=\(ServerFixture.platform)")
        request.headers.add(name: "Connection", value: "close")
        let r = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        _ = try await r.body.collect(upTo: 1 << 20)
        return r.status.code == 200
    }

    @Test func slowlorisConnectionsAreClosedWhileOthersAreServed() async throws {
        let f = try ServerFixture { $0.idleTimeoutSeconds = 1 }
        try await buildApplication(service: f.service).test(.live) { client in
            let port = client.port!
            let base = "http://127.0.0.1:\(port)"
            // 50 connections that send a request head one byte at a time, every 200 ms, never finishing.
            let slow = try (0..<50).map { _ in try RawConnection(port: port) }
            let head = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + String(repeating: "a", count: 400)
            var closed = Set<Int>()
            var served = 0
            for step in 0..<head.utf8.count where closed.count < slow.count && step < 60 {
                let byte = String(head[head.index(head.startIndex, offsetBy: step)])
                for (i, c) in slow.enumerated() where !closed.contains(i) {
                    if !c.send(byte) || c.read(seconds: 0).closed { closed.insert(i) }
                }
                // Everyone else is answered meanwhile.
                if try await Self.checkOK(base) { served += 1 }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(closed.count == slow.count, "\(slow.count - closed.count) slow connections were still open after 12 s")
            let stillServing = try await Self.checkOK(base)
            #expect(served > 0 && stillServing)
        }
    }

    @Test func oversizedHeadersAndBodiesAreRefused() async throws {
        let f = try ServerFixture()
        try await buildApplication(service: f.service).test(.live) { client in
            let port = client.port!
            let base = "http://127.0.0.1:\(port)"
            // 200 KB of headers: refused (the limit is 80 KiB), never answered with a page.
            let big = try RawConnection(port: port)
            big.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + String(repeating: "b", count: 200_000) + "\r\n\r\n")
            let answer = String(decoding: big.read(seconds: 5).bytes, as: UTF8.self)
            #expect(!answer.hasPrefix("HTTP/1.1 200"), "a 200 KB header was served: \(answer.prefix(80))")
            #expect(answer.isEmpty || answer.hasPrefix("HTTP/1.1 4"), "\(answer.prefix(80))")
            // A 5 MB telemetry body: 413 after 16 KiB, not read to the end.
            var request = HTTPClientRequest(url: base + "/api/telemetry")
            request.method = .POST
            request.body = .bytes(ByteBuffer(repeating: UInt8(ascii: "x"), count: 5 << 20))
            let r = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            #expect(r.status.code == 413)
            // A publish larger than max_upload_bytes without the admin token: refused before reading it.
            var upload = HTTPClientRequest(url: base + "/api/releases?platform=p&version=9.0.0")
            upload.method = .POST
            upload.body = .bytes(ByteBuffer(repeating: 0, count: 1 << 20))
            let refused = try await HTTPClient.shared.execute(upload, timeout: .seconds(30)).status.code
            #expect(refused == 401)
            // The server is fine.
            let fine = try await Self.checkOK(base)
            #expect(fine)
        }
    }
}
