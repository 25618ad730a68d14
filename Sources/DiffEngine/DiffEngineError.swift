import PatchFormat

/// Failures while making a patch. Inputs are plain bytes, so these are rare: resource limits and
/// codec failures.
public enum DiffEngineError: Error, Equatable, Sendable, CustomStringConvertible {
    case suffixSortFailed(code: Int)
    /// The system refused memory the diff needs.
    case outOfMemory(what: String, bytes: Int)
    case unsupportedCombination(String)
    case format(PatchFormatError)
    /// A bug in the engine caught before it could write a bad patch.
    case internalInconsistency(String)

    public var description: String {
        switch self {
        case .suffixSortFailed(let code): "suffix sorting failed (libdivsufsort returned \(code))"
        case .outOfMemory(let what, let bytes):
            "out of memory: could not get \(bytes >> 20) MiB for \(what) (try make --memory-limit)"
        case .unsupportedCombination(let why): why
        case .format(let e): e.description
        case .internalInconsistency(let what): "internal error, no patch written: \(what) (please report this)"
        }
    }
}
