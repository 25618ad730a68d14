import Foundation

/// A statement, signed by the old key, that a new key takes over: the client trusts a manifest signed by
/// the new key only when such a statement from a key it already trusts comes with it. Chains work
/// (A signs B, B signs C).
public struct KeyRotation: Codable, Sendable, Equatable {
    public static let typeName = "phoenix-key-rotation"

    public var type: String
    /// Key id of the key that signs this statement.
    public var oldKeyID: String
    /// The new public key, base64 of 32 bytes.
    public var newKey: String
    public var issued: Date

    public init(oldKeyID: String, newKey: Ed25519.PublicKey, issued: Date) {
        type = Self.typeName
        self.oldKeyID = oldKeyID
        self.newKey = newKey.base64
        self.issued = issued
    }

    enum CodingKeys: String, CodingKey {
        case type, issued
        case oldKeyID = "old_key_id", newKey = "new_key"
    }

    /// A rotation from `old` to `new`, signed by `old`.
    public static func sign(from old: Ed25519.PrivateKey, to new: Ed25519.PublicKey, issued: Date = Date()) throws -> SignedEnvelope {
        let statement = KeyRotation(oldKeyID: try old.publicKey().keyID, newKey: new, issued: issued)
        return try SignedEnvelope.sign(Array(try WireJSON.encoder().encode(statement)), with: [old])
    }

    /// The keys trusted after following every rotation in `rotations` that a trusted key signed.
    public static func extend(trusted: [Ed25519.PublicKey], with rotations: [SignedEnvelope]) -> [Ed25519.PublicKey] {
        var keys = trusted
        var changed = true
        while changed {
            changed = false
            for r in rotations {
                guard let payload = try? r.verifiedPayload(trusting: keys),
                      let statement = try? WireJSON.decoder().decode(KeyRotation.self, from: Data(payload)),
                      statement.type == typeName, keys.contains(where: { $0.keyID == statement.oldKeyID }),
                      let key = try? Ed25519.PublicKey(base64: statement.newKey), !keys.contains(key) else { continue }
                keys.append(key)
                changed = true
            }
        }
        return keys
    }
}
