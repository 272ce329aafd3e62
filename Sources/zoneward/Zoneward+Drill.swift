import ArgumentParser
import Foundation
import ZonewardAPI
import ZonewardBackup
import ZonewardFailover
import ZonewardModel
import ZonewardState

extension Zoneward {
    /// `zoneward drill …`: DR drills that measure recovery instead of claiming it.
    struct Drill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run DR drills (restore, switchover and back) and list their measured RTO and RPO.",
            discussion: """
                Results are kept in the state database (`drills` table): through the controller with \
                --controller URL --token-file FILE (env ZONEWARD_CONTROLLER, ZONEWARD_TOKEN_FILE), or in --db \
                PATH directly. The controller exports them as metrics (zoneward_drill_*) and in GET /v1/status.

                Exit codes: 0 done (or fresh), 1 the drill failed (or one is stale), 2 usage or bad input.
                """,
            subcommands: [Restore.self, Switchover.self, History.self, Status.self]
        )
    }
}

/// Where drill results are recorded and read: the controller's API, or the state database directly.
struct DrillTarget: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "The controller's URL, or its replicas' separated by commas; env ZONEWARD_CONTROLLER.",
            valueName: "urls"
        )
    )
    var controller: String?

    @Option(help: ArgumentHelp("The controller's bearer token file; env ZONEWARD_TOKEN_FILE.", valueName: "file"))
    var tokenFile: String?

    @Option(help: ArgumentHelp("The state database, instead of the controller.", valueName: "path"))
    var db: String?

    enum Mode {
        case remote(ControllerClient)
        case local(StateStore)
    }

    func resolve() throws -> Mode {
        let environment = ProcessInfo.processInfo.environment
        if let url = controller ?? (db == nil ? environment["ZONEWARD_CONTROLLER"] : nil) {
            guard let tokenPath = tokenFile ?? environment["ZONEWARD_TOKEN_FILE"] else {
                printError("--token-file: the controller needs its bearer token (or set ZONEWARD_TOKEN_FILE)")
                throw ExitCode.badInput
            }
            return .remote(try controllerClient(url, token: try readToken(tokenPath)))
        }
        guard let path = db ?? environment["ZONEWARD_DB"] else {
            printError("give --controller URL --token-file FILE, or --db PATH")
            throw ExitCode.badInput
        }
        return .local(try openStore(path))
    }

    /// Records a drill where `mode` keeps them; returns it with its id.
    func record(_ drill: DrillRecord, in mode: Mode) async throws -> DrillRecord {
        switch mode {
        case .remote(let client):
            return try await callController { () async throws(ControllerClientError) in
                try await client.recordDrill(drill)
            }
        case .local(let store):
            return try store.recordDrill(drill)
        }
    }

    /// Drill results, newest first.
    func drills(kind: DrillRecord.Kind? = nil, target: String? = nil, limit: Int) async throws -> [DrillRecord] {
        switch try resolve() {
        case .remote(let client):
            return try await callController { () async throws(ControllerClientError) in
                try await client.drills(kind: kind, target: target, limit: limit)
            }
        case .local(let store):
            return try store.drills(kind: kind, target: target, limit: limit)
        }
    }
}

extension DrillRecord.Kind: ExpressibleByArgument {}

extension Zoneward.Drill {
    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Restore a job's newest backup into a scratch location, check it, time it, delete it.",
            discussion: """
                The newest completed backup (from the catalog in --db, else the job's targets) is decrypted, \
                checksummed and restored as `backup restore` does; a SQLite database must open and pass \
                PRAGMA integrity_check, a directory must extract safely. Records the RTO (time to restore and \
                check) and the RPO (now minus the backup's source snapshot time).

                Examples:
                  zoneward drill restore --job state --config config/zoneward.yaml --db ./zoneward.db
                  zoneward drill restore --job state --config config/zoneward.yaml \\
                      --controller http://127.0.0.1:9900 --token-file ./controller.token
                """
        )

        @Option(help: "The backup job.") var job: String
        @Option(help: ArgumentHelp("Configuration file with the backups: jobs.", valueName: "file"))
        var config: String
        @OptionGroup var target: DrillTarget

        func run() async throws {
            let signals = removePlaintextOnSignals()
            defer { for source in signals { source.cancel() } }
            let configuration = try loadConfiguration(config)
            guard let found = configuration.backupJob(named: job) else {
                let known = configuration.backups.map(\.name).joined(separator: ", ")
                printError("--job: unknown job \"\(job)\" (known: \(known.isEmpty ? "none" : known))")
                throw ExitCode.badInput
            }
            // The catalog of --db when it exists; otherwise the backups are found on the job's targets.
            let mode = try target.resolve()
            var catalog = try StateStore.inMemory()
            if case .local(let store) = mode { catalog = store }
            let runner = BackupRunner(store: catalog, configuration: configuration)
            let drill = await runner.restoreDrill(
                found,
                actor: ProcessInfo.processInfo.environment["USER"] ?? "operator"
            )
            let stored = try await target.record(drill, in: mode)
            printDrill(stored)
            if !stored.success { throw ExitCode.failure }
        }
    }

    struct Switchover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Switch a service over to a region through the controller (and back), measuring RTO per leg.",
            discussion: """
                Each leg asks the controller for a planned switchover and polls it; meanwhile a bounded loop of \
                probe requests (--probe URL, a GET; or --probe-command CMD, run by /bin/sh with ZONEWARD_SERVICE \
                and ZONEWARD_REGION, the region that must answer, empty while the operation is in flight) counts \
                failures. A leg's RTO runs from the request until the operation is done and the service answers \
                in the new region (without a probe: until the operation is done). Before the return leg the \
                drill waits (--settle-timeout) for the guards to allow it; --rejoin-command runs after each leg \
                (ZONEWARD_FROM, ZONEWARD_TO) to make the old primary a standby again.

                Example:
                  zoneward drill switchover orders --to us-west-2 --and-back --probe http://orders/healthz \\
                      --controller http://127.0.0.1:9900 --token-file ./controller.token
                """
        )

        @Argument(help: "The service.") var service: String
        @Option(help: "The region to switch over to.") var to: String
        @Flag(help: "Switch back to the region active before, as a second leg.") var andBack = false
        @Option(help: ArgumentHelp("Probe the service with GET URL during each leg.", valueName: "url"))
        var probe: String?
        @Option(help: ArgumentHelp("Probe the service with this shell command during each leg.", valueName: "cmd"))
        var probeCommand: String?
        @Option(help: "Time between probe requests.") var probeInterval = "200ms"
        @Option(help: "The longest one probe request may take.") var probeTimeout = "2s"
        @Option(help: "The longest one leg may take.") var timeout = "120s"
        @Option(help: "How long the return leg waits for the guards to allow it.") var settleTimeout = "60s"
        @Option(
            help: ArgumentHelp("Shell command after each leg that makes the old primary a standby.", valueName: "cmd")
        )
        var rejoinCommand: String?
        @OptionGroup var target: DrillTarget

        func options() throws(SwitchoverDrill.ArgumentError) -> SwitchoverDrill.Options {
            try SwitchoverDrill.validate(
                service: service,
                to: to,
                andBack: andBack,
                probeURL: probe,
                probeCommand: probeCommand,
                probeInterval: probeInterval,
                probeTimeout: probeTimeout,
                timeout: timeout,
                settleTimeout: settleTimeout,
                rejoin: rejoinCommand,
                actor: ProcessInfo.processInfo.environment["USER"] ?? "operator"
            )
        }

        func validate() throws {
            do {
                _ = try options()
            } catch {
                throw ValidationError(error.description)
            }
        }

        func run() async throws {
            let mode = try target.resolve()
            guard case .remote(let client) = mode else {
                printError("--controller: a switchover drill runs through the controller; give --controller URL")
                throw ExitCode.badInput
            }
            let drill = SwitchoverDrill(options: try options(), client: client) { print($0) }
            let record = await drill.run()
            let stored = try await target.record(record, in: mode)
            printDrill(stored)
            if !stored.success { throw ExitCode.failure }
        }
    }

    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List drill results, newest first.",
            discussion: """
                Example:
                  zoneward drill history --format json --controller http://127.0.0.1:9900 --token-file t
                """
        )

        @Option(help: "Only drills of this kind: restore or switchover.") var kind: DrillRecord.Kind?
        @Option(help: "Only drills of this backup job or service.") var target: String?
        @Option(help: "How many drills.") var limit = 20
        @Option(help: "Output format: table for people, json for scripts.") var format: OutputFormat = .table
        @OptionGroup var source: DrillTarget

        func validate() throws {
            guard (1...1000).contains(limit) else { throw ValidationError("--limit: expected 1 to 1000, got \(limit)") }
        }

        func run() async throws {
            let drills = try await source.drills(kind: kind, target: target, limit: limit)
            if format == .json { return try printJSON(drills) }
            var rows = [["id", "kind", "target", "started", "result", "RTO (s)", "RPO (s)", "probe errors", "detail"]]
            for drill in drills {
                rows.append([
                    String(drill.id ?? 0), drill.kind.rawValue, drill.target, iso8601(drill.startedAt),
                    drill.success ? "ok" : "FAILED",
                    drill.rtoSeconds.isEmpty
                        ? "-" : drill.rtoSeconds.map { String(format: "%.2f", $0) }.joined(separator: " / "),
                    drill.rpoSeconds.map { String(format: "%.1f", $0) } ?? "-",
                    drill.probeErrors.isEmpty ? "-" : drill.probeErrors.map(String.init).joined(separator: " / "),
                    drill.error ?? drill.detail,
                ])
            }
            print(TextTable.render(rows))
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Say whether each job's and service's last successful drill is recent enough for its policy.",
            discussion: """
                A target is stale when it has a drill policy with `every` (drill: {every: 7d} on a backup job or \
                a service's failover block) and its last successful drill finished longer ago, or never. Prints \
                each target's DR posture: strategy, measured RPO and RTO against the targets.

                Example:
                  zoneward drill status --config config/zoneward.yaml --db ./zoneward.db

                Exit codes: 0 every drill fresh, 1 one is stale, 2 bad input.
                """
        )

        @Option(help: ArgumentHelp("The configuration (the drill policies).", valueName: "file"))
        var config: String
        @Option(help: "Output format: table for people, json for scripts.") var format: OutputFormat = .table
        @OptionGroup var target: DrillTarget

        func run() async throws {
            let configuration = try loadConfiguration(config)
            let records = try await target.drills(limit: 1000)
            let postures = DrillAssessment.postures(configuration: configuration, records: records, now: Date())
            if format == .json {
                try printJSON(postures)
            } else {
                for posture in postures { print(posture.line) }
            }
            try failWhenStale(postures)
        }
    }
}

/// Exits 1 naming each stale drill and how old its last success is.
func failWhenStale(_ postures: [DrillPosture]) throws {
    let stale = postures.filter(\.stale)
    guard !stale.isEmpty else { return }
    for posture in stale {
        let age = posture.lastSuccessAt.flatMap { try? Date($0, strategy: .iso8601) }.map {
            "its last successful drill finished \(DrillAssessment.formatSeconds(Date().timeIntervalSince($0))) ago"
        }
        printError(
            "STALE: \(posture.kind.rawValue) drill of \(posture.target): \(age ?? "it never had a successful drill"), "
                + "policy every \(DrillAssessment.formatSeconds(posture.maxAgeSeconds ?? 0))"
        )
    }
    throw ExitCode.failure
}

/// One drill's result for people; the figures the closing notes quote.
func printDrill(_ drill: DrillRecord) {
    let legs = drill.rtoSeconds.enumerated().map { index, rto in
        let errors = index < drill.probeErrors.count ? ", \(drill.probeErrors[index]) probe errors" : ""
        return String(format: "%.2f s", rto) + errors
    }
    print(
        "\(drill.kind.rawValue) drill \(drill.id ?? 0) of \(drill.target): \(drill.success ? "ok" : "FAILED")"
            + (legs.isEmpty ? "" : "; RTO " + legs.joined(separator: " / "))
            + (drill.rpoSeconds.map { String(format: "; RPO %.1f s", $0) } ?? "")
    )
    if !drill.detail.isEmpty { print("  \(drill.detail)") }
    if let error = drill.error { printError("  \(drill.kind.rawValue) drill of \(drill.target) failed: \(error)") }
}
