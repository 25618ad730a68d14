import CXXHash
import Dispatch
import PatchFormat

/// What an input held when it was first read: its SHA-256 (for the patch's header), and an XXH64
/// (libxxhash) of each 4 MiB part, against which `matches` checks it again once the patch is made. A
/// mapped input may change while it is diffed; the check only has to see that (an apply verifies the
/// SHA-256 of what it makes in any case), on every core at once. XXH64 runs at about 22 GB/s here,
/// zlib's CRC-32, which it replaced, at 7: the Django tar's `make` hashed its 55 MB twice that way, a
/// tenth of its CPU time.
struct InputDigest {
    let sha256: [UInt8]
    /// Empty for an input held in memory (`init(sha256:)`), which needs no check.
    let partHashes: [UInt64]
    static let partSize = 4 << 20

    /// The parts of `count` bytes, in order (the last one short).
    static func parts(of count: Int) -> [Range<Int>] {
        stride(from: 0, to: count, by: partSize).map { $0..<min(count, $0 + partSize) }
    }

    /// What an index takes of old while it is built: nothing, the SHA-256 (old held in memory), or
    /// the SHA-256 and the parts (old mapped, checked at the end).
    enum Taken {
        case nothing, sha256, withParts
    }

    /// An input held in memory: its SHA-256 only.
    init(sha256 bytes: UnsafeRawBufferPointer) {
        sha256 = SHA256Hasher.hash(bytes)
        partHashes = []
    }

    /// The digest `taken` asks for, if any.
    static func of(_ bytes: UnsafeRawBufferPointer, _ taken: Taken) -> InputDigest? {
        switch taken {
        case .nothing: nil
        case .sha256: InputDigest(sha256: bytes)
        case .withParts: InputDigest(hashing: bytes)
        }
    }

    /// Hashes `bytes` a part at a time, taking each part's XXH64 on the way (the part is in cache);
    /// `passed` gets the bytes done so far after each part (to drop a mapping's pages behind).
    init(hashing bytes: UnsafeRawBufferPointer, passed: (Range<Int>) -> Void = { _ in }) {
        let hasher = SHA256Hasher()
        var hashes: [UInt64] = []
        for part in Self.parts(of: bytes.count) {
            hashes.append(Self.hash(bytes, part))
            hasher.update(UnsafeRawBufferPointer(rebasing: bytes[part]))
            passed(0..<part.upperBound)
        }
        sha256 = hasher.finalize()
        partHashes = hashes
    }

    /// Whether `bytes` still hold what this digest saw: each part's XXH64 again, the parts shared
    /// among `threads` cores; `checked` gets each part's range once done (to drop its pages).
    func matches(_ bytes: UnsafeRawBufferPointer, threads: Int, checked: @escaping (Range<Int>) -> Void = { _ in }) -> Bool {
        let parts = Self.parts(of: bytes.count)
        guard parts.count == partHashes.count else { return false }
        if parts.isEmpty { return true }
        let same = UnsafeMutableBufferPointer<Bool>.allocate(capacity: parts.count)
        same.initialize(repeating: false)
        defer { same.deallocate() }
        // Worker w takes parts w, w + workers, ...
        let workers = min(max(1, threads), parts.count)
        let work = { (w: Int) in
            for k in stride(from: w, to: parts.count, by: workers) {
                same[k] = Self.hash(bytes, parts[k]) == partHashes[k]
                checked(parts[k])
            }
        }
        if workers > 1 {
            nonisolated(unsafe) let work = work
            DispatchQueue.concurrentPerform(iterations: workers) { work($0) }
        } else {
            work(0)
        }
        return same.allSatisfy { $0 }
    }

    private static func hash(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> UInt64 {
        XXH64(bytes.baseAddress! + range.lowerBound, range.count, 0)
    }
}
