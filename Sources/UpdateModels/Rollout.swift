import Foundation

/// The phased rollout of one release: which share of clients is offered it, and whether it is moving.
///
/// A pure value: every transition takes the time as an argument, so the schedule is tested with an
/// injected clock. The server stores it per release and applies `settled(at:)` before using it.
public struct Rollout: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        /// Advancing on its schedule (or waiting to be advanced by hand when the interval is 0).
        case active
        /// Stopped by hand or by the auto-pause; not offered to anyone new until resumed by hand.
        case paused
        /// At 100%.
        case complete
    }

    public static let defaultStages = [10, 25, 50, 100]

    /// Percentages in increasing order, ending at 100.
    public var stages: [Int]
    /// The share of clients (0-100) currently offered the release.
    public var percent: Int
    public var state: State
    /// When `percent` took effect (or the rollout was resumed): the schedule counts from here.
    public var since: Date
    /// Seconds between automatic advances; 0 = only by hand.
    public var intervalSeconds: Int
    /// Why it is paused.
    public var pausedReason: String?
    /// When it was last resumed: the auto-pause counts only reports after this, so a resumed rollout is
    /// not paused again by the failures that paused it.
    public var resumedAt: Date?

    public enum RolloutError: Error, Equatable, CustomStringConvertible {
        case invalidPercent(Int)
        case invalidStages([Int])
        case invalidInterval(Int)
        case paused
        case alreadyComplete

        public var description: String {
            switch self {
            case .invalidPercent(let p): "rollout percentage \(p) is not an integer in 0...100"
            case .invalidStages(let s): "rollout stages \(s) must be increasing percentages in 1...100 that end at 100"
            case .invalidInterval(let i): "rollout interval \(i) must be 0 (by hand) or a positive number of seconds"
            case .paused: "the rollout is paused: resume it first"
            case .alreadyComplete: "the rollout is already at 100%"
            }
        }
    }

    public static func validate(stages: [Int]) throws {
        guard !stages.isEmpty, stages.last == 100, stages.allSatisfy({ (1...100).contains($0) }),
              zip(stages, stages.dropFirst()).allSatisfy({ $0 < $1 }) else { throw RolloutError.invalidStages(stages) }
    }

    public static func validate(percent: Int) throws {
        guard (0...100).contains(percent) else { throw RolloutError.invalidPercent(percent) }
    }

    /// A new rollout at its first stage.
    public init(stages: [Int] = Rollout.defaultStages, intervalSeconds: Int, start: Date) throws {
        try Self.validate(stages: stages)
        guard intervalSeconds >= 0 else { throw RolloutError.invalidInterval(intervalSeconds) }
        self.stages = stages
        self.percent = stages[0]
        self.state = stages[0] == 100 ? .complete : .active
        self.since = start
        self.intervalSeconds = intervalSeconds
        self.pausedReason = nil
        self.resumedAt = nil
    }

    /// A rollout that is already complete (the first release of a platform, and rows from before rollouts).
    public static func complete(at date: Date) -> Rollout {
        // swiftlint:disable:next force_try
        try! Rollout(stages: [100], intervalSeconds: 0, start: date)
    }

    /// The next stage above the current percentage.
    public var nextStage: Int { stages.first(where: { $0 > percent }) ?? 100 }

    /// When the schedule advances next, if it does.
    public var nextAdvance: Date? {
        guard state == .active, intervalSeconds > 0 else { return nil }
        return since.addingTimeInterval(TimeInterval(intervalSeconds))
    }

    /// The rollout with every scheduled advance up to `now` applied.
    public func settled(at now: Date) -> Rollout {
        var r = self
        while let due = r.nextAdvance, due <= now {
            r.moveTo(r.nextStage, at: due)
        }
        return r
    }

    mutating func moveTo(_ p: Int, at date: Date) {
        percent = p
        since = date
        if p == 100 {
            state = .complete
        } else if state == .complete {
            state = .active
        }
    }

    /// Moves to the next stage now (by hand).
    public mutating func advance(at now: Date) throws {
        self = settled(at: now)
        if state == .paused { throw RolloutError.paused }
        if percent == 100 { throw RolloutError.alreadyComplete }
        moveTo(nextStage, at: now)
    }

    /// Stops the rollout where it is.
    public mutating func pause(reason: String, at now: Date) {
        self = settled(at: now)
        state = .paused
        pausedReason = reason
        since = now
    }

    /// Starts a paused rollout again; the schedule counts from now.
    public mutating func resume(at now: Date) {
        guard state == .paused else { return }
        state = percent == 100 ? .complete : .active
        pausedReason = nil
        since = now
        resumedAt = now
    }

    /// Sets the percentage by hand (a paused rollout stays paused at the new percentage).
    public mutating func set(percent p: Int, at now: Date) throws {
        try Self.validate(percent: p)
        self = settled(at: now)
        percent = p
        since = now
        if state != .paused { state = p == 100 ? .complete : .active }
    }

    /// Whether the release is offered to a client in `bucket` (from `RolloutBucket`), or on a manual
    /// check or for a critical release, which bypass the stages (never a pause).
    public func offers(bucket: Int?, manual: Bool, critical: Bool) -> Bool {
        if state == .paused { return false }
        if percent >= 100 || manual || critical { return true }
        guard let bucket else { return false }
        return RolloutBucket.isInside(bucket: bucket, percent: percent)
    }

    enum CodingKeys: String, CodingKey {
        case stages, percent, state, since
        case intervalSeconds = "interval_seconds", pausedReason = "paused_reason", resumedAt = "resumed_at"
    }
}
