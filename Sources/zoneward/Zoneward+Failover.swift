import ArgumentParser
import Foundation
import Logging
import ZonewardAPI
import ZonewardFailover
import ZonewardModel
import ZonewardState

extension Zoneward {
    /// `zoneward failover …`: region failover and switchover.
    struct Failover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show, plan and execute region failover and switchover.",
            discussion: """
                Talks to the controller (--controller URL --token-file FILE, or env ZONEWARD_CONTROLLER and \
                ZONEWARD_TOKEN_FILE). With controller replicas (HA), give them all, separated by commas: \
                --controller http://c1:9900,http://c2:9900,http://c3:9900; reads go to whichever answers, and \
                changes are sent on to the leader. When no controller answers, --db PATH --config FILE works on \
                the state database directly (break glass).

                Exit codes: 0 done, 2 usage or bad input, 3 a guard refused, 4 the operation failed.
                """,
            subcommands: [Status.self, Plan.self, Execute.self, History.self, Resume.self]
        )
    }
}

/// Where failover commands act: the controller's API, or the state database directly.
struct FailoverTarget: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "The controller's URL, or the URLs of its replicas separated by commas; env ZONEWARD_CONTROLLER.",
            valueName: "urls"
        )
    )
    var controller: String?

    @Option(help: ArgumentHelp("The controller's bearer token file; env ZONEWARD_TOKEN_FILE.", valueName: "file"))
    var tokenFile: String?

    @Option(help: ArgumentHelp("Break glass: the state database, when the controller is down.", valueName: "path"))
    var db: String?

    @Option(help: ArgumentHelp("The configuration (needed with --db).", valueName: "file"))
    var config: String?

    enum Mode {
        case remote(ControllerClient)
        case local(FailoverCoordinator)
    }

    func resolve() throws -> Mode {
        let environment = ProcessInfo.processInfo.environment
        if let url = controller ?? (db == nil ? environment["ZONEWARD_CONTROLLER"] : nil) {
            guard let tokenPath = tokenFile ?? environment["ZONEWARD_TOKEN_FILE"] else {
                printError("--token-file: the controller needs its bearer token (or set ZONEWARD_TOKEN_FILE)")
                throw ExitCode.badInput
            }
            let token = try readToken(tokenPath)
            return .remote(try controllerClient(url, token: token))
        }
        guard let db, let config else {
            printError(
                "give --controller URL --token-file FILE, or --db PATH --config FILE when the controller is down"
            )
            throw ExitCode.badInput
        }
        let configuration = try loadConfiguration(config)
        var logger = Logger(label: "zoneward")
        logger.logLevel = .warning
        return .local(FailoverCoordinator(store: try openStore(db), configuration: configuration, logger: logger))
    }
}

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

extension Zoneward.Failover {
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show each service's active region, epoch, region health, lag and last operation.",
            discussion: """
                Also says whether automatic failover would fire now, and why or why not.

                Example:
                  zoneward failover status --controller http://127.0.0.1:9900 --token-file ./controller.token
                """
        )

        @OptionGroup var target: FailoverTarget
        @Option(help: "Output format: table for people, json for scripts.") var format: OutputFormat = .table

        func run() async throws {
            let report: StatusReport
            switch try target.resolve() {
            case .remote(let client):
                report = try await callController { () async throws(ControllerClientError) in
                    try await client.status().value
                }
            case .local(let coordinator):
                report = try StatusReport.build(
                    configuration: coordinator.configuration,
                    store: coordinator.store,
                    now: Date()
                )
            }
            if format == .json { return try printJSON(report) }
            for service in report.services {
                print("\(service.name): active \(service.activeRegion), epoch \(service.epoch), mode \(service.mode)")
                var rows = [["region", "health", "lag", "detail"]]
                for region in service.regions {
                    rows.append([
                        region.region + (region.region == service.activeRegion ? " (active)" : ""),
                        region.up.map { $0 ? "up" : "DOWN" } ?? "unknown",
                        region.lagSeconds.map { String(format: "%.1f s", $0) } ?? "-",
                        region.detail,
                    ])
                }
                print(TextTable.render(rows).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
                if let operation = service.lastOperation {
                    print(
                        "  last operation \(operation.id): \(operation.kind) \(operation.from) → \(operation.to), "
                            + "\(operation.state)\(operation.error.map { " (\($0))" } ?? "")"
                    )
                }
                print("  automatic failover \(service.automaticFailover)")
                if let posture = service.drPosture { print("  DR posture: \(posture)") }
            }
        }
    }

    struct Plan: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the steps and guard results of moving a service's primary; change nothing.",
            discussion: """
                Example:
                  zoneward failover plan orders --to us-west-2 --controller http://127.0.0.1:9900 --token-file t

                Exit codes: 0 the guards pass, 3 a guard refuses.
                """
        )

        @Argument(help: "The service.") var service: String
        @Option(help: "The region to make active.") var to: String
        @Flag(help: "Evaluate as if --force overrode the lag guard.") var force = false
        @OptionGroup var target: FailoverTarget

        func run() async throws {
            let plan = try await planFailover(service: service, to: to, force: force, target: target)
            printPlan(plan)
            if plan.refused { throw ExitCode.guardRefused }
        }
    }

    struct Execute: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move a service's primary to another region: fence, promote, reroute, verify.",
            discussion: """
                A switchover when the primary is up, a failover when it is down. At a terminal you type the \
                service's name to confirm, unless --yes. The guards are checked again right before acting. \
                --force overrides the lag guard (and is recorded); --dry-run prints the steps and changes nothing.

                Example:
                  zoneward failover execute orders --to us-west-2 --controller http://127.0.0.1:9900 --token-file t

                Exit codes: 0 done, 2 bad input, 3 a guard refused, 4 the operation failed.
                """
        )

        @Argument(help: "The service.") var service: String
        @Option(help: "The region to make active.") var to: String
        @Flag(help: "Print every step and change nothing.") var dryRun = false
        @Flag(help: "Override the lag guard (recorded in the operation and the event log).") var force = false
        @Flag(help: "Do not ask for confirmation.") var yes = false
        @Option(help: "Why, for the event log.") var reason: String = "operator request"
        @OptionGroup var target: FailoverTarget

        func run() async throws {
            let plan = try await planFailover(service: service, to: to, force: force, target: target)
            printPlan(plan)
            if plan.refused { throw ExitCode.guardRefused }
            if dryRun {
                print("Dry run: nothing was changed.")
                return
            }
            if !yes {
                guard isatty(STDIN_FILENO) != 0 else {
                    printError("--yes: no terminal to confirm at; pass --yes to execute")
                    throw ExitCode.badInput
                }
                print("Type the service name (\(service)) to \(plan.kind) \(plan.from) → \(plan.to): ", terminator: "")
                guard readLine()?.trimmingCharacters(in: .whitespaces) == service else {
                    printError("not confirmed; nothing was changed")
                    throw ExitCode.badInput
                }
            }
            let actor = ProcessInfo.processInfo.environment["USER"] ?? "operator"
            let operation: FailoverOperation
            switch try target.resolve() {
            case .remote(let client):
                let request = FailoverRequest(
                    service: service,
                    to: to,
                    force: force,
                    dryRun: false,
                    actor: actor,
                    reason: reason
                )
                let started = try await callController { () async throws(ControllerClientError) in
                    try await client.failover(request)
                }
                guard !started.refused, let id = started.operation else {
                    printPlan(started)
                    throw ExitCode.guardRefused
                }
                operation = try await waitForOperation(id, client: client)
            case .local(let coordinator):
                guard let config = coordinator.configuration.service(named: service) else { throw ExitCode.badInput }
                let (active, epoch) = try coordinator.activeRegion(of: config)
                let planned = try coordinator.store.planOperation(
                    service: service,
                    kind: plan.kind == "failover" ? .failover : .switchover,
                    from: active,
                    to: to,
                    epochBefore: epoch,
                    forced: force,
                    actor: actor,
                    reason: reason,
                    at: Date()
                )
                operation = try await runRefusingConflicts(coordinator, planned.id ?? 0)
                for step in try coordinator.store.steps(of: operation.id ?? 0) where step.status != .started {
                    print("  \(step.step.rawValue): \(step.status.rawValue) — \(step.detail)")
                }
            }
            try finish(operation)
        }
    }

    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List past failover and switchover operations, newest first.",
            discussion: """
                Example:
                  zoneward failover history --limit 5 --format json --db ./zoneward.db --config config/zoneward.yaml
                """
        )

        @Option(help: "How many operations.") var limit = 20
        @Option(help: "Output format: table for people, json for scripts.") var format: OutputFormat = .table
        @OptionGroup var target: FailoverTarget

        func run() async throws {
            let operations: [FailoverOperation]
            switch try target.resolve() {
            case .remote(let client):
                operations = try await callController { () async throws(ControllerClientError) in
                    try await client.operations(limit: limit)
                }
            case .local(let coordinator):
                operations = try coordinator.store.operations(limit: limit)
            }
            if format == .json { return try printJSON(operations) }
            var rows = [["id", "service", "kind", "from → to", "state", "forced", "actor", "updated", "error"]]
            for operation in operations {
                rows.append([
                    String(operation.id ?? 0), operation.service, operation.kind.rawValue,
                    "\(operation.fromRegion) → \(operation.toRegion)", operation.state.rawValue,
                    operation.forced ? "yes" : "no", operation.actor, iso8601(operation.updatedAt),
                    operation.error ?? "",
                ])
            }
            print(TextTable.render(rows))
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Resume an interrupted operation from the step it stopped at.",
            discussion: """
                Example:
                  zoneward failover resume 12 --db ./zoneward.db --config config/zoneward.yaml

                Exit codes: 0 done, 3 another process (the controller) runs the operation, 4 the operation failed.
                """
        )

        @Argument(help: "The operation's id.") var id: Int64
        @OptionGroup var target: FailoverTarget

        func run() async throws {
            switch try target.resolve() {
            case .remote(let client):
                _ = try await callController { () async throws(ControllerClientError) in
                    try await client.resume(id)
                }
                try finish(try await waitForOperation(id, client: client))
            case .local(let coordinator):
                guard try coordinator.store.operation(id) != nil else {
                    printError("no failover operation \(id)")
                    throw ExitCode.badInput
                }
                try finish(try await runRefusingConflicts(coordinator, id))
            }
        }
    }
}

/// The plan of a change, from the controller or computed locally.
func planFailover(service: String, to: String, force: Bool, target: FailoverTarget) async throws -> FailoverPlan {
    switch try target.resolve() {
    case .remote(let client):
        let request = FailoverRequest(service: service, to: to, force: force, dryRun: true, actor: "cli", reason: nil)
        return try await callController { () async throws(ControllerClientError) in
            try await client.failover(request)
        }
    case .local(let coordinator):
        guard let config = coordinator.configuration.service(named: service), config.failover != nil else {
            printError("service: \"\(service)\" has no failover block in the configuration")
            throw ExitCode.badInput
        }
        guard config.regions.contains(to) else {
            printError(
                "--to: \"\(to)\" is not a region of \(service) (known: \(config.regions.joined(separator: ", ")))"
            )
            throw ExitCode.badInput
        }
        return try await coordinator.plan(service: config, to: to, force: force)
    }
}

func printPlan(_ plan: FailoverPlan) {
    print("\(plan.kind) of \(plan.service): \(plan.from) → \(plan.to)")
    for result in plan.guards {
        print(
            "  guard \(result.name): \(result.passed ? (result.overridden ? "FORCED" : "ok") : "REFUSED") — \(result.detail)"
        )
    }
    print("  steps: \(plan.steps.joined(separator: " → "))")
}

/// Polls an operation until it is final, printing each step as it completes.
func waitForOperation(_ id: Int64, client: ControllerClient) async throws -> FailoverOperation {
    var printed = 0
    while true {
        let report = try await callController { () async throws(ControllerClientError) in
            try await client.operation(id)
        }
        let finished = report.steps.filter { $0.status != .started }
        for step in finished.dropFirst(printed) {
            print("  \(step.step.rawValue): \(step.status.rawValue) — \(step.detail)")
        }
        printed = finished.count
        if report.operation.state.isFinal { return report.operation }
        try await Task.sleep(for: .milliseconds(200))
    }
}

/// Runs an operation here (break glass); exits 3 when another process (the controller) runs it.
func runRefusingConflicts(_ coordinator: FailoverCoordinator, _ id: Int64) async throws -> FailoverOperation {
    do {
        return try await coordinator.run(id)
    } catch StateError.conflict(let message) {
        printError("refused: \(message)")
        throw ExitCode.guardRefused
    }
}

/// Prints the outcome and exits 0 (done) or 4 (failed).
func finish(_ operation: FailoverOperation) throws {
    if operation.state == .done {
        print(
            "Operation \(operation.id ?? 0) done: \(operation.service) is active in \(operation.toRegion) at epoch \(operation.epochAfter ?? 0)."
        )
        return
    }
    printError("Operation \(operation.id ?? 0) \(operation.state.rawValue): \(operation.error ?? "")")
    throw ExitCode.operationFailed
}

extension ExitCode {
    /// The failover operation ended `failed`.
    static let operationFailed = ExitCode(4)
}
