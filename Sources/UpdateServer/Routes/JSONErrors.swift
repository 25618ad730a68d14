import Foundation
import Hummingbird

/// What the route handlers do not answer themselves, answered with the JSON error body the API
/// promises (`{"error": {"code": ..., "message": ...}}`) instead of Hummingbird's empty one: a path no
/// route matches (the router's not-found responder throws a bare `HTTPError(.notFound)`), a method a
/// path does not serve (405, `Routes.addMethodNotAllowed`) and any error a handler lets through.
/// Added to the router before the routes, so that it wraps them and the not-found responder.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response: Response
        do {
            return try await next(request, context)
        } catch let error as HTTPError {
            let message = error.body ?? (error.status == .notFound
                ? "no route for \(request.method.rawValue) \(request.uri.path.prefix(256))" : error.status.reasonPhrase)
            var r = Routes.errorResponse(status: error.status, code: Routes.errorCode(for: error.status), message: message)
            r.headers.append(contentsOf: error.headers)
            response = r
        } catch let error as any HTTPResponseError {
            response = Routes.errorResponse(status: error.status, code: Routes.errorCode(for: error.status), message: error.status.reasonPhrase)
        } catch {
            response = Routes.errorResponse(.internalError("internal error: \(error)"))
        }
        return request.method == .head ? response.createHeadResponse() : response
    }
}

extension Routes {
    /// Methods that get a 405 on a path that exists but does not serve them. HEAD is served wherever
    /// GET is (`RouterOptions.autoGenerateHeadEndpoints`, from the GET route, or this 405's GET on a
    /// path that serves only POST: then a 405 too).
    static let refusedMethods: [HTTPRequest.Method] = [.get, .post, .put, .delete, .patch]

    /// Answers a known path with a method it does not serve with 405 and `Allow` (RFC 9110 15.5.6),
    /// not the 404 of a path that does not exist. Call after every route is added.
    static func addMethodNotAllowed(to router: Router<BasicRequestContext>) {
        var paths: [String: RouterPath] = [:]
        var methods: [String: Set<HTTPRequest.Method>] = [:]
        for route in router.routes {
            paths[route.path.description] = route.path
            methods[route.path.description, default: []].insert(route.method)
        }
        for (key, path) in paths {
            var served = methods[key] ?? []
            if served.contains(.get) { served.insert(.head) }
            let allow = served.map(\.rawValue).sorted().joined(separator: ", ")
            for method in refusedMethods where !served.contains(method) {
                router.on(path, method: method) { (request: Request, _: BasicRequestContext) async throws -> Response in
                    throw HTTPError(.methodNotAllowed, headers: [.allow: allow],
                                    message: "\(request.method.rawValue) is not allowed here; allowed: \(allow)")
                }
            }
        }
    }
}
