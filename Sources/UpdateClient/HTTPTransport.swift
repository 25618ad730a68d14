import CPhoenixTLS
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import PatchFormat

/// Whom the client trusts over HTTPS: the system's certificate store or a CA file, and optionally only
/// servers whose public key is pinned.
public struct TLSTrust: Sendable, Equatable {
    /// PEM file of trusted CA certificates; nil = the system's store.
    public var caFile: String?
    /// Base64 SHA-256 digests of acceptable server public keys (SubjectPublicKeyInfo, DER), as
    /// `openssl x509 -pubkey -noout -in C | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`
    /// prints; empty = no pinning. More than one allows a key change.
    public var pins: [String]

    public init(caFile: String? = nil, pins: [String] = []) {
        self.caFile = caFile
        self.pins = pins
    }

    /// The pin of a DER SubjectPublicKeyInfo.
    public static func pin(spki: [UInt8]) -> String {
        Data(SHA256Hasher.hash(spki)).base64EncodedString()
    }
}

/// The client's HTTP/1.1 transport over SwiftNIO: one connection per request, TLS 1.2+ through NIOSSL
/// with the server's chain checked by OpenSSL's X.509 verifier (so a refusal names its reason:
/// expired, wrong host, unknown issuer) and the public-key pin checked in the same handshake, no
/// redirects followed, connect and read timeouts. (AsyncHTTPClient, used before, offers no hook to pin
/// a key during the handshake.)
struct HTTPTransport: Sendable {
    var trust: TLSTrust
    var connectTimeout: TimeAmount = .seconds(15)
    /// The longest silence while waiting for response bytes.
    var readTimeout: TimeAmount = .seconds(60)

    struct Response: Sendable {
        var status: Int
        /// Header names lowercased; the last value of a repeated header wins.
        var headers: [String: String]
    }

    /// The response body, chunk by chunk as it arrives (with backpressure).
    struct Body {
        var iterator: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
        let channel: any Channel
        let readTimeout: TimeAmount
        var finished = false
        /// Set when the connection was closed for the server's silence.
        let silent = Flag()

        init(iterator: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator, channel: any Channel,
             readTimeout: TimeAmount) {
            (self.iterator, self.channel, self.readTimeout) = (iterator, channel, readTimeout)
        }

        /// The next part from the server, closing the connection if it is silent for `readTimeout`.
        /// Only the time spent waiting counts: while this side is busy (a slow disk, a busy machine)
        /// backpressure stops the reads, and that is not the server's silence.
        mutating func nextPart() async throws -> HTTPClientResponsePart? {
            let channel = self.channel, silent = self.silent
            let timer = channel.eventLoop.scheduleTask(in: readTimeout) {
                silent.set()
                channel.close(promise: nil)
            }
            defer { timer.cancel() }
            let part: HTTPClientResponsePart?
            do { part = try await iterator.next() } catch where silent.value { throw silence }
            if part == nil && silent.value { throw silence }
            return part
        }

        private var silence: ClientError {
            .network("the server sent no response data for \(Double(readTimeout.nanoseconds) / 1e9) s; the connection was closed")
        }

        /// The next chunk, or nil at the end of the body.
        mutating func next() async throws -> ByteBuffer? {
            guard !finished else { return nil }
            while true {
                switch try await nextPart() {
                case .body(let buffer): return buffer
                case .end: finished = true; return nil
                case .head: throw ClientError.network("the server sent a second response head")
                case nil: throw ClientError.network("the connection closed before the response ended")
                }
            }
        }

        /// The whole body, refusing more than `limit` bytes.
        mutating func collect(limit: Int) async throws -> [UInt8] {
            var out = [UInt8]()
            while let chunk = try await next() {
                guard out.count + chunk.readableBytes <= limit else { throw ClientError.network("the response is larger than \(limit) bytes") }
                out.append(contentsOf: chunk.readableBytesView)
            }
            return out
        }
    }

    /// What the TLS verification callback saw, for a plain error after the handshake fails.
    final class VerificationNote: @unchecked Sendable {
        private let lock = NSLock()
        private var failure: ClientError?
        func record(_ e: ClientError) { lock.lock(); failure = e; lock.unlock() }
        var recorded: ClientError? { lock.lock(); defer { lock.unlock() }; return failure }
    }

    struct Target {
        var https: Bool
        var host: String
        var port: Int
        var uri: String
        var hostHeader: String
    }

    static func target(_ url: String) throws -> Target {
        guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(), let rawHost = c.host, !rawHost.isEmpty else {
            throw ClientError.badSetting("url", "\(url.prefix(200)) is not a URL")
        }
        guard scheme == "https" || scheme == "http" else { throw ClientError.badSetting("url", "unsupported scheme \(scheme)") }
        let https = scheme == "https"
        let host = rawHost.hasPrefix("[") ? String(rawHost.dropFirst().dropLast()) : rawHost
        let port = c.port ?? (https ? 443 : 80)
        var uri = c.percentEncodedPath.isEmpty ? "/" : c.percentEncodedPath
        if let q = c.percentEncodedQuery { uri += "?" + q }
        let bracketed = host.contains(":") ? "[\(host)]" : host
        let hostHeader = c.port == nil ? bracketed : "\(bracketed):\(port)"
        return Target(https: https, host: host, port: port, uri: uri, hostHeader: hostHeader)
    }

    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// Sends one request and hands the response to `handle`, which reads the body; the connection is
    /// closed afterwards.
    func execute<T: Sendable>(_ method: HTTPMethod, _ url: String, headers: [(String, String)] = [], body: [UInt8]? = nil,
                              _ handle: (Response, inout Body) async throws -> T) async throws -> T {
        // A GET whose connection fails before any answer (refused, reset, closed under us) is tried once
        // more after a moment; a TLS refusal or anything after the response began is not.
        let answered = Flag()
        do {
            return try await attempt(method, url, headers: headers, body: body, answered: answered, handle)
        } catch let e as ClientError where method == .GET && !answered.value && e.category == "network" {
            try await Task.sleep(for: .milliseconds(300))
            return try await attempt(method, url, headers: headers, body: body, answered: answered, handle)
        }
    }

    /// A condition set once, from any thread (the response began; the server went silent).
    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var isSet = false
        func set() { lock.lock(); isSet = true; lock.unlock() }
        var value: Bool { lock.lock(); defer { lock.unlock() }; return isSet }
    }

    private func attempt<T: Sendable>(_ method: HTTPMethod, _ url: String, headers: [(String, String)], body: [UInt8]?,
                                      answered: Flag, _ handle: (Response, inout Body) async throws -> T) async throws -> T {
        let t = try Self.target(url)
        let note = VerificationNote()
        let sslContext: NIOSSLContext?
        if t.https {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.minimumTLSVersion = .tlsv12
            tls.applicationProtocols = ["http/1.1"]
            do { sslContext = try NIOSSLContext(configuration: tls) } catch {
                throw ClientError.network("cannot set up TLS: \(error)")
            }
        } else {
            sslContext = nil
        }
        let trust = self.trust
        let readTimeout = self.readTimeout
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(connectTimeout)
                .connect(host: t.host, port: t.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let ops = channel.pipeline.syncOperations
                        if let sslContext {
                            let handler = try NIOSSLClientHandler(
                                context: sslContext, serverHostname: Self.isIPAddress(t.host) ? nil : t.host,
                                customVerificationCallback: { certificates, promise in
                                    if let failure = Self.verify(certificates, host: t.host, trust: trust) {
                                        note.record(failure)
                                        promise.succeed(.failed)
                                    } else {
                                        promise.succeed(.certificateVerified)
                                    }
                                })
                            try ops.addHandler(handler)
                        }
                        try ops.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ClientError.network("cannot connect to \(t.host):\(t.port): \(error)")
        }
        do {
            return try await channel.executeThenClose { inbound, outbound in
                var head = HTTPRequestHead(version: .http1_1, method: method, uri: t.uri)
                head.headers.add(name: "Host", value: t.hostHeader)
                head.headers.add(name: "User-Agent", value: "phoenix-update")
                head.headers.add(name: "Connection", value: "close")
                for (name, value) in headers { head.headers.add(name: name, value: value) }
                if let body { head.headers.add(name: "Content-Length", value: "\(body.count)") }
                try await outbound.write(.head(head))
                if let body, !body.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
                try await outbound.write(.end(nil))
                var reader = Body(iterator: inbound.makeAsyncIterator(), channel: channel.channel, readTimeout: readTimeout)
                while true {
                    switch try await reader.nextPart() {
                    case .head(let h) where h.status.code >= 100 && h.status.code < 200:
                        // NIO's decoder drops interim (1xx) responses by default, so this is a guard: they
                        // deliver no part, and the read timeout keeps running while a server sends them.
                        continue
                    case .head(let h):
                        answered.set()
                        var names: [String: String] = [:]
                        for (name, value) in h.headers { names[name.lowercased()] = value }
                        return try await handle(Response(status: Int(h.status.code), headers: names), &reader)
                    case .body, .end:
                        throw ClientError.network("the server sent a body without a response head")
                    case nil:
                        throw ClientError.network("the server closed the connection without answering")
                    }
                }
            }
        } catch let e as ClientError {
            throw note.recorded ?? e
        } catch {
            if let failure = note.recorded { throw failure }
            if error is NIOSSLError || error is BoringSSLError {
                throw ClientError.tls(category: "tls", detail: "the TLS handshake with \(t.host) failed: \(error)")
            }
            throw ClientError.network("\(url): \(error)")
        }
    }

    /// Checks the server's chain (OpenSSL's verifier: trusted root, validity dates, TLS-server purpose,
    /// host name) and the pin; nil when it passes.
    static func verify(_ certificates: [NIOSSLCertificate], host: String, trust: TLSTrust) -> ClientError? {
        var ders: [[UInt8]] = []
        for c in certificates {
            guard let der = try? c.toDERBytes() else {
                return .tls(category: "tls", detail: "the certificate of \(host) cannot be encoded")
            }
            ders.append(der)
        }
        let (code, message) = verifyChain(ders, caFile: trust.caFile, host: host)
        if code != 0 {
            let category: String
            switch Int(code) {
            case PHOENIX_X509_CERT_HAS_EXPIRED, PHOENIX_X509_CERT_NOT_YET_VALID: category = "tls_expired"
            case PHOENIX_X509_HOSTNAME_MISMATCH, PHOENIX_X509_IP_ADDRESS_MISMATCH: category = "tls_wrong_host"
            case PHOENIX_X509_DEPTH_ZERO_SELF_SIGNED, PHOENIX_X509_SELF_SIGNED_IN_CHAIN, PHOENIX_X509_UNABLE_TO_GET_ISSUER_LOCALLY,
                 PHOENIX_X509_UNABLE_TO_VERIFY_LEAF, 2:
                category = "tls_unknown_issuer"
            default: category = "tls"
            }
            let trusted = trust.caFile.map { "the CA file \($0)" } ?? "the system's trusted certificates"
            let detail: String
            switch category {
            case "tls_expired": detail = "the certificate of \(host) is outside its validity period (\(message))"
            case "tls_wrong_host": detail = "the certificate presented by \(host) is not for \(host) (\(message))"
            case "tls_unknown_issuer": detail = "the certificate of \(host) is not issued by \(trusted) (\(message))"
            default: detail = "the certificate of \(host) does not verify against \(trusted): \(message)"
            }
            return .tls(category: category, detail: detail)
        }
        if !trust.pins.isEmpty {
            guard let leaf = certificates.first, let spki = try? leaf.extractPublicKey().toSPKIBytes() else {
                return .tls(category: "tls_pin", detail: "the public key of \(host) cannot be read")
            }
            let pin = TLSTrust.pin(spki: spki)
            guard trust.pins.contains(pin) else {
                return .tls(category: "tls_pin", detail: "the public key of \(host) (sha256/\(pin)) is not the pinned one")
            }
        }
        return nil
    }

    static func verifyChain(_ ders: [[UInt8]], caFile: String?, host: String) -> (Int32, String) {
        let flat = ders.flatMap { $0 }
        let lengths = ders.map(\.count)
        var message = [CChar](repeating: 0, count: 256)
        let code = flat.withUnsafeBufferPointer { base -> Int32 in
            var pointers: [UnsafePointer<UInt8>?] = []
            var offset = 0
            for length in lengths {
                pointers.append(base.baseAddress.map { UnsafePointer($0 + offset) })
                offset += length
            }
            return pointers.withUnsafeBufferPointer { p in
                lengths.withUnsafeBufferPointer { l in
                    message.withUnsafeMutableBufferPointer { m in
                        phoenix_verify_server_chain(p.baseAddress, l.baseAddress, lengths.count, caFile, host, m.baseAddress, m.count)
                    }
                }
            }
        }
        return (code, String(cString: message))
    }
}
