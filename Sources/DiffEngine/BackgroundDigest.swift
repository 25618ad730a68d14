import Dispatch
import PatchFormat

/// SHA-256 of a buffer, computed on another core while the caller goes on (inline when `threads` is 1).
/// The buffer must stay valid until `wait()` has returned: call it on every path out of the scope
/// (`defer { _ = digest.wait() }`), including a throw.
final class BackgroundDigest: @unchecked Sendable {
    private let group = DispatchGroup()
    private var digest: [UInt8] = []

    init(_ bytes: UnsafeRawBufferPointer, threads: Int) {
        if threads > 1 {
            nonisolated(unsafe) let b = bytes
            DispatchQueue.global().async(group: group) { self.digest = SHA256Hasher.hash(b) }
        } else {
            digest = SHA256Hasher.hash(bytes)
        }
    }

    /// Waits for the hashing to end and returns the digest (any number of times).
    @discardableResult
    func wait() -> [UInt8] {
        group.wait()
        return digest
    }
}
