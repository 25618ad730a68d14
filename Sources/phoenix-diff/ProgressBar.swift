import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A live progress bar on stderr, drawn only when stderr is a terminal (and not with --quiet);
/// redrawn at most ten times a second.
final class ProgressBar: @unchecked Sendable {
    private let label: String
    private let enabled: Bool
    private let start = Date()
    private var lastDraw = Date.distantPast
    private var drawn = false
    private let lock = NSLock()

    init(label: String, quiet: Bool) {
        self.label = label
        self.enabled = !quiet && Terminal.stderrIsTTY
    }

    /// `fraction` in 0...1; `detail` is shown after the percentage.
    func update(_ fraction: Double, detail: String = "") {
        guard enabled else { return }
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        if fraction < 1 && now.timeIntervalSince(lastDraw) < 0.1 { return }
        lastDraw = now
        let f = min(max(fraction, 0), 1)
        let width = 30
        let filled = Int(f * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let elapsed = now.timeIntervalSince(start)
        var eta = ""
        if f > 0.02 && f < 1 { eta = String(format: " %.0fs left", elapsed / f - elapsed) }
        FileHandleStderr.write(String(format: "\r%@ [%@] %3.0f%% %@%@\u{1B}[K", label, bar, f * 100, detail, eta))
        drawn = true
    }

    func finish() {
        guard enabled else { return }
        lock.lock(); defer { lock.unlock() }
        if drawn { FileHandleStderr.write("\r\u{1B}[K") }
    }
}
