import Foundation

/// Dashboard logins, in memory: a session cookie (12 hours) with its own CSRF token for the buttons,
/// and single-use login links (5 minutes) that an admin mints with the bearer token, so a browser
/// never needs the token itself.
final class SessionStore: @unchecked Sendable {
    struct Session: Sendable {
        var csrf: String
        var expires: Date
    }

    static let sessionLifetime: TimeInterval = 12 * 3600
    static let linkLifetime: TimeInterval = 5 * 60

    private let lock = NSLock()
    private var sessions: [String: Session] = [:]
    private var links: [String: Date] = [:]

    static func randomToken() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(format: "%016llx", g.next() as UInt64) }.joined()
    }

    func createLink(now: Date = Date()) -> String {
        let t = Self.randomToken()
        lock.lock()
        defer { lock.unlock() }
        links = links.filter { $0.value > now }
        links[t] = now.addingTimeInterval(Self.linkLifetime)
        return t
    }

    /// True once per link, before it expires.
    func consumeLink(_ token: String, now: Date = Date()) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard let expires = links.removeValue(forKey: token) else { return false }
        return expires > now
    }

    func createSession(now: Date = Date()) -> (id: String, session: Session) {
        let id = Self.randomToken()
        let s = Session(csrf: Self.randomToken(), expires: now.addingTimeInterval(Self.sessionLifetime))
        lock.lock()
        defer { lock.unlock() }
        sessions = sessions.filter { $0.value.expires > now }
        sessions[id] = s
        return (id, s)
    }

    func session(_ id: String, now: Date = Date()) -> Session? {
        lock.lock()
        defer { lock.unlock() }
        guard let s = sessions[id], s.expires > now else { return nil }
        return s
    }

    func end(_ id: String) {
        lock.lock()
        sessions[id] = nil
        lock.unlock()
    }
}
