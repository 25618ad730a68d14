import ArgumentParser
import Foundation
import PatchFormat
import Patcher

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Apply a patch: apply OLD PATCH NEW, or apply --in-place FILE PATCH.",
        discussion: """
            The result is written to a temporary file beside the destination, verified (phx: SHA-256 of \
            the old file before, of the result after), fsynced and renamed into place. On any error the \
            destination is untouched and no temporary file is left.
            """
    )

    @Argument(help: "The old file (with --in-place: the file to update).") var old: String
    @Argument(help: "The patch.") var patch: String
    @Argument(help: "Where to write the new file (omit with --in-place).") var new: String?

    @Flag(help: "Replace the old file itself, atomically, keeping its permissions.") var inPlace = false
    @Option(help: "Refuse patches whose declared new size is above this (bytes; K, M, G, T suffixes).")
    var maxOutput = ByteCount(PatchLimits.defaultMaxOutputSize)
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if inPlace && new != nil { throw ValidationError("--in-place takes FILE PATCH, not a third path") }
        if !inPlace && new == nil { throw ValidationError("missing NEW: use apply OLD PATCH NEW, or apply --in-place FILE PATCH") }
    }

    func run() throws {
        let started = Date()
        let destination = inPlace ? old : new!
        let bar = ProgressBar(label: "apply", quiet: output.quiet)
        let options = ApplyOptions(limits: PatchLimits(maxOutputSize: maxOutput.value)) { written, total in
            bar.update(total == 0 ? 1 : Double(written) / Double(total), detail: formatBytes(written))
        }
        let result = try PatchApplier.apply(oldPath: old, patchPath: patch, outputPath: destination, options: options)
        bar.finish()
        if !output.quiet {
            print(String(format: "%@: %@, sha256 %@%@, in %.2f s", destination, formatBytes(result.newSize),
                         result.newSHA256, result.verified ? " (verified)" : " (bsdiff: no checksum to verify)",
                         Date().timeIntervalSince(started)))
        }
    }
}
