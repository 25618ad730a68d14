import Foundation
import Hummingbird
import UpdateModels

/// Rollout administration (bearer token) and the dashboard (bearer token or a login session).
enum AdminRoutes {
    static let cookieName = "phoenix_session"

    static func add(to router: Router<BasicRequestContext>, service: UpdateService) {
        router.get("/api/admin/rollouts") { request, _ in
            await Routes.respond {
                try Routes.authorize(request, service: service)
                return try Routes.json(service.rolloutStatus(platform: try Routes.Query(request).platform()))
            }
        }
        // POST /api/admin/rollouts/P/V/advance | pause[?reason=] | resume | set?percent=N
        router.post("/api/admin/rollouts/:platform/:version/:action") { request, context in
            await Routes.respond {
                try Routes.authorize(request, service: service)
                let q = try Routes.Query(request)
                let action = try RolloutAction(name: try Routes.pathParameter(context, "action"), percent: q["percent"], reason: q["reason"])
                let platform = try Routes.pathParameter(context, "platform")
                let version = try Routes.parseVersion(try Routes.pathParameter(context, "version"), field: "version")
                try service.changeRollout(platform: platform, version: version.description, action)
                // By precedence, as the change found it: a release stored as 1.0.0+b5 is 1.0.0.
                guard let status = try service.rolloutStatus(platform: platform).first(where: { (try? SemanticVersion(parsing: $0.version)) == version }) else {
                    throw ServerError.notFound("\(platform) has no release \(version)")
                }
                return try Routes.json(status)
            }
        }
        router.post("/api/admin/login-link") { request, _ in
            await Routes.respond {
                try Routes.authorize(request, service: service)
                return try Routes.json(["url": "/dashboard/login?once=" + service.sessions.createLink(),
                                        "expires_in_seconds": "\(Int(SessionStore.linkLifetime))"])
            }
        }

        router.get("/dashboard") { request, _ in
            let session = sessionID(request).flatMap { id in service.sessions.session(id).map { (id, $0) } }
            guard session != nil || (try? Routes.authorize(request, service: service)) != nil else {
                return redirect("/dashboard/login")
            }
            do {
                let page = DashboardPage.render(try service.dashboardData(), csrf: session?.1.csrf)
                return html(page)
            } catch {
                return html("<!DOCTYPE html><p>The dashboard cannot be built: \(DashboardPage.escape("\(error)"))</p>", status: .internalServerError)
            }
        }
        router.get("/dashboard/login") { request, _ in
            if let once = (try? Routes.Query(request))?["once"] {
                guard service.sessions.consumeLink(once) else {
                    return html(DashboardPage.loginPage(message: "That login link has expired or was already used."), status: .forbidden)
                }
                return startSession(service: service)
            }
            return html(DashboardPage.loginPage(message: nil))
        }
        // HEAD of a login link must not spend it (nor start a session): mail scanners and link previews
        // send one before the admin clicks. The GET route's HEAD would run it; this answers as the page.
        router.head("/dashboard/login") { _, _ in
            html(DashboardPage.loginPage(message: nil)).createHeadResponse()
        }
        router.post("/dashboard/login") { request, _ in
            let form = await readForm(request)
            guard service.configuration.adminToken?.isEmpty == false else {
                return html(DashboardPage.loginPage(message: "The admin routes are disabled (no admin token configured)."), status: .forbidden)
            }
            guard let token = form?["token"], Routes.tokenMatches(token, service.configuration.adminToken ?? "") else {
                return html(DashboardPage.loginPage(message: "That token is not valid."), status: .forbidden)
            }
            return startSession(service: service)
        }
        router.post("/dashboard/logout") { request, _ in
            if let id = sessionID(request) { service.sessions.end(id) }
            var r = redirect("/dashboard/login")
            r.headers[.setCookie] = "\(cookieName)=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
            return r
        }
        router.post("/dashboard/rollout") { request, _ in
            guard let id = sessionID(request), let session = service.sessions.session(id) else { return redirect("/dashboard/login") }
            guard let form = await readForm(request), let csrf = form["csrf"], Routes.tokenMatches(csrf, session.csrf) else {
                return html("<!DOCTYPE html><p>The form is stale or was not sent by the dashboard; reload it.</p>", status: .forbidden)
            }
            do {
                let action = try RolloutAction(name: form["action"] ?? "", percent: form["percent"], reason: "paused from the dashboard")
                try service.changeRollout(platform: form["platform"] ?? "", version: form["version"] ?? "", action)
            } catch {
                let message = (error as? ServerError)?.description ?? "\(error)"
                return html("<!DOCTYPE html><p>\(DashboardPage.escape(message))</p><p><a href=\"/dashboard\">Back</a></p>", status: .badRequest)
            }
            return redirect("/dashboard")
        }
    }

    static func startSession(service: UpdateService) -> Response {
        let (id, _) = service.sessions.createSession()
        var r = redirect("/dashboard")
        // Over HTTPS the cookie is also Secure (never sent over plain HTTP).
        let secure = service.configuration.servesTLS ? "; Secure" : ""
        r.headers[.setCookie] = "\(cookieName)=\(id); Path=/; Max-Age=\(Int(SessionStore.sessionLifetime)); HttpOnly; SameSite=Strict\(secure)"
        return r
    }

    static func sessionID(_ request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for part in header.split(separator: ";") {
                let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                if kv.count == 2, kv[0] == cookieName { return String(kv[1]) }
            }
        }
        return nil
    }

    /// An `application/x-www-form-urlencoded` body of at most 4 KiB, or nil.
    static func readForm(_ request: Request) async -> [String: String]? {
        var body = [UInt8]()
        do {
            for try await buffer in request.body {
                body.append(contentsOf: buffer.readableBytesView)
                if body.count > 4096 { return nil }
            }
        } catch { return nil }
        var out: [String: String] = [:]
        for pair in String(decoding: body, as: UTF8.self).split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String? { s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding }
            guard let k = decode(kv[0]), let v = kv.count > 1 ? decode(kv[1]) : "" else { return nil }
            out[k] = v
        }
        return out
    }

    static func html(_ page: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        // Nothing external, no script: the page works with the strictest policy.
        headers[.contentSecurityPolicy] = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'"
        headers[.xContentTypeOptions] = "nosniff"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: page)))
    }

    static func redirect(_ location: String) -> Response {
        var headers = HTTPFields()
        headers[.location] = location
        headers[.cacheControl] = "no-store"
        return Response(status: .seeOther, headers: headers)
    }
}
