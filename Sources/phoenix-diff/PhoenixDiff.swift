import ArgumentParser
import CPhoenixSys
import DiffEngine
import PatchFormat
import Patcher
import TreeIO
#if canImport(Glibc)
import Glibc
#endif

/// Exit codes, documented in the README.
enum ExitStatus: Int32 {
    case ok = 0
    case usage = 1
    case invalidPatch = 2
    case checksumMismatch = 3
    case ioError = 4
}

@main
struct PhoenixDiff: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "phoenix-diff",
        abstract: "Make and apply verified binary patches (phx and classic BSDIFF40).",
        discussion: """
            Exit codes: 0 ok, 1 usage, 2 invalid or corrupt patch, 3 checksum mismatch (wrong source \
            file or installation, wrong result, no valid backup to roll back to), 4 I/O error.
            """,
        version: version,
        subcommands: [MakeCommand.self, ApplyCommand.self, InspectCommand.self, RecoverCommand.self, RollbackCommand.self]
    )

    static func main() {
        // Ctrl-C, a kill or a truncated mapped input must not leave temporary files beside the output.
        _ = phx_install_cleanup_handlers("""
            phoenix-diff: I/O error: a file being read was truncated or could not be read (SIGBUS); \
            the temporary files were removed and nothing was replaced (an interrupted directory \
            update is finished or undone by `phoenix-diff recover DIR`)

            """, ExitStatus.ioError.rawValue)
        // Paths are Swift strings: an argument that is not UTF-8 would be read with its bad bytes
        // replaced (U+FFFD), naming another file, which would then be read, patched or created in its
        // place. Refused, saying which.
        for k in stride(from: 1, to: Int(CommandLine.argc), by: 1) {
            guard let raw = CommandLine.unsafeArgv[k], String(validatingCString: raw) == nil else { continue }
            let shown = UnsafeBufferPointer(start: UnsafeRawPointer(raw).assumingMemoryBound(to: UInt8.self), count: strlen(raw))
                .map { $0 >= 0x20 && $0 < 0x7F ? String(UnicodeScalar($0)) : "\\x" + String($0, radix: 16, uppercase: true) }.joined()
            FileHandleStderr.write("phoenix-diff: argument \(k) (\(shown)) is not valid UTF-8: phoenix-diff takes UTF-8 paths only (rename the file)\n")
            Glibc.exit(ExitStatus.usage.rawValue)
        }
        do {
            var command = try parseAsRoot()
            try command.run()
            Glibc.exit(ExitStatus.ok.rawValue)
        } catch {
            let status = classify(error)
            if status == .ok {
                // --help and --version
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            var message: String
            switch status {
            case .usage: message = fullMessage(for: error)
            default: message = "phoenix-diff: \(describe(error))"
            }
            if message.isEmpty { message = "phoenix-diff: \(error)" }
            FileHandleStderr.write(message.hasSuffix("\n") ? message : message + "\n")
            Glibc.exit(status.rawValue)
        }
    }

    static func classify(_ error: Error) -> ExitStatus {
        switch error {
        case let e as PatcherError:
            switch e {
            case .format: return .invalidPatch
            case .oldSizeMismatch, .oldChecksumMismatch, .newChecksumMismatch, .installationMismatch: return .checksumMismatch
            case .io, .insufficientSpace, .busy: return .ioError
            case .noBackup: return .checksumMismatch
            }
        case is PatchFormatError:
            return .invalidPatch
        case is TreeIOError:
            return .ioError
        case let e as DiffEngineError:
            switch e {
            case .unsupportedCombination: return .usage
            default: return .ioError
            }
        default:
            return exitCode(for: error) == .success ? .ok : .usage
        }
    }

    static func describe(_ error: Error) -> String {
        String(describing: error)
    }
}

enum FileHandleStderr {
    static func write(_ text: String) {
        var t = text
        t.withUTF8 { buf in
            var done = 0
            while done < buf.count {
                let n = Glibc.write(2, buf.baseAddress! + done, buf.count - done)
                if n <= 0 { break }
                done += n
            }
        }
    }
}
