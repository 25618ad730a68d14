/// Server-side failures, each with the HTTP status and code it maps to.
public enum ServerError: Error, Equatable, Sendable, CustomStringConvertible {
    case badRequest(String)
    case notFound(String)
    case conflict(String)
    case unauthorized
    case forbidden
    case payloadTooLarge(limit: UInt64)
    case badConfiguration(String)
    case publishFailed(String)
    /// Anything unexpected outside publishing (a failing disk, a damaged catalog).
    case internalError(String)
    case noSigningKey
    /// Temporarily unable to answer (the catalog is locked by another process): retry later.
    case unavailable(String, retryAfter: Int)

    public var status: Int {
        switch self {
        case .badRequest: 400
        case .notFound: 404
        case .conflict: 409
        case .unauthorized: 401
        case .forbidden: 403
        case .payloadTooLarge: 413
        case .badConfiguration, .publishFailed, .internalError, .noSigningKey: 500
        case .unavailable: 503
        }
    }

    public var code: String {
        switch self {
        case .badRequest: "bad_request"
        case .notFound: "not_found"
        case .conflict: "conflict"
        case .unauthorized: "unauthorized"
        case .forbidden: "forbidden"
        case .payloadTooLarge: "payload_too_large"
        case .badConfiguration: "bad_configuration"
        case .publishFailed: "publish_failed"
        case .internalError: "internal_error"
        case .noSigningKey: "no_signing_key"
        case .unavailable: "unavailable"
        }
    }

    public var description: String {
        switch self {
        case .badRequest(let m), .notFound(let m), .conflict(let m), .badConfiguration(let m), .publishFailed(let m),
             .internalError(let m), .unavailable(let m, _): m
        case .unauthorized: "an admin token is required (Authorization: Bearer ...)"
        case .forbidden: "the admin token is not valid"
        case .payloadTooLarge(let limit): "the request body is larger than \(limit) bytes"
        case .noSigningKey: "the server has no signing key configured (keygen, then --key)"
        }
    }
}
