import Foundation
import Hummingbird
import Logging
import UpdateModels

/// Builds the server: one function used by `phoenix-server serve` and by the tests.
public func buildApplication(configuration: ServerConfiguration, logger: Logger? = nil) async throws -> some ApplicationProtocol {
    var log = logger ?? Logger(label: "phoenix-server")
    if logger == nil { log.logLevel = .info }
    let service = try UpdateService(configuration: configuration, logger: log)
    return buildApplication(service: service, logger: log)
}

/// The same, around an existing service (tests keep a handle on it to wait for background jobs).
public func buildApplication(service: UpdateService, logger: Logger? = nil) -> some ApplicationProtocol {
    let log = logger ?? Logger(label: "phoenix-server")
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: LogRequestsMiddleware(.debug))
    Routes.add(to: router, service: service)
    AdminRoutes.add(to: router, service: service)
    let c = service.configuration
    // Jobs left unfinished by a previous run (or queued by `publish --background`) resume now.
    service.startJobsInBackground()
    // Scheduled rollout advances and the auto-pause.
    service.startRolloutTicker()
    return Application(router: router,
                       configuration: .init(address: .hostname(c.host, port: c.port), serverName: "phoenix-server"),
                       logger: log)
}
