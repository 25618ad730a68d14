#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A live progress bar on stderr, drawn only when stderr is a terminal (and not with --quiet);
/// redrawn at most ten times a second.
final class ProgressBar: @unchecked Sendable {
    private let label: String
    private let enabled: Bool
    private let start = Date()
    private struct State {
        var lastDraw = Date.distantPast
        var drawn = false
    }
    private let state = Mutex(State())

    init(label: String, quiet: Bool) {
        self.label = label
        self.enabled = !quiet && Terminal.stderrIsTTY
    }

    /// `fraction` in 0...1; `detail` is shown after the percentage.
    func update(_ fraction: Double, detail: String = "") {
        guard enabled else { return }
        state.withLock { state in draw(fraction, detail: detail, state: &state) }
    }

    private func draw(_ fraction: Double, detail: String, state: inout State) {
        let now = Date()
        if fraction < 1 && now.timeIntervalSince(state.lastDraw) < 0.1 { return }
        state.lastDraw = now
        let f = min(max(fraction, 0), 1)
        let width = 30
        let filled = Int(f * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let elapsed = now.timeIntervalSince(start)
        var eta = ""
        if f > 0.02 && f < 1 { eta = " \(fixed(elapsed / f - elapsed, 0))s left" }
        let percent = fixed(f * 100, 0)
        let padded = String(repeating: " ", count: max(0, 3 - percent.count)) + percent
        FileHandleStderr.write("\r\(label) [\(bar)] \(padded)% \(detail)\(eta)\u{1B}[K")
        state.drawn = true
    }

    func finish() {
        guard enabled else { return }
        state.withLock { state in
            if state.drawn { FileHandleStderr.write("\r\u{1B}[K") }
        }
    }
}
