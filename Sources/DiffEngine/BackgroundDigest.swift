import Dispatch
import PatchFormat

/// A SHA-256 digest (what `hashing` returns) computed on another core while the caller goes on (inline
/// when `threads` is 1). What it reads must stay valid until `wait()` has returned: call it on every
/// path out of the scope (`defer { _ = digest.wait() }`), including a throw.
final class BackgroundDigest: @unchecked Sendable {
    private let group = DispatchGroup()
    private var digest: [UInt8] = []

    init(threads: Int, _ hashing: @escaping () -> [UInt8]) {
        if threads > 1 {
            nonisolated(unsafe) let hashing = hashing
            DispatchQueue.global().async(group: group) { self.digest = hashing() }
        } else {
            digest = hashing()
        }
    }

    /// Waits for the hashing to end and returns the digest (any number of times).
    @discardableResult
    func wait() -> [UInt8] {
        group.wait()
        return digest
    }
}
