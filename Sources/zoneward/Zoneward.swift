import ArgumentParser
import Foundation

/// The `zoneward` command: zone-aware load balancing and disaster recovery.
@main
struct Zoneward: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "zoneward",
        abstract: "Zone-aware load balancer and disaster-recovery controller.",
        discussion: """
            Keeps traffic inside its availability zone without overloading any zone, drains zones, and \
            plans routing exactly. Declared state lives in a YAML config; observed state in SQLite.

            Examples:
              zoneward plan --topology config/topology.yaml
              zoneward config check config/zoneward.yaml
              zoneward zone drain us-east-1a --for 30m --reason "AZ impairment" --config config/zoneward.yaml

            Exit codes: 0 success, 1 runtime failure, 2 bad input or usage, 3 a safety guard refused.
            """,
        version: version,
        subcommands: [
            Run.self, Proxy.self, Controller.self, Failover.self, Backup.self, Plan.self, Cost.self, Config.self,
            Zone.self, Drill.self,
        ]
    )

    /// Runs the command line, mapping usage errors to exit code 2.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                // Usage errors: print ArgumentParser's message and help hint, but exit 2 like every bad input.
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(ExitCode.badInput.rawValue)
            }
            exit(withError: error)
        }
    }
}

extension ExitCode {
    /// Bad input: an unreadable or invalid file, a bad argument.
    static let badInput = ExitCode(2)
    /// A safety guard refused the change; `--force` overrides where documented.
    static let guardRefused = ExitCode(3)
}

/// Writes a line to standard error.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// `--format table|json`, shared by commands that print results.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

/// `--db PATH`, shared by every command that touches the state database.
struct DatabaseOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp("SQLite state database; env ZONEWARD_DB overrides the default.", valueName: "path")
    )
    var db: String = ProcessInfo.processInfo.environment["ZONEWARD_DB"] ?? "./zoneward.db"
}
