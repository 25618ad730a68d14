/// Why the client did not install. Every verification failure is an error: nothing unverified is used.
public enum ClientError: Error, Equatable, Sendable, CustomStringConvertible {
    case notConfigured(String)
    case badSetting(String, String)
    /// The settings or state file cannot be read or does not decode: the path and what is wrong.
    case badFile(path: String, detail: String)
    case insecureURL(String)
    case network(String)
    /// The server's TLS certificate was refused (expired, wrong host, unknown issuer, pin): never
    /// retried over plain HTTP.
    case tls(category: String, detail: String)
    case server(status: Int, message: String)
    /// The manifest's signature, freshness, version or scope does not check out.
    case verification(category: String, detail: String)
    /// The download is not the signed size or hash.
    case checksum(String)
    case install(category: String, detail: String)
    /// Another run holds the client's lock past the wait: nothing was done, try again later.
    case busy(String)
    case nothingToDo(String)

    /// The telemetry category of the failure.
    public var category: String {
        switch self {
        case .notConfigured, .badSetting, .badFile: "config"
        case .insecureURL: "insecure"
        case .network: "network"
        case .tls(let c, _): c
        case .server: "server"
        case .verification(let c, _): c
        case .checksum: "checksum"
        case .install(let c, _): c
        case .busy: "busy"
        case .nothingToDo: "none"
        }
    }

    public var description: String {
        switch self {
        case .notConfigured(let what): "not configured: \(what) (phoenix-update settings set ...)"
        case .badSetting(let key, let why): "invalid setting \(key): \(why)"
        case .badFile(let path, let detail): "\(path): \(detail)"
        case .insecureURL(let url): "refusing plain HTTP to \(url): use https, or --allow-insecure (loopback is allowed)"
        case .network(let why): "network error: \(why)"
        case .tls(_, let detail): "TLS certificate refused: \(detail); nothing was downloaded"
        case .server(let status, let message): "server error \(status): \(message)"
        case .verification(let category, let detail): "verification failed (\(category)): \(detail); nothing was installed"
        case .checksum(let detail): "checksum mismatch: \(detail); nothing was installed"
        case .install(let category, let detail): "install failed (\(category)): \(detail)"
        case .busy(let why): "\(why); nothing was done, try again later"
        case .nothingToDo(let why): why
        }
    }
}
