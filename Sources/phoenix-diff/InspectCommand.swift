import ArgumentParser
import Foundation
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
        lines.append(("streams", "control \(info.controlStreamSize), diff \(info.diffStreamSize), extra \(info.extraStreamSize) bytes compressed"))
        if let d = info.diffBytes, let e = info.extraBytes {
            let changed = info.diffLiteralBytes.map { ", \($0) of them changed" } ?? ""
            lines.append(("new bytes", "\(d) from old (diff\(changed)), \(e) verbatim (extra)"))
        }
        for (k, v) in lines { print(k.padding(toLength: 15, withPad: " ", startingAt: 0) + v) }
    }
}
