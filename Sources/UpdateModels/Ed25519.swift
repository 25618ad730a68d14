import CCrypto
import Foundation
import PatchFormat

/// Ed25519 signatures through OpenSSL's libcrypto.
public enum Ed25519 {
    public enum KeyError: Error, Equatable, CustomStringConvertible {
        case invalidKey(String)
        case cryptoFailure(String)
        public var description: String {
            switch self {
            case .invalidKey(let why): "invalid Ed25519 key: \(why)"
            case .cryptoFailure(let what): "libcrypto failure: \(what)"
            }
        }
    }

    /// A private key (the 32-byte seed).
    public struct PrivateKey: Sendable {
        public let seed: [UInt8]

        public init(seed: [UInt8]) throws {
            guard seed.count == 32 else { throw KeyError.invalidKey("a private key is 32 bytes, got \(seed.count)") }
            self.seed = seed
        }

        /// A new random key.
        public static func generate() throws -> PrivateKey {
            guard let ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nil) else { throw KeyError.cryptoFailure("EVP_PKEY_CTX_new_id") }
            defer { EVP_PKEY_CTX_free(ctx) }
            var pkey: OpaquePointer?
            guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_keygen(ctx, &pkey) == 1, let pkey else {
                throw KeyError.cryptoFailure("EVP_PKEY_keygen")
            }
            defer { EVP_PKEY_free(pkey) }
            var seed = [UInt8](repeating: 0, count: 32)
            var len = 32
            guard EVP_PKEY_get_raw_private_key(pkey, &seed, &len) == 1, len == 32 else {
                throw KeyError.cryptoFailure("EVP_PKEY_get_raw_private_key")
            }
            return try PrivateKey(seed: seed)
        }

        func withKey<T>(_ body: (OpaquePointer) throws -> T) throws -> T {
            guard let pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, seed, 32) else {
                throw KeyError.invalidKey("libcrypto rejected the private key")
            }
            defer { EVP_PKEY_free(pkey) }
            return try body(pkey)
        }

        public func publicKey() throws -> PublicKey {
            try withKey { pkey in
                var raw = [UInt8](repeating: 0, count: 32)
                var len = 32
                guard EVP_PKEY_get_raw_public_key(pkey, &raw, &len) == 1, len == 32 else {
                    throw KeyError.cryptoFailure("EVP_PKEY_get_raw_public_key")
                }
                return try PublicKey(raw: raw)
            }
        }

        public func sign(_ message: [UInt8]) throws -> [UInt8] {
            try withKey { pkey in
                guard let ctx = EVP_MD_CTX_new() else { throw KeyError.cryptoFailure("EVP_MD_CTX_new") }
                defer { EVP_MD_CTX_free(ctx) }
                guard EVP_DigestSignInit(ctx, nil, nil, nil, pkey) == 1 else { throw KeyError.cryptoFailure("EVP_DigestSignInit") }
                var sig = [UInt8](repeating: 0, count: 64)
                var len = 64
                let ok = message.withUnsafeBufferPointer { m in EVP_DigestSign(ctx, &sig, &len, m.baseAddress, m.count) }
                guard ok == 1, len == 64 else { throw KeyError.cryptoFailure("EVP_DigestSign") }
                return sig
            }
        }

        // PKCS#8 (RFC 8410) for Ed25519 is a fixed 16-byte prefix and the seed; PEM wraps it in base64.
        static let pkcs8Prefix: [UInt8] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]

        /// PEM ("BEGIN PRIVATE KEY"), readable by `openssl pkey`.
        public var pem: String {
            "-----BEGIN PRIVATE KEY-----\n" + Data(Self.pkcs8Prefix + seed).base64EncodedString() + "\n-----END PRIVATE KEY-----\n"
        }

        public init(pem: String) throws {
            let body = pem.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.hasPrefix("-----") && !$0.isEmpty }.joined()
            guard pem.contains("BEGIN PRIVATE KEY"), let der = Data(base64Encoded: body), der.count == 48,
                  Array(der.prefix(16)) == Self.pkcs8Prefix else {
                throw KeyError.invalidKey("not an Ed25519 PKCS#8 PEM private key")
            }
            try self.init(seed: Array(der.suffix(32)))
        }
    }

    /// A public key (32 raw bytes); written as base64.
    public struct PublicKey: Sendable, Equatable, Hashable {
        public let raw: [UInt8]

        public init(raw: [UInt8]) throws {
            guard raw.count == 32 else { throw KeyError.invalidKey("a public key is 32 bytes, got \(raw.count)") }
            self.raw = raw
        }

        public init(base64: String) throws {
            guard let d = Data(base64Encoded: base64.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw KeyError.invalidKey("not base64")
            }
            try self.init(raw: Array(d))
        }

        public var base64: String { Data(raw).base64EncodedString() }

        /// A short identifier: the first 8 bytes of SHA-256 of the raw key, hex.
        public var keyID: String { String(Hex.encode(SHA256Hasher.hash(raw)).prefix(16)) }

        /// True only for a valid signature; every failure (bad key, bad length, libcrypto error) is false.
        public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
            guard signature.count == 64, let pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, raw, 32) else { return false }
            defer { EVP_PKEY_free(pkey) }
            guard let ctx = EVP_MD_CTX_new() else { return false }
            defer { EVP_MD_CTX_free(ctx) }
            guard EVP_DigestVerifyInit(ctx, nil, nil, nil, pkey) == 1 else { return false }
            let r = message.withUnsafeBufferPointer { m in
                signature.withUnsafeBufferPointer { s in EVP_DigestVerify(ctx, s.baseAddress, s.count, m.baseAddress, m.count) }
            }
            return r == 1
        }
    }
}
