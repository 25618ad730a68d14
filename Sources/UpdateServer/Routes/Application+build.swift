import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdHTTP2
import Logging
import NIOCore
import UpdateModels

/// Builds the server: one function used by `phoenix-server serve` and by the tests. It speaks HTTPS
/// when the configuration names a certificate and key.
public func buildApplication(configuration: ServerConfiguration, logger: Logger? = nil) async throws -> some ApplicationProtocol {
    var log = logger ?? Logger(label: "phoenix-server")
    if logger == nil { log.logLevel = .info }
    let service = try UpdateService(configuration: configuration, logger: log)
    let tls = try configuration.tlsCertificatePath.map { try CertificateReloader(certificatePath: $0, keyPath: configuration.tlsKeyPath ?? "") }
    return try buildApplication(service: service, tls: tls, logger: log)
}

/// The same, around an existing service (tests keep a handle on it to wait for background jobs), over
/// plain HTTP.
public func buildApplication(service: UpdateService, logger: Logger? = nil) -> some ApplicationProtocol {
    let idle = TimeAmount.seconds(Int64(service.configuration.idleTimeoutSeconds))
    return makeApplication(service: service, server: .http1(configuration: .init(idleTimeout: idle)), logger: logger)
}

/// The same over HTTPS when `tls` is given (TLS 1.2+, HTTP/2 or HTTP/1.1 by ALPN), with the reloader's
/// current certificate for every new connection.
public func buildApplication(service: UpdateService, tls: CertificateReloader?, logger: Logger? = nil) throws -> some ApplicationProtocol {
    let seconds = Int64(service.configuration.idleTimeoutSeconds)
    let http1 = HTTP1Channel.Configuration(idleTimeout: .seconds(seconds))
    let server: HTTPServerBuilder = try tls.map {
        try .http2Upgrade(tlsConfiguration: $0.serverConfiguration(),
                          configuration: .init(idleTimeout: .seconds(seconds), streamConfiguration: http1))
    } ?? .http1(configuration: http1)
    return makeApplication(service: service, server: server, logger: logger)
}

func makeApplication(service: UpdateService, server: HTTPServerBuilder, logger: Logger?) -> some ApplicationProtocol {
    let log = logger ?? Logger(label: "phoenix-server")
    // HEAD wherever GET is served (RFC 9110 9.3.2): the GET handler's response without its body (the
    // download route answers HEAD itself, without reading the file).
    let router = Router(context: BasicRequestContext.self, options: .autoGenerateHeadEndpoints)
    router.add(middleware: LogRequestsMiddleware(.debug))
    // Before the routes: middleware wraps only the routes added after it (and the not-found responder).
    router.add(middleware: JSONErrorMiddleware())
    Routes.add(to: router, service: service)
    AdminRoutes.add(to: router, service: service)
    // Last: it answers the methods every route above leaves out.
    Routes.addMethodNotAllowed(to: router)
    let c = service.configuration
    // Jobs left unfinished by a previous run (or queued by `publish --background`) resume now.
    service.startJobsInBackground()
    // Scheduled rollout advances and the auto-pause.
    service.startRolloutTicker()
    return Application(router: router, server: server,
                       configuration: .init(address: .hostname(c.host, port: c.port), serverName: "phoenix-server"),
                       logger: log)
}
