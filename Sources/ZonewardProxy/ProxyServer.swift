import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization
import UnixSignals
import ZonewardAPI
import ZonewardDiscovery
import ZonewardModel
import ZonewardState

/// The in-cluster proxy as a service: one listener per configured service, the admin listener, active
/// health checks, zone drains followed from SQLite, configuration reload on SIGHUP or file change, and a
/// graceful shutdown that stops accepting, lets requests in flight finish, then exits.
public final class ProxyServer: Service, Sendable {
    /// Everything the proxy is started with.
    public struct Settings: Sendable {
        public var configuration: ZonewardConfiguration
        /// The file to reload from; nil for an embedded configuration.
        public var configurationPath: String?
        /// The zone this proxy runs in.
        public var sourceZone: String
        /// The state database to read zone drains and active regions from; nil to ignore it.
        public var statePath: String?
        /// The controllers to follow (routing snapshots by long poll), comma-separated, and their bearer token.
        public var controllerURL: String?
        public var controllerToken: String?
        public var timeouts: ProxyTimeouts
        /// How often the configuration file and the drains are looked at.
        public var pollInterval: Duration
        /// The API server for services discovered from Kubernetes; nil when none is.
        public var kubernetes: KubernetesClientConfiguration?

        public init(
            configuration: ZonewardConfiguration,
            configurationPath: String?,
            sourceZone: String,
            statePath: String?,
            controllerURL: String? = nil,
            controllerToken: String? = nil,
            timeouts: ProxyTimeouts = .init(),
            pollInterval: Duration = .milliseconds(500),
            kubernetes: KubernetesClientConfiguration? = nil
        ) {
            self.kubernetes = kubernetes
            self.controllerURL = controllerURL
            self.controllerToken = controllerToken
            self.configuration = configuration
            self.configurationPath = configurationPath
            self.sourceZone = sourceZone
            self.statePath = statePath
            self.timeouts = timeouts
            self.pollInterval = pollInterval
        }
    }

    public let table: RoutingTable
    public let readiness = Readiness()
    private let settings: Settings
    private let group: any EventLoopGroup
    private let logger: Logger
    private let prober: HealthProber
    private let connections = ConnectionRegistry()
    private let tcpConnections = TCPConnectionRegistry()
    private let pools: UpstreamPools
    private let h2Pools: H2UpstreamPools
    /// HTTP/1.1 connections for HTTP/2 client streams to `http1` services.
    private let bridgePools: H1BridgePools
    /// The HTTP client of the controller's API, shut down with the proxy.
    private let http: HTTPClient
    /// The client of the controllers' API (snapshots and demand reports); nil without `controllerURL`.
    private let controller: ControllerClient?
    /// The configuration file's bytes at the last reload attempt: SIGHUP and the file watcher both see one
    /// edit, and it must be applied (or refused and counted) once.
    private let lastAttempt: Mutex<Data?>

    public init(settings: Settings, group: any EventLoopGroup, metrics: ProxyMetrics, logger: Logger) {
        self.settings = settings
        self.group = group
        self.logger = logger
        self.table = RoutingTable(
            configuration: settings.configuration,
            sourceZone: settings.sourceZone,
            metrics: metrics,
            logger: logger
        )
        self.prober = HealthProber(table: table, group: group)
        self.pools = UpstreamPools(timeouts: settings.timeouts)
        self.h2Pools = H2UpstreamPools(timeouts: settings.timeouts)
        self.bridgePools = H1BridgePools(timeouts: settings.timeouts)
        let http = ControllerClient.makeHTTPClient(eventLoopGroup: group)
        self.http = http
        self.controller = settings.controllerURL.flatMap {
            try? ControllerClient(list: $0, token: settings.controllerToken ?? "", http: http)
        }
        self.lastAttempt = Mutex(settings.configurationPath.flatMap { FileManager.default.contents(atPath: $0) })
    }

    public func run() async throws {
        let configuration = settings.configuration
        var listeners: [any Channel] = []
        // Admin listeners stay open through the drain, so probes see the proxy turn not-ready.
        var adminListeners: [any Channel] = []
        do {
            for service in configuration.services {
                listeners.append(try await bind(service))
            }
            adminListeners.append(try await bindAdmin(configuration.admin.listen, probesOnly: false))
            if let probes = configuration.admin.probes {
                adminListeners.append(try await bindAdmin(probes, probesOnly: true))
            }
        } catch {
            for listener in listeners + adminListeners { try? await listener.close() }
            throw error
        }
        prober.start(configuration)
        readiness.set(true)
        let summary = configuration.services.map { service in
            let upstream = service.upstreamProtocol == .http2 ? ", HTTP/2 upstream" : ""
            return "\(service.name) on \(service.listen) (\(service.wireProtocol.rawValue)\(upstream))"
        }
        logger.info(
            """
            zoneward proxy ready in zone \(settings.sourceZone): \(summary.joined(separator: ", ")); \
            admin on \(configuration.admin.listen)
            """
        )
        await withDiscardingTaskGroup { tasks in
            tasks.addTask { await self.followState() }
            tasks.addTask { await self.followController() }
            tasks.addTask { await self.watchConfigurationFile() }
            tasks.addTask { await self.reloadOnHangup() }
            tasks.addTask { await self.followDiscovery() }
            tasks.addTask { await self.meterDemand() }
            try? await gracefulShutdown()
            tasks.cancelAll()
        }
        await shutDown(listeners, admin: adminListeners)
        try? await http.shutdown()
    }

    /// Stop accepting, let requests in flight finish (up to the drain timeout), then close the rest.
    private func shutDown(_ listeners: [any Channel], admin: [any Channel]) async {
        readiness.set(false)
        let inFlight = connections.count
        logger.info("shutting down: no new connections; draining \(inFlight) open connections")
        for listener in listeners { try? await listener.close() }
        connections.quiesceAll()
        pools.closeIdle()
        h2Pools.closeIdle()
        bridgePools.closeIdle()
        let deadline = ContinuousClock.now + settings.timeouts.drain
        while connections.count > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let left = connections.count
        if left > 0 { logger.warning("drain timeout: closing \(left) connections still open") }
        connections.closeAll()
        prober.stop()
        for listener in admin { try? await listener.close() }
        logger.info("zoneward proxy stopped")
    }

    private func bind(_ service: ServiceConfiguration) async throws -> any Channel {
        let table = self.table
        let pools = self.pools
        let connections = self.connections
        let tcpConnections = self.tcpConnections
        let maxRetries = settings.timeouts.maxRetries
        let h2Pools = self.h2Pools
        let bridgePools = self.bridgePools
        let drain = settings.timeouts.drain
        // An `http` listener speaks HTTP/1.1 and HTTP/2 (h2c with prior knowledge, or h2 by ALPN) whatever
        // the upstream protocol: the first bytes decide, and the sniffer leaves the pipeline at once.
        let isHTTP = service.wireProtocol == .http
        let tls = try service.tls.map { try Self.makeTLSContext($0, alpn: isHTTP ? ["h2", "http/1.1"] : []) }
        let limits = table.metrics.listenerMetrics(service: service.name)
        let open = ListenerConnections()
        let isTCP = service.wireProtocol == .tcp
        var bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
        if isTCP {
            bootstrap = bootstrap.childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelOption(.autoRead, value: false)
        }
        bootstrap = bootstrap.childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                // Beyond the listener's limit a connection is accepted and closed at once: the kernel's
                // backlog never fills, and the refusal is counted.
                guard open.admit(limit: service.maxConnections) else {
                    limits.refused.increment()
                    channel.close(promise: nil)
                    return
                }
                limits.open.increment()
                channel.closeFuture.whenComplete { _ in
                    open.release()
                    limits.open.decrement()
                }
                connections.add(channel)
                let handlers = channel.pipeline.syncOperations
                if let tls {
                    let (deadline, observer) = TLSHandshakeDeadlineHandler.pair(
                        timeout: TimeAmount(service.timeouts.tlsHandshake),
                        onTimeout: { table.metrics.clientTimeouts.tlsHandshake.increment() }
                    )
                    try handlers.addHandler(deadline)
                    try handlers.addHandler(NIOSSLServerHandler(context: tls))
                    try handlers.addHandler(observer)
                }
                if isTCP {
                    try handlers.addHandler(
                        TCPProxyHandler(
                            service: service,
                            table: table,
                            maxRetries: maxRetries,
                            registry: tcpConnections
                        )
                    )
                } else {
                    let pool = pools.pool(for: channel.eventLoop)
                    let scheme = tls == nil ? "http" : "https"
                    try H2Listener.configure(
                        channel: channel,
                        service: service,
                        table: table,
                        pools: h2Pools,
                        bridgePools: bridgePools,
                        scheme: scheme,
                        maxRetries: maxRetries,
                        drain: drain
                    ) { context in
                        try context.pipeline.syncOperations.addHandler(
                            HTTPProxyHandler(service: service, table: table, pool: pool, scheme: scheme)
                        )
                    }
                }
            }
        }
        do {
            return try await bootstrap.bind(host: service.listen.host, port: service.listen.port).get()
        } catch {
            throw ProxyError.bindFailed(what: "service \(service.name)", address: service.listen, underlying: error)
        }
    }

    private func bindAdmin(_ address: HostPort, probesOnly: Bool) async throws -> any Channel {
        let table = self.table
        let readiness = self.readiness
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(
                        AdminHandler(table: table, readiness: readiness, probesOnly: probesOnly)
                    )
                }
            }
        do {
            return try await bootstrap.bind(host: address.host, port: address.port).get()
        } catch {
            throw ProxyError.bindFailed(
                what: probesOnly ? "probes listener" : "admin listener",
                address: address,
                underlying: error
            )
        }
    }

    private static func makeTLSContext(_ tls: ZonewardModel.TLSConfiguration, alpn: [String]) throws -> NIOSSLContext {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(tls.certificateFile).map {
                NIOSSLCertificateSource.certificate($0)
            }
            let key = try NIOSSLPrivateKey(file: tls.keyFile, format: .pem)
            var configuration = NIOSSL.TLSConfiguration.makeServerConfiguration(
                certificateChain: chain,
                privateKey: .privateKey(key)
            )
            configuration.applicationProtocols = alpn
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw ProxyError.tls(certificate: tls.certificateFile, key: tls.keyFile, underlying: error)
        }
    }

    // MARK: Following the state and the configuration

    /// Applies a routing snapshot: active regions (never an older epoch) and drains; closes TCP connections
    /// still open to a region that stopped being active.
    func apply(_ snapshot: ControlSnapshot) {
        let changed = table.applyServiceStates(snapshot.services)
        table.setDrainedZones(Set(snapshot.drainedZones))
        if let demand = snapshot.demand { table.applyMeasuredDemand(demand, at: Date()) }
        for (service, region) in changed {
            let closed = tcpConnections.closeOutside(service: service, activeRegion: region)
            if closed > 0 {
                logger.info("closed \(closed) connections of \(service) outside its active region \(region)")
            }
        }
    }

    /// Follows the controller by long poll; keeps the last good snapshot while it is unreachable.
    private func followController() async {
        guard let controller else {
            if let list = settings.controllerURL {
                logger.error("not following a controller: not a comma-separated list of controller URLs: \(list)")
            }
            return
        }
        var cursor = SnapshotCursor()
        var failing = false
        while !Task.isCancelled {
            do {
                let answer = try await controller.snapshot(after: cursor, wait: .seconds(30))
                let snapshot = answer.value
                if failing { logger.info("controller reachable again at \(answer.url)") }
                failing = false
                let previousBoot = cursor.boot
                cursor.advance(to: snapshot)
                if let previousBoot, previousBoot != snapshot.boot {
                    logger.info("controller restarted (boot \(snapshot.boot ?? "?")); taking its snapshot at once")
                }
                apply(snapshot)
            } catch {
                if !failing {
                    logger.warning("controller unreachable (\(error)); serving the last good snapshot")
                }
                failing = true
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Measures the demand that starts at this proxy: once a second, each service's new requests feed a
    /// moving average over `routing.demandWindow`. With a controller, the rates are reported to it every
    /// 5 s (a sixth of the window when that is shorter) and the fleet's demand comes back in the snapshot;
    /// without one, they are this zone's measured demand, and the other zones keep their configured (or
    /// equal) demand.
    private func meterDemand() async {
        let window = settings.configuration.routing.demandWindow
        let reporter = controller
        let proxy = "\(ProcessInfo.processInfo.hostName):\(settings.configuration.admin.listen.port)"
        var rates: [String: DemandRate] = [:]
        var seen: [String: Int] = [:]
        var tick = ContinuousClock.now
        var reported = tick
        var failing = false
        let reportEvery = min(.seconds(5), window / 6)
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            // Shutting down: start no request (URLSession on Linux may never answer one begun cancelled).
            if Task.isCancelled { return }
            let now = ContinuousClock.now
            for (service, counter) in table.demandCounters {
                let total = counter.total
                rates[service, default: DemandRate(window: window)].add(
                    count: total - (seen[service] ?? 0),
                    over: now - tick
                )
                seen[service] = total
            }
            tick = now
            let own = rates.mapValues(\.rate)
            guard let reporter else {
                table.applyMeasuredDemand(own.mapValues { [settings.sourceZone: $0] }, at: Date())
                continue
            }
            guard now - reported >= reportEvery else { continue }
            reported = now
            do {
                try await reporter.report(DemandReport(proxy: proxy, zone: settings.sourceZone, services: own))
                failing = false
            } catch {
                if !failing { logger.warning("cannot report demand to the controller: \(error)") }
                failing = true
            }
        }
    }

    /// Follows the endpoints of every service discovered from Kubernetes: one watcher per service, one
    /// client for all. An error keeps the last known endpoints (static stability) and marks them stale.
    private func followDiscovery() async {
        await withDiscardingTaskGroup { tasks in
            tasks.addTask { await self.followKubernetes() }
            tasks.addTask { await self.followDNS() }
        }
    }

    /// One DNS watcher per service discovered from DNS names.
    private func followDNS() async {
        let system = DNSResolver.systemServer()
        await withDiscardingTaskGroup { tasks in
            for service in settings.configuration.services {
                guard case .dns(let entries) = service.discovery else { continue }
                var resolved: [(entry: DNSDiscovery, resolver: DNSResolver)] = []
                for entry in entries {
                    guard let server = entry.resolver ?? system else {
                        logger.error("DNS discovery of \(service.name): no resolver given and none in /etc/resolv.conf")
                        continue
                    }
                    resolved.append((entry, DNSResolver(server: server, group: group)))
                }
                let watcher = DNSWatcher(service: service.name, entries: resolved, logger: logger)
                tasks.addTask { await watcher.run { update in self.apply(update) } }
            }
        }
    }

    private func followKubernetes() async {
        let configuration = settings.configuration
        let watched: [(String, KubernetesDiscovery)] = configuration.services.compactMap { service in
            if case .kubernetes(let discovery) = service.discovery { return (service.name, discovery) }
            return nil
        }
        guard !watched.isEmpty else { return }
        guard let kubernetes = settings.kubernetes else {
            logger.error(
                "services \(watched.map(\.0).joined(separator: ", ")) use Kubernetes discovery, but no API server is set"
            )
            return
        }
        let client: KubernetesClient
        do {
            client = try KubernetesClient(configuration: kubernetes, eventLoopGroup: group)
        } catch {
            logger.error("Kubernetes discovery cannot start: \(error)")
            for (service, _) in watched {
                table.setDiscoveryState("stale", detail: "\(error)", endpoints: nil, for: service, at: Date())
            }
            return
        }
        let zones = Set(configuration.zones.map(\.name))
        await withDiscardingTaskGroup { tasks in
            for (service, discovery) in watched {
                tasks.addTask {
                    let watcher = EndpointSliceWatcher(
                        service: service,
                        discovery: discovery,
                        client: client,
                        knownZones: zones,
                        logger: self.logger
                    )
                    await watcher.run { update in self.apply(update) }
                }
            }
        }
        await client.shutdown()
    }

    /// Applies one discovery update: a new endpoint set in one re-plan, and the state for `/admin/plan`.
    func apply(_ update: DiscoveryUpdate) {
        let routable = update.endpoints?.routable
        table.setDiscoveryState(
            update.state.rawValue,
            detail: update.detail,
            endpoints: routable?.count,
            for: update.service,
            at: Date()
        )
        guard let routable else { return }
        let endpoints = routable.map { EndpointConfiguration(address: $0.address, zone: $0.zone) }
        if table.setDiscoveredEndpoints(endpoints, for: update.service) {
            prober.start(table.snapshot.configuration)
        }
    }

    /// Reads drains and active regions from SQLite every poll interval, so a drain takes effect within a second.
    private func followState() async {
        guard let path = settings.statePath else { return }
        var store: StateStore?
        var warned = false
        while !Task.isCancelled {
            if store == nil {
                do {
                    store = try StateStore.open(path: path)
                } catch {
                    if !warned { logger.warning("cannot read zone drains yet: \(error)") }
                    warned = true
                }
            }
            if let store {
                do {
                    apply(try ControlSnapshot.read(from: store, at: Date()))
                } catch {
                    logger.warning("cannot read the state database: \(error)")
                }
            }
            try? await Task.sleep(for: settings.pollInterval)
        }
    }

    private func watchConfigurationFile() async {
        guard let path = settings.configurationPath else { return }
        var last = Self.modificationDate(path)
        while !Task.isCancelled {
            try? await Task.sleep(for: settings.pollInterval)
            let now = Self.modificationDate(path)
            if now != last {
                last = now
                reload(reason: "the file changed")
            }
        }
    }

    private func reloadOnHangup() async {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals {
            if Task.isCancelled { return }
            reload(reason: "SIGHUP")
        }
    }

    private static func modificationDate(_ path: String) -> Date? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
    }

    /// Loads the configuration again; an invalid file is refused, logged, counted, and the old one keeps serving.
    public func reload(reason: String) {
        guard let path = settings.configurationPath else {
            logger.info("reload requested (\(reason)), but the configuration is embedded: nothing to reload")
            return
        }
        let bytes = FileManager.default.contents(atPath: path)
        let unchanged = lastAttempt.withLock { last in
            defer { last = bytes }
            return bytes != nil && last == bytes
        }
        if unchanged {
            logger.info("reload (\(reason)): \(path) is unchanged since the last reload; nothing to do")
            return
        }
        do {
            let configuration = try ZonewardConfiguration.load(file: path)
            guard configuration.zone(named: settings.sourceZone) != nil else {
                throw ConfigurationError(
                    file: path,
                    problems: [
                        .init(path: "zones", message: "this proxy's zone \"\(settings.sourceZone)\" is not declared")
                    ]
                )
            }
            let before = table.snapshot.configuration
            // The listener's pipelines (and the bridges between protocols) are chosen at bind time.
            let listener = { (service: ServiceConfiguration) in
                "\(service.name)@\(service.listen)/\(service.wireProtocol.rawValue)/\(service.upstreamProtocol.rawValue)"
            }
            let listenersBefore = before.services.map(listener)
            let listenersAfter = configuration.services.map(listener)
            if listenersBefore != listenersAfter || before.admin != configuration.admin {
                logger.warning("reload (\(reason)): listener changes take effect at the next restart")
            }
            table.replace(configuration: configuration)
            prober.start(configuration)
            table.metrics.reloads.increment()
            logger.info("configuration reloaded from \(path) (\(reason))")
        } catch {
            table.metrics.reloadFailures.increment()
            logger.error("configuration reload refused (\(reason)); the previous configuration keeps serving")
            for line in "\(error)".split(separator: "\n") {
                logger.error("  \(line)")
            }
        }
    }
}

/// Why the proxy could not start.
public enum ProxyError: Error, CustomStringConvertible {
    case bindFailed(what: String, address: HostPort, underlying: any Error)
    case tls(certificate: String, key: String, underlying: any Error)
    case unknownZone(String, known: [String])

    public var description: String {
        switch self {
        case .bindFailed(let what, let address, let underlying):
            return "cannot listen on \(address) for \(what): \(underlying)"
        case .tls(let certificate, let key, let underlying):
            return "cannot load TLS certificate \(certificate) and key \(key): \(underlying)"
        case .unknownZone(let zone, let known):
            return "zone \"\(zone)\" is not declared in the configuration (known: \(known.joined(separator: ", ")))"
        }
    }
}
