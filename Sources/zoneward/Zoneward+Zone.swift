import ArgumentParser
import Foundation
import ZonePlanner
import ZonewardAPI
import ZonewardModel
import ZonewardState

extension Zoneward {
    /// `zoneward zone …`: zonal shift.
    struct Zone: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drain, undrain and list availability zones.",
            discussion: """
                A drained zone gets no traffic from any service until the drain expires or is undone; its \
                demand is still served, by the next-cheapest zones. Every change is written to the event log.
                """,
            subcommands: [Drain.self, Undrain.self, List.self]
        )
    }
}

/// Who is acting, for the event log.
struct ActorOptions: ParsableArguments {
    @Option(help: "Who is acting, for the event log; $USER when not given.")
    var actor: String = ProcessInfo.processInfo.environment["USER"] ?? "operator"
}

extension Zoneward.Zone {
    /// `zoneward zone drain ZONE --for 30m --reason TEXT`.
    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send a zone's traffic elsewhere for a while.",
            discussion: """
                With --config, prints each service's cross-zone share before and after, and refuses a drain \
                that would leave a service with no capacity in a region it serves from (exit 3), unless --force.
                Draining a zone that is already drained replaces its expiry and reason.

                With --controller URL --token-file FILE, the controller drains it (in its state database, which \
                the proxies following it see); give its replicas' URLs separated by commas when it runs with \
                HA. The capacity guard (with --config) then judges by the controller's drains and active regions.

                Examples:
                  zoneward zone drain us-east-1a --for 30m --reason "AZ impairment" --config config/zoneward.yaml
                  zoneward zone drain us-east-1a --for 30m --reason "AZ impairment" --config config/zoneward.yaml \
                      --controller http://c1:9900,http://c2:9900 --token-file operator.token

                Exit codes: 0 drained, 2 bad input, 3 refused by the capacity guard.
                """
        )

        @Argument(help: "The zone to drain.")
        var zone: String

        @Option(name: .customLong("for"), help: ArgumentHelp("How long, e.g. 30m, 2h, 1d.", valueName: "duration"))
        var duration: String

        @Option(help: "Why, for the event log.")
        var reason: String

        @Option(help: ArgumentHelp("Configuration file: checks the zone and the capacity guard.", valueName: "file"))
        var config: String?

        @Flag(help: "Drain even when a service would be left with no capacity in a region it serves from.")
        var force = false

        @Option(
            help: ArgumentHelp(
                "Drain through the controller instead of --db: its URL, or its replicas' URLs separated by commas.",
                valueName: "urls"
            )
        )
        var controller: String?

        @Option(help: ArgumentHelp("The controller's bearer token file (with --controller).", valueName: "file"))
        var tokenFile: String?

        @OptionGroup var database: DatabaseOptions
        @OptionGroup var actor: ActorOptions

        func validate() throws {
            if controller != nil, tokenFile == nil {
                throw ValidationError("--token-file: the controller needs its bearer token")
            }
            guard let length = TimeSpan.parse(duration), length > .zero else {
                throw ValidationError("--for: expected a positive duration such as 30m, 2h or 1d, got \"\(duration)\"")
            }
            guard !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw ValidationError("--reason: must not be empty; say why the zone is drained")
            }
        }

        func run() async throws {
            let now = Date()
            let length = TimeSpan.parse(duration) ?? .zero
            let configuration = try config.map(loadConfiguration)
            if let configuration, configuration.zone(named: zone) == nil {
                printError(
                    "zone: unknown zone \"\(zone)\" (known: \(configuration.zones.map(\.name).joined(separator: ", ")))"
                )
                throw ExitCode.badInput
            }
            if let controller, let tokenFile {
                let client = try controllerClient(controller, token: try readToken(tokenFile))
                if let configuration {
                    let snapshot = try await callController { () async throws(ControllerClientError) in
                        try await client.snapshot().value
                    }
                    try guardCapacity(
                        configuration,
                        drained: Set(snapshot.drainedZones),
                        active: snapshot.services.mapValues(\.activeRegion)
                    )
                }
                let request = DrainRequest(
                    zone: zone,
                    duration: duration,
                    reason: reason + (force ? " [forced]" : ""),
                    actor: actor.actor
                )
                let drain = try await callController { () async throws(ControllerClientError) in
                    try await client.drain(request)
                }
                print("Drained \(zone) until \(iso8601(drain.expiresAt)) (\(TimeSpan.format(length))).")
                return
            }
            let store = try openStore(database.db)
            try store.sweepExpiredDrains(at: now)
            if let configuration {
                try guardCapacity(
                    configuration,
                    drained: Set(try store.activeDrains(at: now).map(\.zone)),
                    active: Dictionary(
                        uniqueKeysWithValues: try store.serviceStates().map { ($0.service, $0.activeRegion) }
                    )
                )
            }
            let expiresAt = now.addingTimeInterval(length.seconds)
            var reason = reason
            if force { reason += " [forced]" }
            try store.drainZone(zone, until: expiresAt, reason: reason, actor: actor.actor, at: now)
            print("Drained \(zone) until \(iso8601(expiresAt)) (\(TimeSpan.format(length))).")
        }

        /// Prints each service's cross-zone share before and after; exit 3 when the drain would leave a
        /// service without capacity in a region it serves from, unless --force.
        func guardCapacity(
            _ configuration: ZonewardConfiguration,
            drained: Set<String>,
            active: [String: String]
        ) throws {
            let impacts = DrainImpact.assess(
                draining: zone,
                configuration: configuration,
                drainedZones: drained,
                activeRegions: active
            )
            print(Self.render(impacts))
            let unsafe = impacts.filter(\.isUnsafe)
            guard unsafe.isEmpty || force else {
                for impact in unsafe {
                    printError(
                        "refused: service \(impact.service) would have no capacity left in "
                            + impact.regionsLeftEmpty.joined(separator: ", ")
                    )
                }
                printError("Nothing was changed. Use --force to drain anyway.")
                throw ExitCode.guardRefused
            }
        }

        static func render(_ impacts: [DrainImpact]) -> String {
            var rows = [["service", "cross-zone before", "after", "cross-region before", "after", "capacity guard"]]
            for impact in impacts {
                rows.append([
                    impact.service,
                    PlanTable.percent(impact.crossZoneBefore),
                    PlanTable.percent(impact.crossZoneAfter),
                    PlanTable.percent(impact.crossRegionBefore),
                    PlanTable.percent(impact.crossRegionAfter),
                    impact.isUnsafe ? "no capacity left in \(impact.regionsLeftEmpty.joined(separator: ", "))" : "ok",
                ])
            }
            return TextTable.render(rows)
        }
    }

    /// `zoneward zone undrain ZONE`.
    struct Undrain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "End a zone's drain now.",
            discussion: """
                Example:
                  zoneward zone undrain us-east-1a

                Exit codes: 0 undrained, 1 the zone was not drained, 2 bad input.
                """
        )

        @Argument(help: "The zone to undrain.")
        var zone: String

        @OptionGroup var database: DatabaseOptions
        @OptionGroup var actor: ActorOptions

        func run() throws {
            let store = try openStore(database.db)
            guard try store.undrainZone(zone, actor: actor.actor, at: Date()) else {
                printError("\(zone) is not drained; nothing changed.")
                throw ExitCode.failure
            }
            print("Undrained \(zone).")
        }
    }

    /// `zoneward zone list`.
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the zones drained now.",
            discussion: """
                Expired drains are not listed: they stop counting by themselves.

                Example:
                  zoneward zone list --format json
                """
        )

        @Option(help: "Output format: table for people, json for scripts.")
        var format: OutputFormat = .table

        @OptionGroup var database: DatabaseOptions

        func run() throws {
            let now = Date()
            let store = try openStore(database.db)
            try store.sweepExpiredDrains(at: now)
            let drains = try store.activeDrains(at: now)
            switch format {
            case .json:
                let items = drains.map { drain in
                    DrainListing(
                        zone: drain.zone,
                        reason: drain.reason,
                        actor: drain.actor,
                        createdAt: iso8601(drain.createdAt),
                        expiresAt: iso8601(drain.expiresAt),
                        remainingSeconds: Int(drain.expiresAt.timeIntervalSince(now).rounded(.up))
                    )
                }
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(items), as: UTF8.self))
            case .table:
                guard !drains.isEmpty else {
                    print("No zone is drained.")
                    return
                }
                var rows = [["zone", "expires", "remaining", "actor", "reason"]]
                for drain in drains {
                    let remaining = Duration.seconds(Int64(drain.expiresAt.timeIntervalSince(now).rounded(.up)))
                    rows.append([
                        drain.zone, iso8601(drain.expiresAt), TimeSpan.format(remaining), drain.actor, drain.reason,
                    ])
                }
                print(TextTable.render(rows))
            }
        }
    }
}

/// One drain as `zone list --format json` prints it.
struct DrainListing: Encodable {
    var zone: String
    var reason: String
    var actor: String
    var createdAt: String
    var expiresAt: String
    var remainingSeconds: Int
}

/// Loads a configuration file, printing every problem and exiting 2 when it is invalid.
func loadConfiguration(_ path: String) throws -> ZonewardConfiguration {
    do {
        return try ZonewardConfiguration.load(file: path)
    } catch {
        printError(error.description)
        throw ExitCode.badInput
    }
}

/// Opens the state database, printing a clear error and exiting 1 when it can't.
func openStore(_ path: String) throws -> StateStore {
    do {
        return try StateStore.open(path: path)
    } catch {
        printError(error.description)
        throw ExitCode.failure
    }
}
