import Foundation
import GRDB
import Hummingbird
import PatchFormat
import TreeIO
import UpdateModels

/// The HTTP API. Every failure is a JSON body `{"error": {"code": ..., "message": ...}}`.
enum Routes {
    static func add(to router: Router<BasicRequestContext>, service: UpdateService) {
        router.get("/healthz") { _, _ in
            try json(["status": "ok"])
        }
        router.get("/api/version/check") { request, _ in
            await respond {
                let q = try Query(request)
                let current = try q.version("current_version")
                let platform = try q.platform()
                let channel = try q.channel()
                let id = q["client_id"]
                if let id, id.isEmpty || id.count > 128 { throw ServerError.badRequest("client_id must be 1 to 128 characters") }
                let client = CheckClient(clientID: id, manual: q["manual"] == "true")
                return raw(try service.checkResponseJSON(current: current, platform: platform, channel: channel, client: client))
            }
        }
        router.get("/api/manifest") { request, _ in
            await respond {
                let q = try Query(request)
                return try json(service.signedManifest(platform: try q.platform(), channel: try q.channel()))
            }
        }
        router.get("/api/version/download") { request, context in
            await respond { try await download(request, context, service: service, headOnly: false) }
        }
        router.head("/api/version/download") { request, context in
            await respond { try await download(request, context, service: service, headOnly: true) }
        }
        router.post("/api/telemetry") { request, _ in
            await respond {
                var body = [UInt8]()
                for try await buffer in request.body {
                    body.append(contentsOf: buffer.readableBytesView)
                    if body.count > 16 * 1024 { throw ServerError.payloadTooLarge(limit: 16 * 1024) }
                }
                let event: TelemetryEvent
                do {
                    event = try WireJSON.decoder().decode(TelemetryEvent.self, from: Data(body))
                    try event.validate()
                } catch {
                    throw ServerError.badRequest("invalid telemetry event: \(error)")
                }
                try service.catalog.insertTelemetry(event, received: Date())
                if event.stage == .install || event.stage == .rollback {
                    // An install report can tip a release over the failure threshold: look now (or
                    // within `reportTickInterval`).
                    try service.tickAfterReport(platform: event.platform)
                }
                return try json(["status": "recorded"], status: .accepted)
            }
        }
        router.get("/api/releases") { request, _ in
            await respond {
                let platform = try Query(request).platform()
                return try json(ReleaseListing(service: service, platform: platform, only: nil))
            }
        }
        router.get("/api/releases/:platform/:version") { _, context in
            await respond {
                let platform = try pathParameter(context, "platform")
                try UpdateService.validatePlatform(platform)
                let version = try parseVersion(try pathParameter(context, "version"), field: "version")
                let listing = try ReleaseListing(service: service, platform: platform, only: version)
                guard let release = listing.releases.first else { throw ServerError.notFound("\(platform) has no version \(version)") }
                return try json(release)
            }
        }
        router.post("/api/releases") { request, context in
            await respond(unexpected: { .publishFailed("internal error: \($0)") }) {
                try authorize(request, service: service)
                let q = try Query(request)
                var changelog = ""
                if let b64 = request.headers.first(where: { $0.name.canonicalName == "x-phoenix-changelog-base64" })?.value {
                    guard let d = Data(base64Encoded: b64), let text = String(data: d, encoding: .utf8) else {
                        throw ServerError.badRequest("X-Phoenix-Changelog-Base64 is not base64 of UTF-8 text")
                    }
                    changelog = text
                }
                let publish = UpdateService.PublishRequest(
                    platform: try q.platform(), version: try q.required("version"), channel: q["channel"] ?? "stable",
                    changelog: changelog, critical: q["critical"] == "true")
                // Refused before the upload is read (up to max_upload_bytes) when the version, channel,
                // changelog or rollout are wrong or the version is published already; checked again after.
                _ = try service.validate(publish)
                let work = try service.scratch()
                defer { try? POSIX.removeTree(work) }
                let upload = work + "/upload.bundle"
                let writer = try AtomicFileWriter(destination: upload, mode: 0o600)
                var received: UInt64 = 0
                for try await buffer in request.body {
                    received += UInt64(buffer.readableBytes)
                    if received > service.configuration.maxUploadBytes {
                        writer.abort()
                        throw ServerError.payloadTooLarge(limit: service.configuration.maxUploadBytes)
                    }
                    try buffer.withUnsafeReadableBytes { try writer.write($0) }
                }
                try writer.commit()
                // Installing and hashing the bundle takes seconds on all cores: on a thread of its own,
                // not one of the pool's few threads that serve every other request.
                let record = try await offPool { try service.publish(publish, fullBundle: upload) }
                service.startJobsInBackground()
                var response = try json(record)
                response.status = .created
                return response
            }
        }
    }

    // MARK: Helpers

    /// Runs blocking work on a thread of its own and waits for it without holding a pool thread.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }

    /// The query's parameters, percent-decoded, names and values. Hummingbird's `queryParameters`
    /// kept a value that fails to decode as it came (`channel=beta%ZZ` reached the checks raw, and a
    /// free-text value such as a pause reason was stored raw): here it is a 400 naming the parameter.
    /// The first of a repeated name counts, and `+` is a plus (as in Hummingbird and the path).
    struct Query {
        private let values: [String: String]

        init(_ request: Request) throws {
            var values: [String: String] = [:]
            for part in (request.uri.query ?? "").split(separator: "&") {
                let equals = part.firstIndex(of: "=")
                let rawName = equals.map { part[..<$0] } ?? part
                let rawValue = equals.map { part[part.index(after: $0)...] } ?? ""
                guard let name = String(rawName).removingPercentEncoding, let value = String(rawValue).removingPercentEncoding else {
                    throw ServerError.badRequest("query parameter \"\(rawName.prefix(32))\": invalid percent-encoding in \"\(part.prefix(64))\"")
                }
                if values[name] == nil { values[name] = value }
            }
            self.values = values
        }

        subscript(_ key: String) -> String? { values[key] }

        func required(_ key: String) throws -> String {
            guard let v = self[key], !v.isEmpty else { throw ServerError.badRequest("missing query parameter \(key)") }
            return v
        }

        func version(_ key: String) throws -> SemanticVersion { try parseVersion(try required(key), field: key) }

        func platform() throws -> String {
            let p = try required("platform")
            try UpdateService.validatePlatform(p)
            return p
        }

        func channel() throws -> DeliveryPolicy.Channel {
            guard let raw = self["channel"] else { return .stable }
            guard let c = DeliveryPolicy.Channel(rawValue: raw) else {
                throw ServerError.badRequest("invalid channel \"\(raw.prefix(32))\": stable or beta")
            }
            return c
        }
    }

    /// A path parameter, percent-decoded. Hummingbird matches routes on the raw path and leaves the
    /// parameters encoded (query values it decodes itself), and clients that encode path segments
    /// (encodeURIComponent, Python's requests) send `1.1.0+b1` as `1.1.0%2Bb1`. As in a query, `+` is
    /// a plus, not a space.
    static func pathParameter(_ context: BasicRequestContext, _ name: String) throws -> String {
        let raw = context.parameters.get(name) ?? ""
        guard let decoded = raw.removingPercentEncoding else {
            throw ServerError.badRequest("\(name): invalid percent-encoding in \"\(raw.prefix(64))\"")
        }
        return decoded
    }

    static func parseVersion(_ text: String, field: String) throws -> SemanticVersion {
        do { return try SemanticVersion(parsing: text) } catch let e as SemanticVersion.ParseError {
            throw ServerError.badRequest("\(field): \(e.description)")
        }
    }

    static func authorize(_ request: Request, service: UpdateService) throws {
        guard let expected = service.configuration.adminToken, !expected.isEmpty else {
            throw ServerError.forbidden
        }
        // The scheme's name is case-insensitive (RFC 9110 11.1): "bearer" and "BEARER" are "Bearer".
        guard let header = request.headers[.authorization], header.prefix(7).lowercased() == "bearer " else {
            throw ServerError.unauthorized
        }
        guard tokenMatches(String(header.dropFirst(7)), expected) else { throw ServerError.forbidden }
    }

    /// Constant-time comparison of secrets.
    static func tokenMatches(_ given: String, _ expected: String) -> Bool {
        let given = Array(given.utf8), want = Array(expected.utf8)
        var diff = UInt8(given.count == want.count && !want.isEmpty ? 0 : 1)
        for i in 0..<max(given.count, want.count) {
            diff |= (i < given.count ? given[i] : 0) ^ (i < want.count ? want[i] : 0)
        }
        return diff == 0
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try WireJSON.encoder().encode(value)
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func raw(_ jsonBytes: [UInt8]) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: jsonBytes)))
    }

    static func errorResponse(_ e: ServerError) -> Response {
        var r = errorResponse(status: HTTPResponse.Status(code: e.status), code: e.code, message: e.description)
        if case .unavailable(_, let seconds) = e { r.headers[.retryAfter] = "\(seconds)" }
        return r
    }

    static func errorResponse(status: HTTPResponse.Status, code: String, message: String) -> Response {
        (try? json(ErrorBody(code: code, message: message), status: status)) ?? Response(status: status)
    }

    /// The code of an error known by its status alone (no route, a method a path does not serve, an
    /// `HTTPError` from Hummingbird), in the words `ServerError` uses.
    static func errorCode(for status: HTTPResponse.Status) -> String {
        switch status.code {
        case 400: "bad_request"
        case 401: "unauthorized"
        case 403: "forbidden"
        case 404: "not_found"
        case 405: "method_not_allowed"
        case 413: "payload_too_large"
        case 503: "unavailable"
        case 500...: "internal_error"
        default: status.reasonPhrase.lowercased().replacingOccurrences(of: " ", with: "_")
        }
    }

    /// Runs a handler and turns any error into the JSON error body: 503 with Retry-After while the
    /// catalog is locked by another process, 500 `internal_error` for the unexpected.
    static func respond(_ body: () async throws -> Response) async -> Response {
        await respond(unexpected: { .internalError("internal error: \($0)") }, body)
    }

    /// The same, with `unexpected` saying what an error that is neither a `ServerError` nor a locked
    /// catalog is: publishing calls it `publish_failed`, which nothing else should.
    static func respond(unexpected: (any Error) -> ServerError, _ body: () async throws -> Response) async -> Response {
        do {
            return try await body()
        } catch let e as ServerError {
            return errorResponse(e)
        } catch let e as DatabaseError where e.resultCode == .SQLITE_BUSY || e.resultCode == .SQLITE_LOCKED {
            return errorResponse(.unavailable("the catalog is locked by another process (\(e.resultCode)); try again shortly", retryAfter: 5))
        } catch {
            return errorResponse(unexpected(error))
        }
    }

    // MARK: Download with Range

    static func download(_ request: Request, _ context: BasicRequestContext, service: UpdateService, headOnly: Bool) async throws -> Response {
        let q = try Query(request)
        let platform = try q.platform()
        let version = try q.version("version")
        let from = try q["from"].map { try parseVersion($0, field: "from") }
        let pkg = try service.package(platform: platform, version: version, from: from)
        var headers = HTTPFields()
        headers[.contentType] = "application/octet-stream"
        headers[.acceptRanges] = "bytes"
        headers[.eTag] = "\"\(pkg.sha256)\""
        headers[.cacheControl] = "public, max-age=31536000, immutable"
        var range: ClosedRange<Int>? = nil
        // Range is defined for GET only (RFC 9110 14.2): a HEAD describes the whole package.
        if !headOnly, let header = request.headers[.range] {
            // If-Range with a different ETag means "send the whole thing".
            let ifRange = request.headers[.ifRange]
            if ifRange == nil || ifRange == "\"\(pkg.sha256)\"" {
                switch parseRange(header, size: pkg.size) {
                case .whole: break
                case .range(let r): range = r
                case .unsatisfiable:
                    headers[.contentRange] = "bytes */\(pkg.size)"
                    return Response(status: .rangeNotSatisfiable, headers: headers)
                }
            }
        }
        if let range {
            headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound)/\(pkg.size)"
            headers[.contentLength] = "\(range.count)"
            let body = headOnly ? ResponseBody() : try await FileIO().loadFile(path: pkg.path, range: range, context: context)
            return Response(status: .partialContent, headers: headers, body: body)
        }
        headers[.contentLength] = "\(pkg.size)"
        let body = headOnly || pkg.size == 0 ? ResponseBody() : try await FileIO().loadFile(path: pkg.path, context: context)
        return Response(status: .ok, headers: headers, body: body)
    }

    enum RangeResult: Equatable {
        case whole
        case range(ClosedRange<Int>)
        case unsatisfiable
    }

    /// One `bytes=` range (`N-M`, `N-`, `-N`); multiple ranges are answered with the whole body. As RFC
    /// 9110 (14.2) says, a header that is not one of these (`bytes=abc`, `bytes=-5-`, `bytes=5-3`) is
    /// ignored: the whole body, 200. Only a well-formed range that selects nothing is unsatisfiable
    /// (416): a start at or past the end, however many digits it has, or `-0`.
    static func parseRange(_ header: String, size: UInt64) -> RangeResult {
        guard header.prefix(6).lowercased() == "bytes=", !header.contains(",") else { return .whole }
        let spec = header.dropFirst(6).trimmingCharacters(in: .whitespaces)
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .whole }
        let size = Int(clamping: size)
        if parts[0].isEmpty {
            guard let n = position(parts[1]) else { return .whole }
            guard n > 0, size > 0 else { return .unsatisfiable }
            return .range(max(0, size - n)...(size - 1))
        }
        guard let start = position(parts[0]) else { return .whole }
        var end = Int.max
        if !parts[1].isEmpty {
            guard let e = position(parts[1]), e >= start else { return .whole }
            end = e
        }
        guard start < size else { return .unsatisfiable }
        return .range(start...min(end, size - 1))
    }

    /// A range position: ASCII digits only (`Int` would take "+5" and "-5"), saturating at `Int.max`,
    /// since a position too large for an `Int` is past the end of any file, not malformed.
    static func position(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        return Int(text) ?? Int.max
    }
}

/// `GET /api/releases`: releases with the state of their delta jobs.
struct ReleaseListing: Encodable {
    struct Release: Encodable {
        var platform: String
        var version: String
        var channel: String
        var published: Date
        var fullSize: UInt64
        var fullSHA256: String
        var treeDigest: String
        var changelog: String
        var deltas: [DeltaRecord]

        enum CodingKeys: String, CodingKey {
            case platform, version, channel, published, changelog, deltas
            case fullSize = "full_size", fullSHA256 = "full_sha256", treeDigest = "tree_digest"
        }
    }

    var releases: [Release]

    init(service: UpdateService, platform: String, only: SemanticVersion?) throws {
        let rs = try service.catalog.releases(platform: platform)
        guard !rs.isEmpty else { throw ServerError.notFound("unknown platform \"\(platform)\"") }
        let ds = try service.catalog.deltas(platform: platform)
        releases = rs.filter { r in only.map { r.sortVersion == $0 } ?? true }
            .sorted { $0.sortVersion < $1.sortVersion }
            .map { r in
                Release(platform: r.platform, version: r.version, channel: r.channel, published: r.published, fullSize: r.fullSize,
                        fullSHA256: r.fullSHA256, treeDigest: r.treeDigest, changelog: r.changelog,
                        deltas: ds.filter { $0.toVersion == r.version })
            }
    }
}

