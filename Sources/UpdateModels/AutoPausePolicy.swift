import Foundation

/// When a rollout stops itself: the failure rate over a sliding window exceeds `threshold` with at
/// least `minimumReports` install attempts.
public struct AutoPausePolicy: Sendable, Equatable {
    public var threshold: Double = 0.05
    public var minimumReports: Int = 20
    public var windowSeconds: Int = 24 * 3600

    public init(threshold: Double = 0.05, minimumReports: Int = 20, windowSeconds: Int = 24 * 3600) {
        self.threshold = threshold
        self.minimumReports = minimumReports
        self.windowSeconds = windowSeconds
    }

    /// The reason to pause, or nil.
    public func pauseReason(_ h: ReleaseHealth) -> String? {
        let reports = max(h.attempts, h.failureCount)
        guard reports >= minimumReports, h.failureRate > threshold else { return nil }
        let top = h.failures.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }
            .prefix(3).map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        return String(format: "auto-paused: %.1f%% of %d installs failed in the last %@ (threshold %.1f%%; %@)",
                      h.failureRate * 100, reports, Self.duration(windowSeconds), threshold * 100, top)
    }

    public static func duration(_ s: Int) -> String {
        s % 3600 == 0 ? "\(s / 3600) h" : s % 60 == 0 ? "\(s / 60) min" : "\(s) s"
    }
}
