// libFuzzer target: any bytes as a bundle, decoded and applied into a scratch directory holding a
// small installed tree. Invariant: no crash; nothing is ever written outside the scratch directory
// (checked by the path rules inside the applier); a refused bundle leaves the tree as it was.
import Foundation
import PatchFormat
import Patcher
import TreeIO

let scratch: String = {
    let dir = NSTemporaryDirectory() + "/phoenix-fuzz-bundle-\(getpid())"
    try? POSIX.removeTree(dir)
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}()
let blob: [UInt8] = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 5)) }
let limits = BundleLimits(maxEntries: 1000, maxManifestBytes: 1 << 20, maxTotalBytes: 1 << 20, maxFileBytes: 1 << 20)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // Manifest decoding on its own (the raw bytes as a manifest).
    if let m = try? BundleManifest.decode(bytes, limits: limits) {
        _ = try? m.newTree(from: [.directory("a", mode: 0o755), .file("a/b", mode: 0o644, size: 1, sha256: SHA256Hasher.hash([1]))],
                           expectedDigest: TreeDigest.empty)
    }
    // And as a whole bundle applied to a fresh installation, when its header decodes (the applier's
    // first step; skipping the file-system setup for the rest keeps the fuzzer fast).
    guard (try? BundleHeader.decode(bytes, fileLength: UInt64(bytes.count), limits: limits)) != nil else { return 0 }
    let install = scratch + "/app"
    try? POSIX.removeTree(install)
    try? POSIX.removeTree(scratch + "/.app.phoenix")
    try? FileManager.default.createDirectory(atPath: install + "/sub", withIntermediateDirectories: true)
    // The tree the seed delta bundle was made from: sub/ and blob (the same bytes as FuzzPatch's old file).
    blob.withUnsafeBytes { try? POSIX.writeNewFile(install + "/blob", $0, mode: 0o644) }
    let bundle = scratch + "/bundle"
    try? POSIX.unlink(bundle)
    bytes.withUnsafeBytes { try? POSIX.writeNewFile(bundle, $0, mode: 0o600) }
    _ = try? BundleApplier.apply(directory: install, bundlePath: bundle, options: BundleApplyOptions(limits: limits))
    return 0
}
