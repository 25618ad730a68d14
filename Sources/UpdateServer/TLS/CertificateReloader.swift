import CPhoenixTLS
import Foundation
import NIOConcurrencyHelpers
import NIOSSL

/// The server's certificate chain and key, read from PEM files and re-read on demand (SIGHUP).
///
/// Each TLS handshake asks for the current pair (NIOSSL's per-handshake context callback), so a reload
/// applies to new connections at once while connections already open keep theirs: nothing is dropped.
/// A reload that fails (missing file, bad PEM, key not matching the certificate) keeps the old pair.
public final class CertificateReloader: Sendable {
    public let certificatePath: String
    public let keyPath: String
    private let current: NIOLockedValueBox<Identity>

    struct Identity: Sendable {
        var chain: [NIOSSLCertificate]
        var key: NIOSSLPrivateKey
    }

    public init(certificatePath: String, keyPath: String) throws {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        current = NIOLockedValueBox(try Self.load(certificatePath: certificatePath, keyPath: keyPath))
    }

    static func load(certificatePath: String, keyPath: String) throws -> Identity {
        let chain: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMFile(certificatePath) } catch {
            throw ServerError.badConfiguration("cannot read the TLS certificate chain \(certificatePath): \(error)")
        }
        guard !chain.isEmpty else { throw ServerError.badConfiguration("\(certificatePath) holds no certificate") }
        let key: NIOSSLPrivateKey
        do { key = try NIOSSLPrivateKey(file: keyPath, format: .pem) } catch {
            throw ServerError.badConfiguration("cannot read the TLS private key \(keyPath): \(error)")
        }
        // The key must belong to the leaf certificate (checked with libcrypto: NIOSSL only finds out
        // when a context is built, and leaks that context when the build fails).
        var message = [CChar](repeating: 0, count: 256)
        let match = message.withUnsafeMutableBufferPointer {
            phoenix_key_matches_certificate(certificatePath, keyPath, $0.baseAddress, $0.count)
        }
        guard match == 1 else {
            throw ServerError.badConfiguration(
                "the TLS key \(keyPath) does not match the certificate \(certificatePath): \(String(cString: message))")
        }
        return Identity(chain: chain, key: key)
    }

    /// Re-reads both files; on any error the previous pair stays in use and the error is thrown.
    public func reload() throws {
        let fresh = try Self.load(certificatePath: certificatePath, keyPath: keyPath)
        current.withLockedValue { $0 = fresh }
    }

    /// The leaf certificate in use.
    public var leaf: NIOSSLCertificate { current.withLockedValue { $0.chain[0] } }

    /// TLS 1.2 or newer, HTTP/2 and HTTP/1.1 by ALPN, and the current pair for every handshake.
    public func serverConfiguration() -> TLSConfiguration {
        let identity = current.withLockedValue { $0 }
        var c = TLSConfiguration.makeServerConfiguration(certificateChain: identity.chain.map { .certificate($0) },
                                                         privateKey: .privateKey(identity.key))
        c.minimumTLSVersion = .tlsv12
        c.applicationProtocols = ["h2", "http/1.1"]
        c.sslContextCallback = { [current] _, promise in
            let now = current.withLockedValue { $0 }
            var override = NIOSSLContextConfigurationOverride()
            override.certificateChain = now.chain.map { .certificate($0) }
            override.privateKey = .privateKey(now.key)
            promise.succeed(override)
        }
        return c
    }
}
