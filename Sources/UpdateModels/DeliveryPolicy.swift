/// The hybrid delta/full delivery policy, a pure function of its inputs (tested with a table).
///
/// For a client at version C on a channel, the latest eligible release L (never lower than C) is
/// delivered as a delta when C and L share the major version, a verified delta from exactly C exists,
/// and it is smaller than `deltaThreshold` x the full package; otherwise the full bundle is delivered.
/// Pre-releases reach only the beta channel; the beta channel also sees stable releases.
public struct DeliveryPolicy: Sendable, Equatable {
    public var deltaThreshold: Double

    public init(deltaThreshold: Double = 0.5) {
        precondition(deltaThreshold > 0 && deltaThreshold <= 1, "deltaThreshold must be in (0, 1], got \(deltaThreshold)")
        self.deltaThreshold = deltaThreshold
    }

    public enum Channel: String, Sendable, CaseIterable, Codable {
        case stable, beta
    }

    public struct Candidate: Sendable, Equatable {
        public var version: SemanticVersion
        public var channel: Channel
        public var fullSize: UInt64
        /// Sizes of verified deltas into this release, by source version.
        public var deltas: [SemanticVersion: UInt64]

        public init(version: SemanticVersion, channel: Channel, fullSize: UInt64, deltas: [SemanticVersion: UInt64] = [:]) {
            self.version = version
            self.channel = channel
            self.fullSize = fullSize
            self.deltas = deltas
        }
    }

    public enum Decision: Sendable, Equatable {
        case upToDate
        case delta(to: SemanticVersion, from: SemanticVersion, size: UInt64)
        case full(to: SemanticVersion, size: UInt64)
    }

    /// Whether a release on `releaseChannel` may be offered to a client on `clientChannel`.
    public static func isVisible(version: SemanticVersion, releaseChannel: Channel, to clientChannel: Channel) -> Bool {
        switch clientChannel {
        case .stable: releaseChannel == .stable && !version.isPrerelease
        case .beta: true
        }
    }

    /// The releases a new release (`version` on `channel`) gets deltas from: for each channel that
    /// sees it, the `history` newest earlier releases that channel's clients can be at. Counting over
    /// all releases alone let a run of pre-releases push every stable release out of the window, so a
    /// stable client found no delta to the next stable release; at most `2 x history` sources.
    /// Returned newest first.
    public static func deltaSources(for version: SemanticVersion, channel: Channel,
                                    among earlier: [(version: SemanticVersion, channel: Channel)], history: Int) -> [SemanticVersion] {
        let older = earlier.filter { $0.version < version }.sorted { $0.version > $1.version }
        var chosen = Set<SemanticVersion>()
        for clients in Channel.allCases where isVisible(version: version, releaseChannel: channel, to: clients) {
            for r in older.lazy.filter({ isVisible(version: $0.version, releaseChannel: $0.channel, to: clients) }).prefix(history) {
                chosen.insert(r.version)
            }
        }
        return older.map(\.version).filter { chosen.contains($0) }
    }

    public func decide(current: SemanticVersion, channel: Channel, releases: [Candidate]) -> Decision {
        let eligible = releases.filter { Self.isVisible(version: $0.version, releaseChannel: $0.channel, to: channel) && $0.version > current }
        guard let latest = eligible.max(by: { $0.version < $1.version }) else { return .upToDate }
        if latest.version.major == current.major, let size = latest.deltas[current],
           Double(size) < deltaThreshold * Double(latest.fullSize) {
            return .delta(to: latest.version, from: current, size: size)
        }
        return .full(to: latest.version, size: latest.fullSize)
    }
}
