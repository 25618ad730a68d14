import PatchFormat

/// Failures while making a patch. Inputs are plain bytes, so these are rare: resource limits and
/// codec failures.
public enum DiffEngineError: Error, Equatable, Sendable, CustomStringConvertible {
    case suffixSortFailed(code: Int)
    case unsupportedCombination(String)
    case format(PatchFormatError)

    public var description: String {
        switch self {
        case .suffixSortFailed(let code): "suffix sorting failed (libdivsufsort returned \(code))"
        case .unsupportedCombination(let why): why
        case .format(let e): e.description
        }
    }
}
