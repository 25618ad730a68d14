// libFuzzer target: any bytes as a phx or BSDIFF40 patch, applied in memory to a fixed old file.
// Build and run: scripts/fuzz.sh FuzzPatch. Invariant: no crash, no trap, no hang; an accepted phx
// patch produced exactly what its header's SHA-256 promised (checked inside apply).
import PatchFormat
import Patcher

let old: [UInt8] = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 5)) }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let patch = Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? PatchApplier.apply(old: old, patch: patch, limits: PatchLimits(maxOutputSize: 1 << 16))
    _ = try? PatchApplier.inspect(patch: patch, limits: PatchLimits(maxOutputSize: 1 << 16))
    return 0
}
