import ArgumentParser
import ZonewardModel

extension Zoneward {
    /// `zoneward config …`: work with configuration files.
    struct Config: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate configuration files.",
            subcommands: [Check.self]
        )
    }
}

extension Zoneward.Config {
    /// `zoneward config check FILE`.
    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a configuration file and list every problem in it.",
            discussion: """
                Prints one line per problem, each with the path of the field and what would be valid, e.g.
                  services[0].endpoints[2].zone: unknown zone "us-east-1d" (known: us-east-1a, us-east-1b)

                Example:
                  zoneward config check config/zoneward.yaml

                Exit codes: 0 valid, 2 invalid or unreadable.
                """
        )

        @Argument(help: ArgumentHelp("The configuration file.", valueName: "file"))
        var file: String

        func run() throws {
            do {
                let configuration = try ZonewardConfiguration.load(file: file)
                let endpoints = configuration.services.reduce(0) { $0 + $1.endpoints.count }
                print(
                    "\(file): valid — \(configuration.zones.count) zones in \(configuration.regions.count) regions, "
                        + "\(configuration.services.count) services, \(endpoints) endpoints"
                )
            } catch {
                printError(error.description)
                throw ExitCode.badInput
            }
        }
    }
}
