import Foundation
import UpdateModels

/// What the dashboard shows, gathered from the catalog (separate from the HTML so tests can check the
/// numbers and the page from the same source).
public struct DashboardData: Sendable {
    public struct Point: Sendable, Equatable {
        public var start: Date
        public var successes: Int
        public var failures: Int
    }

    public struct VariantRow: Sendable, Equatable {
        public var variant: String
        public var checks: Int
        public var installs: Int
        public var failures: Int
    }

    public struct PlatformView: Sendable {
        public var platform: String
        public var releases: [RolloutStatus]
        /// Install successes and failures (`ReleaseHealth.isFailure`: failed installs but those the
        /// client's environment stopped, and automatic rollbacks) per time bucket.
        public var series: [Point]
        public var bucketSeconds: Int
        /// Failures in the window by stage and category (`install: disk_full`), most frequent first.
        public var failures: [(category: String, count: Int)]
        public var deltaInstalls: Int
        /// Bytes clients downloaded for delta installs, and what full downloads of the same releases weigh.
        public var deltaBytes: UInt64
        public var fullEquivalentBytes: UInt64
        public var fullInstalls: Int
        public var fullBytes: UInt64
        public var variants: [VariantRow]

        public var bytesSaved: UInt64 { fullEquivalentBytes > deltaBytes ? fullEquivalentBytes - deltaBytes : 0 }
    }

    public var generated: Date
    public var windowSeconds: Int
    public var platforms: [PlatformView]
    public var log: [RolloutLogEntry]
    public var experiment: Experiment?
}

extension UpdateService {
    /// `a + b`, or the largest UInt64 if that overflows.
    static func sum(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (s, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : s
    }

    /// Everything the dashboard shows, over the auto-pause window ending at `now`.
    public func dashboardData(now: Date = Date()) throws -> DashboardData {
        let window = configuration.autoPauseWindowSeconds
        // About 24 bars, each a whole number of minutes.
        let bucket = max(60, (window / 24) / 60 * 60)
        let since = now.addingTimeInterval(-TimeInterval(window))
        var views: [DashboardData.PlatformView] = []
        for platform in try catalog.platforms() {
            let statuses = try rolloutStatus(platform: platform, now: now)
            let fullSize = Dictionary(try catalog.releases(platform: platform).map { ($0.version, $0.fullSize) }, uniquingKeysWith: { a, _ in a })
            let rows = try catalog.telemetrySummary(platform: platform, since: since, bucketSeconds: bucket)
            let first = Int(since.timeIntervalSince1970) / bucket * bucket
            let last = Int(now.timeIntervalSince1970) / bucket * bucket
            var points = stride(from: first, through: last, by: bucket).map {
                DashboardData.Point(start: Date(timeIntervalSince1970: TimeInterval($0)), successes: 0, failures: 0)
            }
            var failures: [String: Int] = [:]
            var variants: [String: DashboardData.VariantRow] = [:]
            var view = DashboardData.PlatformView(platform: platform, releases: statuses, series: [], bucketSeconds: bucket, failures: [],
                                                  deltaInstalls: 0, deltaBytes: 0, fullEquivalentBytes: 0, fullInstalls: 0, fullBytes: 0,
                                                  variants: [])
            for row in rows {
                let index = (Int(row.bucket.timeIntervalSince1970) - first) / bucket
                let isInstall = row.stage == .install
                let isFailure = ReleaseHealth.isFailure(stage: row.stage, outcome: row.outcome)
                if points.indices.contains(index) {
                    if isInstall && row.outcome == "success" { points[index].successes += row.count }
                    if isFailure { points[index].failures += row.count }
                }
                if row.outcome != "success" && !(row.stage == .rollback && row.outcome == "requested") {
                    failures["\(row.stage.rawValue): \(row.outcome)", default: 0] += row.count
                }
                if isInstall && row.outcome == "success", let to = row.toVersion {
                    // Byte totals saturate: they are sums of what clients report.
                    if row.kind == "delta" {
                        view.deltaInstalls += row.count
                        view.deltaBytes = Self.sum(view.deltaBytes, row.bytes)
                        let (equivalent, overflow) = UInt64(row.count).multipliedReportingOverflow(by: fullSize[to] ?? 0)
                        view.fullEquivalentBytes = Self.sum(view.fullEquivalentBytes, overflow ? .max : equivalent)
                    } else {
                        view.fullInstalls += row.count
                        view.fullBytes = Self.sum(view.fullBytes, row.bytes)
                    }
                }
                if let v = row.variant {
                    var vr = variants[v] ?? DashboardData.VariantRow(variant: v, checks: 0, installs: 0, failures: 0)
                    if row.stage == .check { vr.checks += row.count }
                    if isInstall && row.outcome == "success" { vr.installs += row.count }
                    if isFailure { vr.failures += row.count }
                    variants[v] = vr
                }
            }
            view.series = points
            view.failures = failures.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.map { ($0.key, $0.value) }
            view.variants = variants.values.sorted { $0.variant < $1.variant }
            views.append(view)
        }
        return DashboardData(generated: now, windowSeconds: window, platforms: views, log: try catalog.rolloutLog(platform: nil, limit: 20),
                             experiment: configuration.experiment)
    }
}
