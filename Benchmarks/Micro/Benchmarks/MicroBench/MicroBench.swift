import Benchmark
import DiffEngine
import PatchFormat
import Patcher

/// Deterministic "code-like" data: random records, runs and text, and a next version with scattered edits.
struct Data {
    static func make(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var out = [UInt8]()
        out.reserveCapacity(count)
        while out.count < count {
            switch next() % 3 {
            case 0: for _ in 0..<Int(next() % 64 + 1) { out.append(UInt8(truncatingIfNeeded: next())) }
            case 1: out.append(contentsOf: repeatElement(UInt8(truncatingIfNeeded: next()), count: Int(next() % 32 + 1)))
            default: for _ in 0..<Int(next() % 32 + 1) { out.append(UInt8(0x41 + next() % 26)) }
            }
        }
        return Array(out.prefix(count))
    }

    static func edit(_ data: [UInt8], every stride: Int) -> [UInt8] {
        var d = data
        var i = 17
        while i < d.count { d[i] &+= 16; i += stride }
        return d
    }
}

let old = Data.make(4 << 20, seed: 1)
let new = Data.edit(old, every: 997)
let patch = try! DiffEngine.makePatch(old: old, new: new)

let benchmarks: @Sendable () -> Void = {
    let config = Benchmark.Configuration(metrics: [.wallClock, .throughput, .peakMemoryResident], maxDuration: .seconds(5))

    Benchmark("make phx 4 MiB (default: hash chains + match + xz)", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try DiffEngine.makePatch(old: old, new: new))
        }
    }

    Benchmark("make phx 4 MiB (suffix sort + match + xz)", configuration: config) { benchmark in
        var options = DiffOptions()
        options.index = .suffixArray
        for _ in benchmark.scaledIterations {
            blackHole(try DiffEngine.makePatch(old: old, new: new, options: options))
        }
    }

    Benchmark("make bsdiff 4 MiB", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try DiffEngine.makePatch(old: old, new: new, options: DiffOptions(format: .bsdiff)))
        }
    }

    Benchmark("apply phx 4 MiB in memory", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try PatchApplier.apply(old: old, patch: patch))
        }
    }

    for codec in [CodecID.zstd, .bzip2, .zlib] {
        Benchmark("compress 4 MiB with \(codec.name) (default level)", configuration: config) { benchmark in
            for _ in benchmark.scaledIterations {
                let e = try codec.makeEncoder()
                try e.write(new)
                blackHole(try e.finish())
            }
        }
    }

    Benchmark("SHA-256 4 MiB", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(SHA256Hasher.hash(new))
        }
    }
}
