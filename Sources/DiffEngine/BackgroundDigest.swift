import Dispatch
import PatchFormat

/// A digest (what `hashing` returns) computed on another core while the caller goes on (inline when
/// `threads` is 1). What it reads must stay valid until `wait()` has returned: call it on every path
/// out of the scope (`defer { _ = digest.wait() }`), including a throw.
final class BackgroundDigest<Digest>: @unchecked Sendable {
    private let group = DispatchGroup()
    private var digest: Digest?

    init(threads: Int, _ hashing: @escaping () -> Digest) {
        if threads > 1 {
            nonisolated(unsafe) let hashing = hashing
            DispatchQueue.global().async(group: group) { self.digest = hashing() }
        } else {
            digest = hashing()
        }
    }

    /// Waits for the hashing to end and returns the digest (any number of times).
    @discardableResult
    func wait() -> Digest {
        group.wait()
        return digest!
    }
}
