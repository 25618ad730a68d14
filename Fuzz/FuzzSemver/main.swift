// libFuzzer target: semantic-version parsing and precedence. Invariants: parsing never crashes; a
// parsed version prints back to a string that parses to an equal version; precedence is irreflexive.
import UpdateModels

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let v = try? SemanticVersion(parsing: text) else { return 0 }
    let again = try! SemanticVersion(parsing: v.description)
    precondition(again == v && !(v < again) && !(again < v), "round trip of \(v) changed its precedence")
    return 0
}
