import Foundation

/// An A/B experiment over client behaviour: each client gets one variant, by a stable hash of its id
/// and the experiment's name, in proportion to the variants' weights.
public struct Experiment: Codable, Sendable, Equatable {
    public struct Variant: Codable, Sendable, Equatable {
        public var name: String
        public var weight: Int
        /// How often a client in this variant checks (overrides its daily/weekly frequency).
        public var checkIntervalSeconds: Int?
        /// How the app presents an available update: for example `banner`, `dialog` or `silent`.
        public var notificationStyle: String?

        public init(name: String, weight: Int = 1, checkIntervalSeconds: Int? = nil, notificationStyle: String? = nil) {
            self.name = name
            self.weight = weight
            self.checkIntervalSeconds = checkIntervalSeconds
            self.notificationStyle = notificationStyle
        }

        enum CodingKeys: String, CodingKey {
            case name, weight
            case checkIntervalSeconds = "check_interval_seconds", notificationStyle = "notification_style"
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            weight = try c.decodeIfPresent(Int.self, forKey: .weight) ?? 1
            checkIntervalSeconds = try c.decodeIfPresent(Int.self, forKey: .checkIntervalSeconds)
            notificationStyle = try c.decodeIfPresent(String.self, forKey: .notificationStyle)
        }
    }

    public var name: String
    public var variants: [Variant]

    public init(name: String, variants: [Variant]) {
        self.name = name
        self.variants = variants
    }

    /// The check intervals a variant may set (a minute to 30 days); the client holds an assigned
    /// interval to them too (it comes unsigned, in the check response).
    public static let checkIntervals = 60...30 * 24 * 3600

    public func validate() throws {
        func bad(_ m: String) -> Error { DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "experiment: " + m)) }
        let token: (String) -> Bool = { s in
            !s.isEmpty && s.count <= 32 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
        }
        guard token(name) else { throw bad("name must be 1-32 characters of [A-Za-z0-9-_.]") }
        guard !variants.isEmpty, variants.count <= 16 else { throw bad("needs 1 to 16 variants") }
        guard Set(variants.map(\.name)).count == variants.count else { throw bad("variant names must be distinct") }
        for v in variants {
            guard token(v.name) else { throw bad("variant name \"\(v.name.prefix(40))\" must be 1-32 characters of [A-Za-z0-9-_.]") }
            guard (1...1000).contains(v.weight) else { throw bad("variant \(v.name): weight must be 1...1000") }
            if let i = v.checkIntervalSeconds, !Self.checkIntervals.contains(i) {
                throw bad("variant \(v.name): check_interval_seconds must be 60...2592000")
            }
            if let s = v.notificationStyle, !token(s) { throw bad("variant \(v.name): notification_style must be a short token") }
        }
    }

    /// The variant of a client: 64 bits of hash modulo the total weight (a bucket of 0..<10000 taken
    /// modulo the total favoured the first variants, and never reached those past 10000).
    public func assign(clientID: String) -> Variant {
        let total = variants.reduce(0) { $0 + $1.weight }
        var point = Int(RolloutBucket.hash64(Array("experiment\u{0}\(name)\u{0}\(clientID)".utf8)) % UInt64(max(total, 1)))
        for v in variants {
            if point < v.weight { return v }
            point -= v.weight
        }
        return variants[variants.count - 1]
    }
}

/// The variant a check response assigns (`variant` in the JSON).
public struct AssignedVariant: Codable, Sendable, Equatable {
    public var experiment: String
    public var name: String
    public var checkIntervalSeconds: Int?
    public var notificationStyle: String?

    public init(experiment: String, variant: Experiment.Variant) {
        self.experiment = experiment
        self.name = variant.name
        self.checkIntervalSeconds = variant.checkIntervalSeconds
        self.notificationStyle = variant.notificationStyle
    }

    enum CodingKeys: String, CodingKey {
        case experiment, name
        case checkIntervalSeconds = "check_interval_seconds", notificationStyle = "notification_style"
    }
}
