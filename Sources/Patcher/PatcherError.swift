import PatchFormat

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
        }
    }
}
