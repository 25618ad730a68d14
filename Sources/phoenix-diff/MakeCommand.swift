import ArgumentParser
import DiffEngine
import Foundation
import PatchFormat
import Patcher

struct MakeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make",
        abstract: "Make a patch that turns OLD into NEW.",
        discussion: """
            The default format is phx (checksummed, zstd). --format bsdiff writes a classic BSDIFF40 \
            patch that Debian's bspatch applies. The patch is written atomically.
            """
    )

    @Argument(help: "The old file.") var old: String
    @Argument(help: "The new file.") var new: String
    @Argument(help: "Where to write the patch.") var patch: String

    @Option(help: "Patch format: phx or bsdiff.") var format: PatchKind = .phx
    @Option(help: "Codec for phx: zstd (default), bzip2, zlib or none. bsdiff always uses bzip2.") var codec: CodecID?
    @Option(help: "Compression level (zstd 1-22, default 19; bzip2 1-9; zlib 0-9).") var level: Int?
    @Option(help: "Threads for compression (default: all cores). The patch bytes do not depend on it.")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    @OptionGroup var output: OutputOptions

    var options: DiffOptions { DiffOptions(format: format, codec: codec, level: level, threads: threads) }

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1, got \(threads)") }
        do { try options.validate() } catch let e as DiffEngineError { throw ValidationError(e.description) }
    }

    func run() throws {
        let started = Date()
        for path in [old, new] {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
                throw ValidationError("\(path) is a directory; directory (bundle) patches are not supported by this version")
            }
        }
        let oldFile = try LoadedFile(path: old)
        let newFile = try LoadedFile(path: new)
        let bar = ProgressBar(label: "make", quiet: output.quiet)
        let bytes = try DiffEngine.makePatch(old: oldFile.bytes, new: newFile.bytes, options: options) { f in
            bar.update(f)
        }
        bar.finish()
        let writer = try AtomicFileWriter(destination: patch, mode: 0o644)
        try bytes.withUnsafeBytes { try writer.write($0) }
        try writer.commit()
        if !output.quiet {
            let ratio = newFile.count == 0 ? 0 : Double(bytes.count) / Double(newFile.count) * 100
            print(String(format: "%@: %@ patch, %@ (%.2f%% of the new file's %@), in %.2f s",
                         patch, options.format == .phx ? "phx/\(options.codec.name)" : "bsdiff",
                         formatBytes(UInt64(bytes.count)), ratio, formatBytes(UInt64(newFile.count)),
                         Date().timeIntervalSince(started)))
        }
    }
}
