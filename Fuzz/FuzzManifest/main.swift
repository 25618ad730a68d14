// libFuzzer target: any bytes as a check response, a signed envelope and a manifest; verification
// against a fixed key must fail closed (never accept) for anything but a genuinely signed payload.
import Foundation
import UpdateModels

let key = try! Ed25519.PrivateKey(seed: Array(repeating: 7, count: 32))
let trusted = [try! key.publicKey()]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(UnsafeBufferPointer(start: data, count: size))
    let decoder = WireJSON.decoder()
    if let check = try? decoder.decode(CheckResponse.self, from: bytes) {
        _ = try? check.manifest.verifiedPayload(trusting: trusted)
    }
    if let envelope = try? decoder.decode(SignedEnvelope.self, from: bytes),
       let payload = try? envelope.verifiedPayload(trusting: trusted) {
        // Only a payload signed by the key can get here; the fuzzer cannot forge one.
        precondition(trusted[0].isValidSignature(Array(Data(base64Encoded: envelope.signatures.first { $0.keyID == trusted[0].keyID }!.sig)!),
                                                 for: payload), "accepted an envelope without a valid signature")
    }
    _ = try? Manifest.decode(Array(bytes))
    _ = try? decoder.decode(TelemetryEvent.self, from: bytes).validate()
    return 0
}
