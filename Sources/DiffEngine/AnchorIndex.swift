import Dispatch

/// A polynomial rolling hash over a fixed window of bytes (each byte first mapped to a random 64-bit
/// value, so that similar bytes do not give similar hashes), and the mixer that turns it into
/// well-spread bits.
struct RollingHash {
    static let window = 32
    private static let multiplier: UInt64 = 0x100_0000_01B3 &* 0x9E37_79B9  // odd
    /// multiplier^(window - 1): the weight of the byte that leaves the window.
    private static let outWeight: UInt64 = {
        var p: UInt64 = 1
        for _ in 0..<(window - 1) { p = p &* multiplier }
        return p
    }()
    nonisolated(unsafe) private static let byteValues: UnsafeMutablePointer<UInt64> = {
        let t = UnsafeMutablePointer<UInt64>.allocate(capacity: 256)
        var x: UInt64 = 0x5048_4F45_4E49_5821  // splitmix64, fixed seed: the patch bytes must not vary
        for i in 0..<256 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            t[i] = z ^ (z >> 31)
        }
        return t
    }()

    /// The hash of `window` bytes at `p`.
    @inline(__always)
    static func of(_ p: UnsafePointer<UInt8>) -> UInt64 {
        let t = byteValues
        var h: UInt64 = 0
        for k in 0..<window { h = h &* multiplier &+ t[Int(p[k])] }
        return h
    }

    /// `byteValues` times `outWeight` times `multiplier`: what a leaving byte takes off the next hash.
    nonisolated(unsafe) private static let leavingValues: UnsafeMutablePointer<UInt64> = {
        let t = UnsafeMutablePointer<UInt64>.allocate(capacity: 256)
        for i in 0..<256 { t[i] = byteValues[i] &* outWeight &* multiplier }
        return t
    }()

    /// The hash of the window one byte further on: `leaving` drops out at the front, `entering` joins.
    /// (h - v(leaving)·m^(w-1))·m + v(entering), computed as h·m + (v(entering) - v(leaving)·m^w): the
    /// same value (modulo 2^64), but the hash waits on one multiply and one add a byte, not two of each.
    @inline(__always)
    static func roll(_ h: UInt64, leaving: UInt8, entering: UInt8) -> UInt64 {
        tables.roll(h, leaving: leaving, entering: entering)
    }

    /// The tables `roll` reads, for a loop to hold: each read of a static table is a call to check
    /// that it is made (`swift_once`), 1.4% of the Django tar's `make` inside the anchors' loop.
    struct Tables {
        let entering: UnsafeMutablePointer<UInt64>
        let leaving: UnsafeMutablePointer<UInt64>

        @inline(__always)
        func roll(_ h: UInt64, leaving l: UInt8, entering e: UInt8) -> UInt64 {
            h &* multiplier &+ (entering[Int(e)] &- leaving[Int(l)])
        }
    }

    static var tables: Tables { Tables(entering: byteValues, leaving: leavingValues) }

    /// A finaliser (the xor-shift-multiply of splitmix64): every output bit depends on every input bit.
    @inline(__always)
    static func mix(_ h: UInt64) -> UInt64 {
        var x = (h ^ (h >> 29)) &* 0xBF58_476D_1CE4_E5B9
        x ^= x >> 32
        return x
    }
}

/// Content-defined anchors of the old file in a fixed-size hash table: the positions whose 32-byte
/// window hashes to a value with its low `rateBits` bits zero (one position in 2^rateBits on average,
/// chosen by content, so the same bytes in new are anchors too). Each table entry packs a 24-bit
/// fingerprint of the hash with the old position; of several windows with the same fingerprint only
/// the first is kept, so runs of identical blocks (zeros) take one entry, not millions.
///
/// It is the index of the low-memory diff (`DiffOptions.memoryLimit`): memory is the table alone,
/// 8 bytes a slot, fixed in advance from the budget whatever the file's size (in the spirit of zstd's
/// long-distance matcher and hdiffz `-s`). Matches shorter than about 2^rateBits bytes are mostly missed,
/// which is the mode's cost in patch size. Positions up to 2^40 (1 TiB) are supported.
final class AnchorIndex {
    let rateBits: Int
    let rateMask: UInt64
    let tableBits: Int
    private let slots: UnsafeMutableBufferPointer<UInt64>
    private let mask: Int
    private(set) var entries = 0
    private let maxEntries: Int
    static let maxPosition = (1 << 40) - 2

    /// The table's size for `oldCount` bytes within `budget` bytes: the sparsest anchors (never denser
    /// than one per 8 bytes) that keep the table at most 70% full on average.
    static func plan(oldCount: Int, budget: Int) -> (rateBits: Int, tableBits: Int) {
        var tableBits = 10
        while (8 << (tableBits + 1)) <= budget && tableBits < 36 { tableBits += 1 }
        var rateBits = 3
        while Double(oldCount) / Double(1 << rateBits) > 0.7 * Double(1 << tableBits) && rateBits < 30 { rateBits += 1 }
        // No bigger table than the anchors need.
        while tableBits > 10 && Double(oldCount) / Double(1 << rateBits) <= 0.35 * Double(1 << tableBits) { tableBits -= 1 }
        return (rateBits, tableBits)
    }

    /// Memory of the table `plan` chooses.
    static func bytes(tableBits: Int) -> Int { 8 << tableBits }

    init(rateBits: Int, tableBits: Int) {
        self.rateBits = rateBits
        self.rateMask = (1 << UInt64(rateBits)) - 1
        self.tableBits = tableBits
        slots = .allocate(capacity: 1 << tableBits)
        slots.initialize(repeating: 0)
        mask = (1 << tableBits) - 1
        maxEntries = (1 << tableBits) / 10 * 9
    }

    deinit { slots.deallocate() }

    @inline(__always) func isAnchor(_ mixed: UInt64) -> Bool { mixed & rateMask == 0 }

    @inline(__always) private func slot(_ mixed: UInt64) -> Int { Int(truncatingIfNeeded: mixed >> UInt64(64 - tableBits)) }
    @inline(__always) private func fingerprint(_ mixed: UInt64) -> UInt64 { (mixed >> 12) & 0xFF_FFFF }

    /// Adds the anchor windows of `text[range]` (windows starting in the range; `text` is the whole old
    /// file). Call with consecutive ranges from 0.
    func add(_ text: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) {
        Self.forEachAnchor(text, range, rateMask: rateMask) { insert($0, position: $1) }
    }

    /// Calls `body(mixed hash, position)` for each anchor window starting in `text[range]`, in order.
    /// The rolling hash is one chain of dependent multiplies, a byte at a time; so each piece of the
    /// range is hashed as two halves side by side (two chains the processor overlaps), the second
    /// half's anchors held until the first's are given (pieces of 128 KiB: at most 64 Ki held).
    @inline(__always)
    static func forEachAnchor(_ text: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, rateMask: UInt64,
                                      _ body: (UInt64, Int) -> Void) {
        let w = RollingHash.window
        let end = min(range.upperBound, text.count - w + 1)
        guard range.lowerBound < end, let base = text.baseAddress else { return }
        var held: [(mixed: UInt64, position: Int)] = []
        let t = RollingHash.tables
        var start = range.lowerBound
        while start < end {
            let stop = min(end, start &+ (1 << 17))
            let half = (stop &- start) / 2
            // Positions start..<mid on one chain, mid..<mid + half on the other, then the one left over
            // when the piece is odd.
            let mid = start &+ half
            var a = start, b = mid
            var ha = RollingHash.of(base + a), hb = RollingHash.of(base + b)
            while a < mid {
                let xa = RollingHash.mix(ha), xb = RollingHash.mix(hb)
                if xa & rateMask == 0 && a <= maxPosition { body(xa, a) }
                if xb & rateMask == 0 && b <= maxPosition { held.append((xb, b)) }
                a &+= 1
                b &+= 1
                if a < mid {
                    ha = t.roll(ha, leaving: base[a &- 1], entering: base[a &+ w &- 1])
                    hb = t.roll(hb, leaving: base[b &- 1], entering: base[b &+ w &- 1])
                }
            }
            if b < stop {
                // Not rolled in the loop's last step (the first chain's window would have run past mid's).
                hb = half > 0 ? t.roll(hb, leaving: base[b &- 1], entering: base[b &+ w &- 1]) : hb
                let xb = RollingHash.mix(hb)
                if xb & rateMask == 0 && b <= maxPosition { held.append((xb, b)) }
            }
            for x in held { body(x.mixed, x.position) }
            held.removeAll(keepingCapacity: true)
            start = stop
        }
    }

    /// Adds the anchor windows of all of `text` on up to `threads` cores: each finds the anchors of one
    /// stretch (the rolling hash is the work), then they are inserted in old's order, so the table is
    /// the one `add(text, 0..<text.count)` makes.
    func add(_ text: UnsafeBufferPointer<UInt8>, threads: Int) {
        let stretches = max(1, min(threads, text.count >> 20))
        if stretches == 1 { return add(text, 0..<text.count) }
        let size = (text.count + stretches - 1) / stretches
        nonisolated(unsafe) var found = [[(mixed: UInt64, position: Int)]](repeating: [], count: stretches)
        nonisolated(unsafe) let t = text
        let (rateMask, rateBits) = (self.rateMask, self.rateBits)
        found.withUnsafeMutableBufferPointer { out in
            nonisolated(unsafe) let out = out
            DispatchQueue.concurrentPerform(iterations: stretches) { k in
                let stretch = (k * size)..<min((k + 1) * size, t.count)
                var anchors: [(mixed: UInt64, position: Int)] = []
                anchors.reserveCapacity((stretch.count >> rateBits) + 16)
                Self.forEachAnchor(t, stretch, rateMask: rateMask) { anchors.append(($0, $1)) }
                out[k] = anchors
            }
        }
        for stretch in found { for a in stretch { insert(a.mixed, position: a.position) } }
    }

    @inline(__always)
    private func insert(_ mixed: UInt64, position: Int) {
        guard entries < maxEntries else { return }
        let fp = fingerprint(mixed)
        var s = slot(mixed)
        while true {
            let e = slots[s]
            if e == 0 {
                slots[s] = fp << 40 | UInt64(position + 1)
                entries &+= 1
                return
            }
            if e >> 40 == fp { return }  // the same window seen earlier (or a collision): keep the first
            s = (s &+ 1) & mask
        }
    }

    /// The old position recorded for an anchor hash, if any (it may be a fingerprint collision: verify).
    @inline(__always)
    func lookup(_ mixed: UInt64) -> Int? {
        let fp = fingerprint(mixed)
        var s = slot(mixed)
        while true {
            let e = slots[s]
            if e == 0 { return nil }
            if e >> 40 == fp { return Int(truncatingIfNeeded: e & 0xFF_FFFF_FFFF) - 1 }
            s = (s &+ 1) & mask
        }
    }
}
