import ArgumentParser
import Foundation
import Logging
import NIOPosix
import Prometheus
import ServiceLifecycle
import ZonewardBackup
import ZonewardFailover
import ZonewardModel
import ZonewardState

extension Zoneward {
    /// `zoneward controller`: the control plane.
    struct Controller: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the controller: region probes, automatic failover, and the API proxies follow.",
            discussion: """
                Probes every region of every service with a failover block; fails over automatically when the \
                primary is down, a standby is up, its lag is within maxLagSeconds and the cooldown has passed \
                (mode: automatic); resumes operations a crash interrupted. Serves, with a bearer token \
                (all but /healthz): GET /v1/status, GET /v1/snapshot?after=VERSION&boot=BOOT&wait=30s, POST /v1/failover, \
                GET /v1/operations[/ID], POST /v1/operations/ID/resume, POST /v1/drains, GET|POST /v1/drills. \
                Runs the drills that have a drill.schedule (the leader only, as with backups).

                Example:
                  zoneward controller --config config/zoneward.yaml --db ./zoneward.db \\
                      --listen 127.0.0.1:9900 --token-file ./controller.token
                """
        )

        @Option(help: ArgumentHelp("Configuration file.", valueName: "file"))
        var config: String

        @OptionGroup var database: DatabaseOptions

        @Option(
            help: ArgumentHelp(
                "Address of the API; default the configuration's controller.listen.",
                valueName: "host:port"
            )
        )
        var listen: String?

        @Option(help: ArgumentHelp("File holding the bearer token; default controller.tokenFile.", valueName: "file"))
        var tokenFile: String?

        @Option(
            help: ArgumentHelp(
                "The URL peers, proxies and the CLI reach this replica at, recorded with its leadership; default "
                    + "controller.advertise, else http://<listen>. In Kubernetes: http://$(POD_IP):9900.",
                valueName: "url"
            )
        )
        var advertise: String?

        @OptionGroup var runtime: RuntimeOptions

        func run() async throws {
            let configuration = try loadConfiguration(config)
            var settings = try controllerSettings(configuration, listen: listen, tokenFile: tokenFile)
            let store = try openStore(database.db)
            let logger = runtime.bootstrapLogging(zone: nil)
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let registry = PrometheusCollectorRegistry()
            settings.metrics = { registry.emitToString() }
            let ha = try highAvailability(configuration, settings: settings, advertise: advertise, logger: logger)
            let controller = ControllerService(
                settings: settings,
                store: store,
                group: group,
                logger: logger,
                gate: ha?.gate,
                election: ha?.election,
                replica: ha?.replica
            )
            var services: [any Service] = [controller]
            if !configuration.backups.isEmpty {
                // With an election every replica would run the jobs: they run from the CronJob
                // (`backup run --controller`) instead, and each replica only publishes the catalog's metrics.
                let runner = BackupRunner(store: store, configuration: configuration)
                if ha != nil {
                    logger.notice(
                        "controller.ha is set: backup jobs are not scheduled here; run them with `zoneward backup run --controller`"
                    )
                }
                services.append(
                    BackupScheduler(runner: runner, registry: registry, logger: logger, runsJobs: ha == nil)
                )
            }
            let drills = scheduledDrills(configuration, settings: settings, store: store, url: ha?.gate.me.url)
            if !drills.isEmpty {
                let gate = controller.gate
                services.append(DrillScheduler(drills: drills, store: store, logger: logger) { gate.isLeader })
            }
            var groupConfiguration = ServiceGroupConfiguration(
                services: services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
            // After the drain timeout, whatever still runs (a backup, a step) is cancelled; a cancelled step
            // leaves its operation resumable.
            groupConfiguration.maximumGracefulShutdownDuration = TimeSpan.parse(runtime.drainTimeout) ?? .seconds(20)
            groupConfiguration.maximumCancellationDuration = .seconds(5)
            do {
                try await ServiceGroup(configuration: groupConfiguration).run()
            } catch {
                printError("zoneward controller: \(error)")
                try? await group.shutdownGracefully()
                throw ExitCode.failure
            }
            try await group.shutdownGracefully()
        }
    }
}

/// The drills with a `drill.schedule`: restore drills of backup jobs (restored from this replica's catalog or
/// the targets) and switchover drills there and back, which the controller asks of its own API.
func scheduledDrills(
    _ configuration: ZonewardConfiguration,
    settings: ControllerService.Settings,
    store: StateStore,
    url: String?
) -> [DrillScheduler.Scheduled] {
    var drills: [DrillScheduler.Scheduled] = []
    let runner = BackupRunner(store: store, configuration: configuration)
    for job in configuration.backups {
        guard let schedule = job.drill?.schedule.flatMap(CronSchedule.init) else { continue }
        drills.append(
            .init(kind: .restore, target: job.name, schedule: schedule) {
                await runner.restoreDrill(job, actor: "controller")
            }
        )
    }
    let token = settings.scopedTokens[.operate] ?? settings.token
    for service in configuration.services {
        guard let failover = service.failover, let schedule = failover.drill?.schedule.flatMap(CronSchedule.init),
            let standby = service.regions.dropFirst().first
        else { continue }
        drills.append(
            .init(kind: .switchover, target: service.name, schedule: schedule) {
                let startedAt = Date()
                do {
                    let client = try ControllerClient(urls: [url ?? "http://\(settings.listen)"], token: token)
                    // From whichever region is active to the first other one, and back.
                    let active = try await client.status().value.services.first { $0.name == service.name }?
                        .activeRegion
                    let to = active == standby ? (service.primaryRegion ?? standby) : standby
                    let options = try SwitchoverDrill.validate(
                        service: service.name,
                        to: to,
                        andBack: true,
                        probeURL: nil,
                        probeCommand: nil,
                        actor: "controller"
                    )
                    return await SwitchoverDrill(options: options, client: client).run()
                } catch {
                    return DrillRecord(
                        kind: .switchover,
                        target: service.name,
                        startedAt: startedAt,
                        finishedAt: max(Date(), startedAt),
                        success: false,
                        error: "\(error)",
                        actor: "controller"
                    )
                }
            }
        )
    }
    return drills
}

/// The election, gate and state replica of `controller.ha`, or nil for a single replica.
func highAvailability(
    _ configuration: ZonewardConfiguration,
    settings: ControllerService.Settings,
    advertise: String?,
    logger: Logger
) throws -> (gate: LeadershipGate, election: any LeaderElection, replica: any StateReplica)? {
    guard let ha = configuration.controller?.ha else {
        if advertise != nil { logger.notice("--advertise matters only with controller.ha; ignored") }
        return nil
    }
    var url = advertise ?? configuration.controller?.advertise ?? "http://\(settings.listen)"
    if let flag = advertise {
        guard let parsed = URL(string: flag), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil else {
            printError("--advertise: expected an http:// or https:// URL such as http://10.0.3.7:9900, got \"\(flag)\"")
            throw ExitCode.badInput
        }
        url = flag.hasSuffix("/") ? String(flag.dropLast()) : flag
    }
    if ["0.0.0.0", "::", "[::]"].contains(where: { url.contains("//\($0):") }) {
        printError(
            "--advertise: controller.listen is \(settings.listen), which peers cannot reach; give the URL they can "
                + "(--advertise http://POD_IP:PORT or controller.advertise)"
        )
        throw ExitCode.badInput
    }
    guard let job = configuration.backups.first(where: { $0.name == ha.stateJob }) else {
        printError("controller.ha.state.job: no backup job named \"\(ha.stateJob)\"")
        throw ExitCode.badInput
    }
    let gate = LeadershipGate(me: LeaderRecord(id: RunnerIdentity.make(), url: url))
    let election = try makeElection(ha, logger: logger)
    let replica = try BackupStateReplica(job: job, keep: ha.keep)
    return (gate, election, replica)
}

/// The controller's listener and token from the flags or the configuration.
func controllerSettings(
    _ configuration: ZonewardConfiguration,
    listen: String?,
    tokenFile: String?
) throws -> ControllerService.Settings {
    var address = configuration.controller?.listen ?? HostPort(host: "127.0.0.1", port: 9900)
    if let listen {
        guard let parsed = HostPort(parsing: listen) else {
            printError("--listen: expected host:port such as 127.0.0.1:9900, got \"\(listen)\"")
            throw ExitCode.badInput
        }
        address = parsed
    }
    var scoped: [TokenScope: String] = [:]
    for (name, file) in configuration.controller?.tokens ?? [:] {
        guard let scope = TokenScope(rawValue: name) else { continue }
        scoped[scope] = try readToken(file)
    }
    let path = tokenFile ?? configuration.controller?.tokenFile
    guard path != nil || scoped[.operate] != nil else {
        printError(
            "--token-file: the controller needs a bearer token file (or controller.tokenFile, or "
                + "controller.tokens.operate in the config)"
        )
        throw ExitCode.badInput
    }
    // Without a full token only the scoped ones work: the full one is then a secret nobody holds.
    let token = try path.map(readToken) ?? "unset-\(UUID().uuidString)-\(UUID().uuidString)"
    var settings = ControllerService.Settings(configuration: configuration, listen: address, token: token)
    settings.scopedTokens = scoped
    return settings
}

/// Reads a bearer token file, refusing an empty one and one that group or others may read.
func readToken(_ path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
        printError("--token-file: cannot read \(path)")
        throw ExitCode.badInput
    }
    // A symlink (a mounted Kubernetes secret) is judged by its target's mode.
    let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    if let mode = (try? FileManager.default.attributesOfItem(atPath: resolved))?[.posixPermissions] as? Int,
        mode & 0o077 != 0
    {
        printError(
            "--token-file: \(path) has mode \(String(format: "%04o", mode)), readable by others; "
                + "make it private (chmod 600 \(path))"
        )
        throw ExitCode.badInput
    }
    let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard !token.isEmpty else {
        printError("--token-file: \(path) is empty")
        throw ExitCode.badInput
    }
    return token
}
