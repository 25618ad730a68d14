import PatchFormat
import TreeIO

/// Why an apply failed. The command line maps these to exit codes: `format` 2, the checksum and size
/// mismatches 3, `io` and `insufficientSpace` 4.
public enum PatcherError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The patch is malformed, hostile or unsupported.
    case format(PatchFormatError)
    /// The source file is not the one the patch was made from (size).
    case oldSizeMismatch(path: String, expected: UInt64, actual: UInt64)
    /// The source file is not the one the patch was made from (SHA-256).
    case oldChecksumMismatch(path: String, expected: String, actual: String)
    /// The patch applied but the result is not what the patch promised.
    case newChecksumMismatch(expected: String, actual: String)
    /// A system call failed.
    case io(operation: String, path: String, errno: Int32, message: String)
    /// Not enough free space beside the destination.
    case insufficientSpace(path: String, needed: UInt64, available: UInt64)
    /// The installed tree is not the one the bundle was made from (names the first difference).
    case installationMismatch(directory: String, detail: String)
    /// Another update of the same installation holds the lock.
    case busy(directory: String)
    /// Rollback asked for, but there is no previous version, or it no longer matches its digest.
    case noBackup(directory: String, detail: String)

    /// The same failure as a `PatcherError`, for callers that handle one error type.
    public init(_ e: TreeIOError) {
        switch e {
        case .io(let operation, let path, let code, let message):
            self = .io(operation: operation, path: path, errno: code, message: message)
        case .unsupportedFileType(let path, let type):
            self = .io(operation: "unsupported file type:", path: path, errno: 0, message: "a \(type)")
        case .invalidName(let path, let reason):
            self = .io(operation: "unsupported file name:", path: path, errno: 0, message: reason)
        }
    }

    public var description: String {
        switch self {
        case .format(let e):
            return e.description
        case .oldSizeMismatch(let path, let expected, let actual):
            return "wrong source file: \(path) is \(actual) bytes but the patch was made from a file of \(expected) bytes"
        case .oldChecksumMismatch(let path, let expected, let actual):
            return "wrong source file: SHA-256 of \(path) is \(actual) but the patch was made from \(expected)"
        case .newChecksumMismatch(let expected, let actual):
            return "checksum mismatch: the patched result has SHA-256 \(actual) but the patch promises \(expected); nothing was replaced"
        case .io(let operation, let path, _, let message):
            return "I/O error: \(operation) \(path): \(message)"
        case .insufficientSpace(let path, let needed, let available):
            return "I/O error: not enough space in \(path): \(needed) bytes needed, \(available) available"
        case .installationMismatch(let directory, let detail):
            return "wrong installation: \(directory) is not the tree this bundle updates (\(detail)); nothing was changed"
        case .busy(let directory):
            return "busy: another update of \(directory) is in progress"
        case .noBackup(let directory, let detail):
            return "cannot roll back \(directory): \(detail)"
        }
    }
}
