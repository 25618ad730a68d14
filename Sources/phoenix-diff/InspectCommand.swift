import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials  // not all of Foundation: ICU and the rest cost ~9 MB of every run's memory
#else
import Foundation
#endif
import PatchFormat
import Patcher

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a patch's format, codec, sizes, hashes and number of control tuples."
    )

    @Argument(help: "The patch.") var patch: String
    @Flag(help: "Print JSON.") var json = false
    @Option(help: "Refuse patches whose declared new size is above this.")
    var maxOutput = ByteCount(PatchLimits.defaultMaxOutputSize)

    func run() throws {
        if BundleApplier.isBundle(path: patch) {
            try inspectBundle()
            return
        }
        let info = try PatchApplier.inspect(patchPath: patch, limits: PatchLimits(maxOutputSize: maxOutput.value))
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(info), as: UTF8.self))
            return
        }
        var lines: [(String, String)] = [
            ("format", info.format),
            ("codec", info.codec + (info.level.map { " (level \($0))" } ?? "")),
            ("patch size", "\(info.patchSize)"),
        ]
        if let o = info.oldSize { lines.append(("old size", "\(o)")) }
        lines.append(("new size", "\(info.newSize)"))
        if let h = info.oldSHA256 { lines.append(("old sha256", h)) }
        if let h = info.newSHA256 { lines.append(("new sha256", h)) }
        lines.append(("control tuples", "\(info.controlTuples)"))
        if let order = info.diffOrder { lines.append(("diff order", order)) }
        if let layout = info.controlLayout { lines.append(("control", layout)) }
        lines.append(("streams", "control \(info.controlStreamSize), diff \(info.diffStreamSize), extra \(info.extraStreamSize) bytes compressed"))
        if let d = info.diffBytes, let e = info.extraBytes {
            let changed = info.diffLiteralBytes.map { ", \($0) of them changed" } ?? ""
            lines.append(("new bytes", "\(d) from old (diff\(changed)), \(e) verbatim (extra)"))
        }
        for (k, v) in lines { print(padded(k, 15) + v) }
    }

    func inspectBundle() throws {
        var limits = BundleLimits()
        limits.maxFileBytes = maxOutput.value
        let info = try BundleApplier.inspect(bundlePath: patch, limits: limits)
        if json {
            printJSON(info)
            return
        }
        let lines: [(String, String)] = [
            ("format", info.full ? "bundle (full: installs or replaces a whole tree)" : "bundle"),
            ("codec", info.codec),
            ("diff order", info.diffOrder),
            ("control", info.controlLayout),
            ("bundle size", "\(info.bundleSize)"),
            ("old tree", "\(info.oldTreeDigest) (\(info.oldEntries) entries)"),
            ("new tree", "\(info.newTreeDigest) (\(info.newEntries) entries, \(info.newBytes) bytes in files)"),
            ("streams", "manifest \(info.manifestSize), " + ["control", "diff-runs", "diff-literals", "extra"]
                .map { "\($0) \(info.streamSizes[$0] ?? 0)" }.joined(separator: ", ") + " bytes compressed"),
            ("operations", "\(info.operations.count)"),
        ]
        for (k, v) in lines { print(padded(k, 15) + v) }
        for o in info.operations {
            var detail = padded(o.op, 9) + " " + o.path
            if let from = o.from { detail += o.op == "symlink" ? " -> \(from)" : " (from \(from))" }
            if let size = o.size { detail += ", \(size) bytes" }
            if let mode = o.mode { detail += ", mode \(mode)" }
            print("  " + detail)
        }
    }
}
