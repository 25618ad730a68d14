import Foundation

/// A signed document: the payload is carried as the exact bytes that were signed (base64), so that
/// verifying never depends on re-serialising JSON the same way in every language.
///
/// ```json
/// {"payload": "<base64 of the JSON document>",
///  "signatures": [{"key_id": "<16 hex>", "sig": "<base64 Ed25519 signature of the payload bytes>"}]}
/// ```
public struct SignedEnvelope: Codable, Sendable, Equatable {
    public struct Signature: Codable, Sendable, Equatable {
        public var keyID: String
        public var sig: String
        enum CodingKeys: String, CodingKey {
            case keyID = "key_id"
            case sig
        }
    }

    public var payload: String
    public var signatures: [Signature]
    /// Key rotation statements (each itself a signed envelope) that let a client follow the signer from
    /// a key it already trusts to the one that signed this payload.
    public var rotations: [SignedEnvelope]?

    public init(payload: String, signatures: [Signature], rotations: [SignedEnvelope]? = nil) {
        self.payload = payload
        self.signatures = signatures
        self.rotations = rotations
    }

    /// The key ids of the signatures.
    public var signerKeyIDs: [String] { signatures.map(\.keyID) }

    /// Signs `payload` bytes with each key.
    public static func sign(_ payload: [UInt8], with keys: [Ed25519.PrivateKey]) throws -> SignedEnvelope {
        var sigs: [Signature] = []
        for k in keys {
            sigs.append(Signature(keyID: try k.publicKey().keyID, sig: Data(try k.sign(payload)).base64EncodedString()))
        }
        return SignedEnvelope(payload: Data(payload).base64EncodedString(), signatures: sigs)
    }

    public enum VerificationError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        case noTrustedSignature
        case badSignature(keyID: String)

        public var description: String {
            switch self {
            case .malformed(let why): "signature check failed: malformed envelope (\(why))"
            case .noTrustedSignature: "signature check failed: not signed by a trusted key"
            case .badSignature(let keyID): "signature check failed: the signature by key \(keyID) does not match"
            }
        }
    }

    /// Returns the payload bytes when a signature by one of `trusted` verifies; throws otherwise
    /// (fail closed: any malformation is an error).
    public func verifiedPayload(trusting trusted: [Ed25519.PublicKey]) throws -> [UInt8] {
        try verified(trusting: trusted).payload
    }

    /// The payload and the key whose signature verified.
    public func verified(trusting trusted: [Ed25519.PublicKey]) throws -> (payload: [UInt8], key: Ed25519.PublicKey) {
        guard let payloadData = Data(base64Encoded: payload) else { throw VerificationError.malformed("payload is not base64") }
        let bytes = Array(payloadData)
        var matched: String?
        for key in trusted {
            for s in signatures where s.keyID == key.keyID {
                guard let sig = Data(base64Encoded: s.sig) else { throw VerificationError.malformed("signature is not base64") }
                if key.isValidSignature(Array(sig), for: bytes) { return (bytes, key) }
                matched = s.keyID
            }
        }
        if let matched { throw VerificationError.badSignature(keyID: matched) }
        throw VerificationError.noTrustedSignature
    }
}
