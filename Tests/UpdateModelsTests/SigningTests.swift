import Foundation
import Testing
import UpdateModels

@Suite struct SigningTests {
    @Test func signAndVerify() throws {
        let key = try Ed25519.PrivateKey.generate()
        let message = Array("the manifest".utf8)
        let sig = try key.sign(message)
        #expect(sig.count == 64)
        #expect(try key.publicKey().isValidSignature(sig, for: message))
        var bad = sig
        bad[10] ^= 1
        #expect(try !key.publicKey().isValidSignature(bad, for: message))
        #expect(try !key.publicKey().isValidSignature(sig, for: message + [0]))
        #expect(try !Ed25519.PrivateKey.generate().publicKey().isValidSignature(sig, for: message))
        #expect(try !key.publicKey().isValidSignature(Array(sig.prefix(63)), for: message))
    }

    @Test func pemRoundTripsAndOpenSSLReadsIt() throws {
        let key = try Ed25519.PrivateKey.generate()
        let again = try Ed25519.PrivateKey(pem: key.pem)
        #expect(again.seed == key.seed)
        #expect(throws: Ed25519.KeyError.self) { try Ed25519.PrivateKey(pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n") }
        // RFC 8032 test vector 1: the public key of this seed.
        let seed = Array(Data(base64Encoded: "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")!)
        let pub = try Ed25519.PrivateKey(seed: seed).publicKey()
        #expect(pub.base64 == "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    }

    @Test func envelopeFailsClosed() throws {
        let key = try Ed25519.PrivateKey.generate()
        let other = try Ed25519.PrivateKey.generate()
        let payload = Array("{\"a\":1}".utf8)
        let env = try SignedEnvelope.sign(payload, with: [key])
        #expect(try env.verifiedPayload(trusting: [key.publicKey()]) == payload)
        #expect(throws: SignedEnvelope.VerificationError.noTrustedSignature) { try env.verifiedPayload(trusting: [other.publicKey()]) }
        var tampered = env
        tampered.payload = Data(Array("{\"a\":2}".utf8)).base64EncodedString()
        #expect(throws: SignedEnvelope.VerificationError.self) { try tampered.verifiedPayload(trusting: [key.publicKey()]) }
        var garbage = env
        garbage.signatures[0].sig = "%%%"
        #expect(throws: SignedEnvelope.VerificationError.self) { try garbage.verifiedPayload(trusting: [key.publicKey()]) }
        var noSigs = env
        noSigs.signatures = []
        #expect(throws: SignedEnvelope.VerificationError.noTrustedSignature) { try noSigs.verifiedPayload(trusting: [key.publicKey()]) }
    }

    @Test func manifestRoundTripsThroughCanonicalJSON() throws {
        let m = Manifest(manifestVersion: 7, platform: "linux-x86_64", channel: "stable", generatedAt: Date(timeIntervalSince1970: 1_800_000_000),
                         expires: Date(timeIntervalSince1970: 1_800_604_800), releases: [
                            .init(version: try SemanticVersion(parsing: "1.2.3"), channel: "stable", published: Date(timeIntervalSince1970: 1_799_000_000),
                                  changelog: "Fixes", treeDigest: String(repeating: "a", count: 64),
                                  full: .init(size: 10, sha256: String(repeating: "b", count: 64), url: "/x"), deltas: []),
                         ])
        let bytes = try m.encoded()
        #expect(try Manifest.decode(bytes) == m)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains("\"manifest_version\":7"))
        #expect(text.contains("\"expires\":\"2027-01-22T"))
        #expect(try m.encoded() == bytes, "encoding is deterministic")
    }
}
