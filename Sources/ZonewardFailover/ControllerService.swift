import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import ZonewardModel
import ZonewardState

/// The control plane: probes every failover service's regions, fails over automatically when the guards
/// allow, resumes interrupted operations, and serves the HTTP API proxies and operators use.
public final class ControllerService: Service, Sendable {
    public struct Settings: Sendable {
        public var configuration: ZonewardConfiguration
        public var listen: HostPort
        /// The bearer token every request but `/healthz` must carry: it may do everything.
        public var token: String
        /// Tokens that may do only part: `read` (snapshots, status, operations), `report` (read, and demand
        /// reports: what a proxy needs), `operate` (read, and failovers, drains, resumes).
        public var scopedTokens: [TokenScope: String] = [:]
        /// How often the state database is looked at for changes (drains and failovers made by the CLI).
        public var pollInterval: Duration
        /// Prometheus text for `/metrics` (backup metrics), when there is any.
        public var metrics: (@Sendable () -> String)?

        public init(
            configuration: ZonewardConfiguration,
            listen: HostPort,
            token: String,
            pollInterval: Duration = .milliseconds(200)
        ) {
            self.configuration = configuration
            self.listen = listen
            self.token = token
            self.pollInterval = pollInterval
        }
    }

    let settings: Settings
    let store: StateStore
    let coordinator: FailoverCoordinator
    let logger: Logger
    let group: any EventLoopGroup
    let broadcaster = SnapshotBroadcaster(now: Date())
    /// The proxies' demand reports, published in the snapshot.
    let demand: DemandAggregator
    /// Why automatic failover did not fire, per service, to log only changes.
    private let holds = Mutex<[String: String]>([:])
    /// Operations running in this process.
    private let running = Mutex<Set<Int64>>([])
    /// Operations the API started or resumed, run inside `run()` so that shutdown cancels them.
    private let launches = AsyncStream.makeStream(of: Int64.self)

    public init(settings: Settings, store: StateStore, group: any EventLoopGroup, logger: Logger) {
        self.settings = settings
        self.store = store
        self.group = group
        self.logger = logger
        self.demand = DemandAggregator(window: settings.configuration.routing.demandWindow)
        self.coordinator = FailoverCoordinator(store: store, configuration: settings.configuration, logger: logger)
    }

    public func run() async throws {
        try await run(onServerRunning: { _ in })
    }

    /// Runs until graceful shutdown; `onServerRunning` gets the API's listening channel (tests bind port 0).
    public func run(onServerRunning: @escaping @Sendable (any Channel) async -> Void) async throws {
        let logger = self.logger
        let app = makeApplication { channel in
            logger.info("zoneward controller listening on \(channel.localAddress.map { "\($0)" } ?? "?")")
            await onServerRunning(channel)
        }
        try await withThrowingDiscardingTaskGroup { tasks in
            tasks.addTask { await self.runBackground() }
            tasks.addTask {
                // Long polls end at once on shutdown, so the server's drain does not wait out their `wait`.
                try? await gracefulShutdown()
                await self.broadcaster.close()
            }
            try await app.run()
            tasks.cancelAll()
        }
        logger.info("zoneward controller stopped")
    }

    /// Resumes interrupted operations, follows the state database and probes regions until cancelled.
    private func runBackground() async {
        await withDiscardingTaskGroup { tasks in
            // An operation interrupted by a crash is resumed first.
            for operation in (try? store.unfinishedOperations()) ?? [] {
                if let id = operation.id {
                    logger.info("resuming failover \(id) of \(operation.service) at \(operation.state.rawValue)")
                    tasks.addTask { await self.execute(id) }
                }
            }
            tasks.addTask { await self.followState() }
            for service in settings.configuration.services {
                guard let failover = service.failover else { continue }
                for (region, probe) in failover.probes {
                    tasks.addTask { await self.probeLoop(service: service, region: region, probe: probe) }
                }
            }
            // Ends when this task is cancelled (shutdown); the operations then stop resumable.
            for await id in launches.stream {
                tasks.addTask { await self.execute(id) }
            }
        }
    }

    /// Runs an operation in the background of `run()`.
    func launch(_ id: Int64) {
        launches.continuation.yield(id)
    }

    /// Runs an operation unless this process already runs it.
    func execute(_ id: Int64) async {
        guard running.withLock({ $0.insert(id).inserted }) else { return }
        defer { _ = running.withLock { $0.remove(id) } }
        do {
            let operation = try await coordinator.run(id)
            logger.info("failover \(id) of \(operation.service) ended \(operation.state.rawValue)")
        } catch is CancellationError {
            logger.notice("failover \(id) interrupted by shutdown; it resumes when the controller starts again")
        } catch {
            logger.error("failover \(id): \(error)")
        }
    }

    // MARK: Probing and automatic failover

    private func probeLoop(service: ServiceConfiguration, region: String, probe: ProbeConfiguration) async {
        var tracker = RegionHealthTracker()
        while !Task.isCancelled {
            let started = ContinuousClock.now
            let (up, detail) = await RegionProbe.check(probe)
            let change = tracker.record(up: up, probe: probe)
            if let change {
                logger.info("region \(change ? "up" : "down"): \(service.name)/\(region) (\(detail))")
            }
            var lag: Double?
            let active = (try? coordinator.activeRegion(of: service).region) ?? service.primaryRegion
            if region != active, let source = service.failover?.lag, tracker.isUp {
                lag = try? await RegionProbe.lag(source, region: region, timeout: probe.timeout + .seconds(2))
            }
            do {
                try store.recordRegionHealth(
                    service: service.name,
                    region: region,
                    up: tracker.isUp,
                    lagSeconds: lag,
                    detail: detail,
                    at: Date()
                )
            } catch {
                logger.warning("cannot record the health of \(service.name)/\(region): \(error)")
            }
            if region == active, !tracker.isUp, service.failover?.mode == .automatic {
                await considerFailover(service)
            }
            let elapsed = ContinuousClock.now - started
            if elapsed < probe.interval { try? await Task.sleep(for: probe.interval - elapsed) }
        }
    }

    /// The primary is down: fail over to the first healthy standby if every guard allows, else say why not.
    private func considerFailover(_ service: ServiceConfiguration) async {
        do {
            guard try store.unfinishedOperations().allSatisfy({ $0.service != service.name }) else { return }
            let (active, epoch) = try coordinator.activeRegion(of: service)
            let health = Dictionary(
                uniqueKeysWithValues: try store.regionHealth(service: service.name).map { ($0.region, $0) }
            )
            guard let candidate = FailoverGuards.candidate(for: service, activeRegion: active, health: health) else {
                hold(service.name, "no standby region is up")
                return
            }
            let results = try await coordinator.guards(
                service: service,
                target: candidate,
                force: false,
                automatic: true
            )
            let refused = results.filter { !$0.passed }
            guard refused.isEmpty else {
                hold(service.name, refused.map { "\($0.name): \($0.detail)" }.joined(separator: "; "))
                return
            }
            let operation = try store.planOperation(
                service: service.name,
                kind: .failover,
                from: active,
                to: candidate,
                epochBefore: epoch,
                forced: false,
                actor: "controller",
                reason: "automatic: \(active) is down",
                at: Date()
            )
            logger.notice("automatic failover \(operation.id ?? 0): \(service.name) \(active) → \(candidate)")
            if let id = operation.id { await execute(id) }
        } catch {
            logger.error("automatic failover of \(service.name): \(error)")
        }
    }

    /// Records why automatic failover did not fire: logged and written to the event log when it changes.
    private func hold(_ service: String, _ reason: String) {
        let changed = holds.withLock { holds in
            defer { holds[service] = reason }
            return holds[service] != reason
        }
        guard changed else { return }
        logger.warning("automatic failover of \(service) held: \(reason)")
        try? store.recordEvent(
            kind: "failover.held",
            subject: service,
            actor: "controller",
            detail: ["reason": reason],
            at: Date()
        )
    }

    // MARK: Snapshot

    /// Watches the state database; publishes a new snapshot version whenever its content changes.
    private func followState() async {
        while !Task.isCancelled {
            let now = Date()
            if var snapshot = try? ControlSnapshot.read(from: store, at: now) {
                snapshot.demand = demand.demand(at: now)
                snapshot.demandAt = demand.newestReport(at: now)
                await broadcaster.publish(snapshot)
            }
            try? await Task.sleep(for: settings.pollInterval)
        }
    }
}

/// Holds the latest snapshot and wakes long-polls when it changes.
///
/// Versions are numbered per boot: `boot` is new for every process, and the first version is taken from the
/// wall clock at start (milliseconds since 1970), so a restarted controller's versions are higher than its
/// predecessor's while the clock is sane, and a follower that names another boot is answered at once anyway.
actor SnapshotBroadcaster {
    nonisolated let boot: String
    private let firstVersion: Int
    private var current: ControlSnapshot
    private var published = false
    private var waiters: [UUID: CheckedContinuation<Void, Never>] = [:]
    private var closed = false

    init(boot: String = UUID().uuidString.lowercased(), firstVersion: Int) {
        self.boot = boot
        self.firstVersion = max(1, firstVersion)
        current = ControlSnapshot(version: 0, boot: boot, services: [:], drainedZones: [])
    }

    /// A broadcaster whose first version is now in milliseconds since 1970.
    init(now: Date) {
        self.init(firstVersion: Int(now.timeIntervalSince1970 * 1000))
    }

    func publish(_ content: ControlSnapshot) {
        guard !published || !content.sameContent(as: current) else { return }
        var next = content
        next.version = published ? current.version + 1 : firstVersion
        next.boot = boot
        published = true
        current = next
        for waiter in waiters.values { waiter.resume() }
        waiters = [:]
    }

    /// The snapshot once its version is greater than `after`, or the current one after `wait`. A follower
    /// whose `after` was numbered by another boot gets the current snapshot at once.
    func snapshot(after: Int, boot: String? = nil, wait: Duration) async -> ControlSnapshot {
        let otherBoot = boot.map { $0 != self.boot } ?? false
        if published, otherBoot || current.version > after { return current }
        if wait <= .zero || closed { return current }
        let id = UUID()
        let timeout = Task {
            try? await Task.sleep(for: wait)
            self.wake(id)
        }
        await withCheckedContinuation { continuation in
            waiters[id] = continuation
        }
        timeout.cancel()
        return current
    }

    /// Answers every long poll now and every later one at once: the controller is shutting down.
    func close() {
        closed = true
        for waiter in waiters.values { waiter.resume() }
        waiters = [:]
    }

    private func wake(_ id: UUID) {
        waiters.removeValue(forKey: id)?.resume()
    }
}
