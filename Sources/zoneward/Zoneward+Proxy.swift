import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import ZonewardDiscovery
import ZonewardFailover
import ZonewardModel
import ZonewardProxy
import ZonewardState

extension Zoneward {
    /// `zoneward proxy`: the in-cluster traffic proxy.
    struct Proxy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the zone-aware HTTP/1.1 and TCP proxy for one zone.",
            discussion: """
                Listens for every service of the configuration, routes each request to a zone by the optimal \
                plan for this proxy's zone, then to an endpoint by power of two choices on outstanding \
                requests. Health checks, outlier ejection and zone drains (read from --db) re-plan at once. \
                SIGHUP or a change of the file reloads the configuration; an invalid one is refused and the \
                old one keeps serving. SIGTERM or SIGINT drains in-flight requests, then exits 0.

                Admin listener (default 127.0.0.1:9901): /metrics, /admin/plan, /healthz, /readyz.

                Example:
                  ZONEWARD_ZONE=us-east-1a zoneward proxy --config config/zoneward.yaml --db ./zoneward.db
                """
        )

        @Option(help: ArgumentHelp("Configuration file.", valueName: "file"))
        var config: String

        @Option(help: "The zone this proxy runs in; env ZONEWARD_ZONE (from the node's topology label) otherwise.")
        var zone: String?

        @Option(
            help: ArgumentHelp(
                "State database to follow zone drains from; env ZONEWARD_DB otherwise; none to ignore drains.",
                valueName: "path"
            )
        )
        var db: String?

        @Option(
            help: ArgumentHelp(
                "Controllers to follow for active regions, epochs and drains: one URL, or the HA replicas' URLs "
                    + "separated by commas (http://c1:9900,http://c2:9900); the next is asked when one is down.",
                valueName: "urls"
            )
        )
        var controller: String?

        @Option(help: ArgumentHelp("File holding the controller's bearer token.", valueName: "file"))
        var tokenFile: String?

        @OptionGroup var runtime: RuntimeOptions

        func run() async throws {
            let configuration = try loadConfiguration(config)
            let token = try tokenFile.map(readToken)
            if controller != nil && token == nil {
                printError("--token-file: following a controller needs its bearer token")
                throw ExitCode.badInput
            }
            if let controller { _ = try controllerURLs(controller) }
            let environment = ProcessInfo.processInfo.environment
            var zone = zone ?? environment["ZONEWARD_ZONE"]
            if zone == nil, let node = environment["NODE_NAME"], !node.isEmpty {
                // In a DaemonSet: the node's topology.kubernetes.io/zone label, read from the API server.
                let client = try KubernetesClient(
                    configuration: try runtime.kubernetesConfiguration(),
                    eventLoopGroup: MultiThreadedEventLoopGroup.singleton
                )
                do {
                    zone = try await client.zone(ofNode: node)
                } catch {
                    await client.shutdown()
                    printError("NODE_NAME=\(node): cannot learn this proxy's zone from its node: \(error)")
                    throw ExitCode.failure
                }
                await client.shutdown()
            }
            guard let zone else {
                printError(
                    "--zone: which zone does this proxy run in? Pass --zone ZONE, or set ZONEWARD_ZONE, or NODE_NAME "
                        + "(read from the node's topology.kubernetes.io/zone label)"
                )
                throw ExitCode.badInput
            }
            let statePath = db ?? ProcessInfo.processInfo.environment["ZONEWARD_DB"]
            if statePath == nil && controller == nil {
                printError(
                    "warning: neither --db nor --controller is given, so zone drains and failovers are not "
                        + "followed (`zoneward zone drain` writes ./zoneward.db unless told otherwise; "
                        + "pass --db ./zoneward.db)"
                )
            }
            try await runtime.serve(
                configuration: configuration,
                configurationPath: config,
                zone: zone,
                statePath: statePath,
                controllerURL: controller,
                controllerToken: token,
                demoBackends: false
            )
        }
    }

    /// `zoneward run`: everything in one process.
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run Zoneward in one process: the proxy and its state (the embedded default).",
            discussion: """
                Without --config, uses the embedded default configuration (the same as config/zoneward.yaml). \
                With --demo-backends, also serves the configuration's loopback endpoints in-process, each \
                answering with its zone, so routing can be watched with nothing else installed.

                Example:
                  zoneward run --demo-backends
                  curl -s http://127.0.0.1:8080/            # service=web zone=us-east-1a endpoint=127.0.0.1:18101
                  curl -s http://127.0.0.1:9901/metrics | grep zoneward_requests_total
                  zoneward zone drain us-east-1a --for 10m --reason demo   # traffic moves within a second
                """
        )

        @Option(help: ArgumentHelp("Configuration file; the embedded default when omitted.", valueName: "file"))
        var config: String?

        @Option(help: "The zone this process acts for; env ZONEWARD_ZONE, else the first zone of the configuration.")
        var zone: String?

        @Flag(help: "Serve the configuration's loopback endpoints in-process, each answering with its zone.")
        var demoBackends = false

        @OptionGroup var database: DatabaseOptions
        @OptionGroup var runtime: RuntimeOptions

        func run() async throws {
            let configuration: ZonewardConfiguration
            if let config {
                configuration = try loadConfiguration(config)
            } else {
                configuration = try ZonewardConfiguration.parse(yaml: ZonewardConfiguration.embeddedDefaultYAML)
            }
            let zone = zone ?? ProcessInfo.processInfo.environment["ZONEWARD_ZONE"] ?? configuration.zones.first?.name
            let store = try openStore(database.db)
            let controller = try configuration.controller.map { _ in
                try controllerSettings(configuration, listen: nil, tokenFile: nil)
            }
            try await runtime.serve(
                configuration: configuration,
                configurationPath: config,
                zone: zone ?? "",
                statePath: database.db,
                demoBackends: demoBackends,
                controller: controller.map { ($0, store) }
            )
        }
    }
}

/// Options of the long-running commands.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "Event loop threads; default one per core.")
    var workers: Int = System.coreCount

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: ArgumentHelp("How long graceful shutdown waits for requests in flight.", valueName: "duration"))
    var drainTimeout: String = "20s"

    @Option(
        help: ArgumentHelp(
            "Kubeconfig for services discovered from Kubernetes; the pod's service account when omitted.",
            valueName: "file"
        )
    )
    var kubeconfig: String?

    /// The API server to discover endpoints from: `--kubeconfig`, else in-cluster.
    func kubernetesConfiguration() throws -> KubernetesClientConfiguration {
        do {
            if let kubeconfig { return try KubernetesClientConfiguration.kubeconfig(path: kubeconfig) }
            return try KubernetesClientConfiguration.inCluster()
        } catch {
            printError("\(kubeconfig == nil ? "Kubernetes" : "--kubeconfig"): \(error)")
            throw ExitCode.badInput
        }
    }

    func validate() throws {
        guard workers >= 1 else { throw ValidationError("--workers: must be at least 1, got \(workers)") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level: expected one of trace, debug, info, notice, warning, error, critical")
        }
        guard TimeSpan.parse(drainTimeout) != nil else {
            throw ValidationError("--drain-timeout: expected a duration such as 20s, got \"\(drainTimeout)\"")
        }
    }

    /// Sends logs to standard error at the chosen level; returns the process's logger.
    func bootstrapLogging(zone: String?) -> Logger {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "zoneward")
        if let zone { logger[metadataKey: "zone"] = "\(zone)" }
        return logger
    }

    /// Starts the proxy (and demo backends, and the controller) and runs until SIGTERM or SIGINT.
    func serve(
        configuration: ZonewardConfiguration,
        configurationPath: String?,
        zone: String,
        statePath: String?,
        controllerURL: String? = nil,
        controllerToken: String? = nil,
        demoBackends: Bool,
        controller: (ControllerService.Settings, StateStore)? = nil
    ) async throws {
        guard configuration.zone(named: zone) != nil else {
            printError(
                "--zone: unknown zone \"\(zone)\" (known: \(configuration.zones.map(\.name).joined(separator: ", ")))"
            )
            throw ExitCode.badInput
        }
        let usesKubernetes = configuration.services.contains { service in
            if case .kubernetes = service.discovery { return true }
            return false
        }
        let kubernetes = usesKubernetes ? try kubernetesConfiguration() : nil
        let logger = bootstrapLogging(zone: zone)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: workers)
        var timeouts = ProxyTimeouts()
        timeouts.drain = TimeSpan.parse(drainTimeout) ?? timeouts.drain
        var backends: [any Channel] = []
        do {
            if demoBackends {
                backends = try await DemoBackends.start(configuration, group: group)
                logger.info(
                    "demo backends on \(backends.compactMap { $0.localAddress?.description }.joined(separator: ", "))"
                )
            }
            let server = ProxyServer(
                settings: .init(
                    configuration: configuration,
                    configurationPath: configurationPath,
                    sourceZone: zone,
                    statePath: statePath,
                    controllerURL: controllerURL,
                    controllerToken: controllerToken,
                    timeouts: timeouts,
                    kubernetes: kubernetes
                ),
                group: group,
                metrics: ProxyMetrics(),
                logger: logger
            )
            var all: [any Service] = [server]
            if let (settings, store) = controller {
                all.append(ControllerService(settings: settings, store: store, group: group, logger: logger))
            }
            let services = ServiceGroup(
                services: all,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
            try await services.run()
        } catch {
            printError("zoneward: \(error)")
            for backend in backends { try? await backend.close() }
            try? await group.shutdownGracefully()
            throw ExitCode.failure
        }
        for backend in backends { try? await backend.close() }
        try await group.shutdownGracefully()
    }
}
