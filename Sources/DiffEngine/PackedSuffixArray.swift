#if canImport(Glibc)
import Glibc
#endif

/// Read access to a suffix array, whatever its layout.
protocol SuffixArrayView {
    var count: Int { get }
    subscript(_ i: Int) -> Int { get }
}

extension UnsafeBufferPointer: SuffixArrayView where Element: FixedWidthInteger {
    @inline(__always)
    subscript(_ i: Int) -> Int { Int(truncatingIfNeeded: self[i] as Element) }
}

/// A suffix array (or another array of positions: `ChainIndex`'s links) stored in ceil(log2 n) bits
/// an entry instead of 32: 25 bits for the 24.5 MB ruff file, 98 -> 77 MB. libdivsufsort sorts
/// into a fresh anonymous mapping, the entries are packed to the front of it in place, and the rest
/// is unmapped, so the matching that follows (and the new file, read only then) runs in 3.1-3.5 bytes
/// a byte of old instead of 4.
///
/// Cost: one pass over the array after the sort; each lookup is one unaligned 8-byte load, a shift
/// and a mask (the search's cost is the cache miss, which a smaller array makes rarer).
struct PackedSuffixArray: ~Copyable {
    private let view: View
    private let mapping: UnsafeMutableRawPointer
    private let mappedBytes: Int

    struct View: SuffixArrayView {
        let count: Int
        fileprivate let base: UnsafeRawPointer
        fileprivate let bits: Int
        fileprivate let mask: UInt64

        @inline(__always)
        subscript(_ i: Int) -> Int {
            let bit = i &* bits
            let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: bit >> 3, as: UInt64.self))
            return Int(truncatingIfNeeded: (word >> UInt64(bit & 7)) & mask)
        }
    }

    /// Bits an entry needs for `count` suffixes (positions 0..<count): at least 1. Entries are packed from
    /// 32-bit values, so callers keep it to 32 (`pack` checks), and an entry and its bit offset then fit
    /// one 8-byte load.
    static func bits(for count: Int) -> Int {
        max(1, Int.bitWidth - max(count - 1, 0).leadingZeroBitCount)
    }

    /// Suffix-sorts `text` (libdivsufsort, 32-bit: `text` under 2^31 - 1 bytes) and packs the order of
    /// the suffixes that start in its first `suffixes` bytes (all by default), each compared as far as
    /// the text goes. Peak: 4 bytes a byte of text, during the sort.
    init(sorting text: UnsafeBufferPointer<UInt8>, suffixes: Int? = nil) throws {
        let n = text.count, kept = suffixes ?? n
        precondition(kept <= n, "\(kept) suffixes of a \(n)-byte text")
        try self.init(count: n, bits: Self.bits(for: kept),
                      what: "the suffix array of a \(n)-byte part of old") { m in
            let sa = m.bindMemory(to: Int32.self, capacity: n)
            try SuffixSorting.sort(text, into: sa)
            guard kept < n else { return n }
            // Keep, in order, the suffixes that start in the first `kept` bytes.
            var k = 0
            for i in 0..<n where Int(sa[i]) < kept {
                sa[k] = sa[i]
                k &+= 1
            }
            return k
        }
    }

    /// `count` 32-bit values written by `fill`, each at most `maxValue`, packed the same way (the hash
    /// chains' links, `ChainIndex`). Peak: 4 bytes an entry, while `fill` runs.
    init(count: Int, maxValue: UInt32, what: String, fill: (UnsafeMutablePointer<UInt32>) throws -> Void) throws {
        try self.init(upTo: count, maxValue: maxValue, what: what) { m in
            try fill(m)
            return count
        }
    }

    /// Room for `count` 32-bit values, of which `fill` writes the first k and returns k (at most
    /// `count`); those are packed. Peak: 4 bytes an entry of `count`, while `fill` runs.
    init(upTo count: Int, maxValue: UInt32, what: String, fill: (UnsafeMutablePointer<UInt32>) throws -> Int) throws {
        try self.init(count: count, bits: Self.bits(for: Int(maxValue) + 1), what: what) { m in
            try fill(m.bindMemory(to: UInt32.self, capacity: count))
        }
    }

    /// Maps room for `count` 32-bit entries, lets `fill` write them (or the first k, returning k), packs
    /// them to `bits` and unmaps what the packed words do not need.
    private init(count room: Int, bits: Int, what: String,
                 fill: (UnsafeMutableRawPointer) throws -> Int) throws {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        // Room for the entries, plus 16 bytes so the packed tail and the last lookup's 8-byte load fit.
        let size = (room * 4 + 16 + page - 1) / page * page
        guard let m = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), m != MAP_FAILED else {
            throw DiffEngineError.outOfMemory(what: what, bytes: size)
        }
        let n: Int
        do { n = try fill(m) } catch {
            munmap(m, size)
            throw error
        }
        precondition(n >= 0 && n <= room, "\(n) entries filled in room for \(room)")
        let packedBytes = Self.pack(m, count: n, bits: bits)
        // Keep the packed words and the 8 bytes a lookup may read past the last one; give back the rest.
        let keep = (packedBytes + 8 + page - 1) / page * page
        if keep < size { munmap(m + keep, size - keep) }
        mapping = m
        mappedBytes = min(keep, size)
        view = View(count: n, base: UnsafeRawPointer(m), bits: bits, mask: (1 << UInt64(bits)) - 1)
    }

    deinit { munmap(mapping, mappedBytes) }

    /// The memory it holds.
    var byteCount: Int { mappedBytes }

    /// Calls `body` with the read side; the array lives at least until it returns.
    func withView<R>(_ body: (View) throws -> R) rethrows -> R { try body(view) }

    /// Packs `count` 32-bit entries at `base` into `bits` bits each, little-endian, from the front of the
    /// same memory; returns the bytes written. Safe in place: word k is stored once entries up to bit
    /// 64(k+1) are read, and every entry still unread starts at byte 4·64(k+1)/bits >= 8(k+1), past the
    /// word (bits <= 32).
    static func pack(_ base: UnsafeMutableRawPointer, count: Int, bits: Int) -> Int {
        precondition(bits <= 32, "cannot pack 32-bit entries into \(bits) bits")
        var accumulator: UInt64 = 0
        var filled = 0
        var word = 0
        for i in 0..<count {
            let v = UInt64(base.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self))
            accumulator |= v << UInt64(filled)
            filled &+= bits
            if filled >= 64 {
                base.storeBytes(of: accumulator.littleEndian, toByteOffset: word &* 8, as: UInt64.self)
                word &+= 1
                filled &-= 64
                accumulator = filled > 0 ? v >> UInt64(bits &- filled) : 0
            }
        }
        if filled > 0 {
            base.storeBytes(of: accumulator.littleEndian, toByteOffset: word &* 8, as: UInt64.self)
            word &+= 1
        }
        return word * 8
    }
}
