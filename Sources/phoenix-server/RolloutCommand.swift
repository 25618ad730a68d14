import ArgumentParser
import Foundation
import UpdateModels
import UpdateServer

struct RolloutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout",
        abstract: "Show or change the phased rollout of a release: advance, pause, resume, set PERCENT, or show.",
        discussion: "A running server on the same data directory sees the change within a second.")
    @OptionGroup var options: DataOptions
    @Option(help: "Platform name.") var platform: String
    @Option(help: "Why (with pause).") var reason: String?
    @Flag(help: "Print JSON.") var json = false
    @Argument(help: "The release's version.") var version: String
    @Argument(help: "advance, pause, resume, set or show.") var action: String = "show"
    @Argument(help: "With set: the percentage, an integer in 0...100.") var percent: String?

    func run() throws {
        let c = try options.resolve()
        let service = try UpdateService(configuration: c)
        do {
            if action != "show" {
                let a = try RolloutAction(name: action, percent: percent, reason: reason)
                try service.changeRollout(platform: platform, version: version, a)
            }
            let v = try SemanticVersion(parsing: version)
            guard let s = try service.rolloutStatus(platform: platform).first(where: { (try? SemanticVersion(parsing: $0.version)) == v }) else {
                throw ServerError.notFound("\(platform) has no release \(version)")
            }
            if json {
                print(String(decoding: try WireJSON.encoder(pretty: true).encode(s), as: UTF8.self))
            } else {
                let r = s.rollout
                var line = "\(platform) \(s.version): \(r.percent)% \(r.state.rawValue), stages \(r.stages.map { "\($0)%" }.joined(separator: " -> "))"
                if let next = s.nextAdvance { line += ", next advance \(next)" }
                if let why = r.pausedReason { line += " (\(why))" }
                print(line)
                print("installs \(s.health.attempts), failures \(s.health.failureCount) (\(String(format: "%.1f%%", s.health.failureRate * 100)))")
            }
        } catch let e as ServerError {
            throw ValidationError(e.description)
        } catch let e as SemanticVersion.ParseError {
            throw ValidationError(e.description)
        }
    }
}
