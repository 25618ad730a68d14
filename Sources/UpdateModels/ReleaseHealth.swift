import Foundation

/// The health of one release from its clients' reports (`counting`): clients that attempted the
/// install, that succeeded, and failures by category (failed installs, and rollbacks away from it
/// after it was installed). Installs the client's environment stopped (`isEnvironmental`) are neither
/// attempts nor failures.
public struct ReleaseHealth: Codable, Sendable, Equatable {
    public var attempts: Int
    public var successes: Int
    public var failures: [String: Int]

    public init(attempts: Int = 0, successes: Int = 0, failures: [String: Int] = [:]) {
        self.attempts = attempts
        self.successes = successes
        self.failures = failures
    }

    public var failureCount: Int { failures.values.reduce(0, +) }

    /// Failures over attempts (0 without attempts; a rollback after a successful install counts as a
    /// failure of that attempt, so the rate never exceeds 1).
    public var failureRate: Double {
        let denominator = max(attempts, failureCount)
        return denominator == 0 ? 0 : Double(failureCount) / Double(denominator)
    }

    /// Install outcomes that say nothing about the release: the client's network, its TLS trust of
    /// the server, its own configuration, or another run holding its lock. A week of flaky Wi-Fi or
    /// an expired server certificate must not pause a good release (pausing would not help either).
    /// The dashboard still lists them by category.
    public static func isEnvironmental(_ outcome: String) -> Bool {
        ["network", "busy", "config", "insecure", "tls"].contains(outcome) || outcome.hasPrefix("tls_")
    }

    /// Whether a report is a failure of the release it names: a failed install (not one stopped by
    /// the client's environment, `isEnvironmental`) or an automatic rollback away from it (a
    /// rollback the user asked for is not the release's fault).
    public static func isFailure(stage: TelemetryEvent.Stage, outcome: String) -> Bool {
        switch stage {
        case .install: outcome != "success" && !isEnvironmental(outcome)
        case .rollback: outcome != "requested"
        default: false
        }
    }

    /// One client's report of an install or a rollback (the fields auto-pause counts by).
    public struct ClientReport: Sendable, Equatable, Hashable {
        public var client: String
        public var stage: TelemetryEvent.Stage
        public var outcome: String
        public var from: String?
        public var to: String?
        public init(client: String, stage: TelemetryEvent.Stage, outcome: String, from: String?, to: String?) {
            (self.client, self.stage, self.outcome, self.from, self.to) = (client, stage, outcome, from, to)
        }
    }

    /// The health of `version` counting clients, not reports: a client that reported an install of it
    /// (its surroundings' failures aside) is one attempt, a success if any of its reports is one, and
    /// at most one failure, whatever it chose to send (the same failure again, under other outcomes,
    /// versions or kinds): a failed install, unless it also reported a successful one (its first
    /// category in name order), else an automatic rollback away from the version. A client that failed
    /// once and installed it too is a success: a passing network or disk fault is not the release's.
    public static func counting(clients reports: [ClientReport], version: String) -> ReleaseHealth {
        var attempted = Set<String>(), succeeded = Set<String>()
        var installFailure = [String: String](), rollback = [String: String]()
        func keep(_ category: String, for client: String, in map: inout [String: String]) {
            if map[client].map({ category < $0 }) ?? true { map[client] = category }
        }
        for r in reports {
            switch r.stage {
            case .install where r.to == version && !isEnvironmental(r.outcome):
                attempted.insert(r.client)
                if r.outcome == "success" { succeeded.insert(r.client) } else { keep(r.outcome, for: r.client, in: &installFailure) }
            case .rollback where r.from == version && isFailure(stage: .rollback, outcome: r.outcome):
                keep("rollback_" + r.outcome, for: r.client, in: &rollback)
            default:
                break
            }
        }
        var h = ReleaseHealth(attempts: attempted.count, successes: succeeded.count)
        for client in Set(installFailure.keys).union(rollback.keys) {
            let install = succeeded.contains(client) ? nil : installFailure[client]
            if let category = install ?? rollback[client] { h.failures[category, default: 0] += 1 }
        }
        return h
    }

    enum CodingKeys: String, CodingKey {
        case attempts, successes, failures
    }
}
