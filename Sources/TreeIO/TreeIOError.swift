/// File-system failures while reading or writing a tree.
public enum TreeIOError: Error, Equatable, Sendable, CustomStringConvertible {
    case io(operation: String, path: String, errno: Int32, message: String)
    /// A device, FIFO or socket: not something an application bundle may contain.
    case unsupportedFileType(path: String, type: String)
    /// A name the bundle format cannot carry (with a backslash, or not UTF-8), or a symbolic link
    /// whose target it cannot (not UTF-8).
    case invalidName(path: String, reason: String)

    public var description: String {
        switch self {
        case .io(let operation, let path, _, let message): "I/O error: \(operation) \(path): \(message)"
        case .unsupportedFileType(let path, let type): "unsupported file type: \(path) is a \(type)"
        case .invalidName(let path, let reason): "not allowed in a bundle: \(path): \(reason)"
        }
    }
}
