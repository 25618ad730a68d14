import ArgumentParser
import DiffEngine
import PatchFormat
#if canImport(Glibc)
import Glibc
#endif

struct OutputOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Print nothing but errors.")
    var quiet = false
}

/// A byte count with an optional K, M, G or T suffix (powers of 1024).
struct ByteCount: ExpressibleByArgument, CustomStringConvertible {
    var value: UInt64

    init(_ value: UInt64) { self.value = value }

    init?(argument: String) {
        var digits = argument
        var multiplier: UInt64 = 1
        if let last = digits.last?.uppercased() {
            switch last {
            case "K": multiplier = 1 << 10
            case "M": multiplier = 1 << 20
            case "G": multiplier = 1 << 30
            case "T": multiplier = 1 << 40
            default: break
            }
            if multiplier > 1 { digits.removeLast() }
        }
        guard let n = UInt64(digits) else { return nil }
        let (v, overflow) = n.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { return nil }
        value = v
    }

    var description: String { "\(value)" }
}

extension PatchKind: ExpressibleByArgument {}

extension MatchIndexKind: ExpressibleByArgument {}

extension CodecID: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
    public static var allValueStrings: [String] { allCases.map(\.name) }
}

enum Terminal {
    static var stderrIsTTY: Bool { isatty(2) == 1 }
}

func formatBytes(_ n: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n)
    var i = 0
    while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
    return i == 0 ? "\(n) B" : "\(fixed(v, 1)) \(units[i])"
}

/// `value` with `decimals` digits after the point, rounded half away from zero (what "%.Nf" printed,
/// without Foundation's formatter).
func fixed(_ value: Double, _ decimals: Int) -> String {
    guard value.isFinite else { return "\(value)" }
    var scale = 1
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (abs(value) * Double(scale)).rounded()
    guard scaled < 9e18 else { return "\(value)" }
    let n = Int(scaled)
    let sign = value < 0 && n != 0 ? "-" : ""
    if decimals == 0 { return "\(sign)\(n)" }
    let fraction = String(n % scale)
    return "\(sign)\(n / scale)." + String(repeating: "0", count: decimals - fraction.count) + fraction
}

/// `text` padded with spaces (or cut) to `width` characters.
func padded(_ text: String, _ width: Int) -> String {
    text.count >= width ? String(text.prefix(width)) : text + String(repeating: " ", count: width - text.count)
}
