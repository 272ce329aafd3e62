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
        /// How often a leader with a state replica checks the database for changes to ship.
        public var shipInterval: Duration = .milliseconds(200)
        /// How often a follower looks for a newer shipped copy.
        public var warmInterval: Duration = .seconds(1)

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
    /// Operations the API started or resumed, run by the leader's duties so that losing leadership or
    /// shutting down cancels them.
    /// One stream per spell of leadership: a cancelled iteration ends an AsyncStream for good, so a replica
    /// that leads again takes a new one (nil while it does not lead; operations are resumed when it does).
    private let launches = Mutex<AsyncStream<Int64>.Continuation?>(nil)
    /// Whether this replica may act, and with which term.
    public let gate: LeadershipGate
    /// How leadership is won; nil for a single replica.
    let election: (any LeaderElection)?
    /// Where the state follows the leader; nil keeps it in the local database only.
    let replica: (any StateReplica)?
    /// API writes wait here until their copy is durable.
    let shipping = StateShipping()
    /// The copy of the state this replica holds, and when it was last confirmed the newest (followers).
    let warm = Mutex<WarmCopy>(WarmCopy())

    struct WarmCopy {
        var held: ShippedState?
        var confirmedAt: ContinuousClock.Instant?
        /// When this replica last started and stopped acting as leader (wall clock, for drills and status).
        var actingSince: Date?
        var stoppedActingAt: Date?
    }

    /// A single replica: always the leader, state in its local database.
    public convenience init(settings: Settings, store: StateStore, group: any EventLoopGroup, logger: Logger) {
        self.init(
            settings: settings,
            store: store,
            group: group,
            logger: logger,
            gate: nil,
            election: nil,
            replica: nil
        )
    }

    /// A replica of an elected controller when `election` is given: it acts only while `gate` says it leads,
    /// ships its state to `replica` after each change, and keeps a warm copy from there while it follows.
    public init(
        settings: Settings,
        store: StateStore,
        group: any EventLoopGroup,
        logger: Logger,
        gate: LeadershipGate?,
        election: (any LeaderElection)?,
        replica: (any StateReplica)?
    ) {
        self.settings = settings
        self.store = store
        self.group = group
        self.logger = logger
        let runner = RunnerIdentity.make()
        let gate = gate ?? .single(me: LeaderRecord(id: runner, url: "http://\(settings.listen)"))
        self.gate = gate
        self.election = election
        self.replica = replica
        self.demand = DemandAggregator(window: settings.configuration.routing.demandWindow)
        self.coordinator = FailoverCoordinator(
            store: store,
            configuration: settings.configuration,
            logger: logger,
            runner: runner,
            gate: gate
        )
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
            tasks.addTask { await self.followState() }
            if let election {
                tasks.addTask {
                    do {
                        try await election.run(gate: self.gate)
                    } catch is CancellationError {
                    } catch {
                        logger.critical("leader election stopped: \(error)")
                        self.gate.follow(leader: nil)
                    }
                }
            }
            tasks.addTask { await self.followRoles() }
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

    /// Leads while the gate says so, follows otherwise; each change of role cancels the other's work.
    private func followRoles() async {
        if gate.isSingle {
            await leaderDuties(term: 0, sequence: ShipSequence())
            return
        }
        var current: Task<Void, Never>?
        for await role in gate.roles() {
            current?.cancel()
            await current?.value
            switch role {
            case .leader(let term):
                logger.notice("leading the controller at term \(term)")
                current = Task { await self.lead(term: term) }
            case .follower(let leader):
                logger.info("following \(leader.map { "\($0.id) at \($0.url)" } ?? "no known leader")")
                await shipping.close(NotLeaderError(leader: leader))
                current = Task { await self.keepWarm() }
            }
        }
        current?.cancel()
        await current?.value
    }

    /// The leader of `term`: restores the newest shipped state, then acts while the gate stays valid. When the
    /// gate lapses (no renewal in time) everything stops, drivers killed, until it is granted again.
    private func lead(term: Int64) async {
        var restored = replica == nil
        let sequence = ShipSequence()
        while !Task.isCancelled {
            guard gate.isLeader else {
                try? await Task.sleep(for: .milliseconds(50))
                continue
            }
            if !restored {
                do {
                    try await restoreNewest()
                    restored = true
                } catch is CancellationError {
                    return
                } catch {
                    logger.error("cannot restore the newest state copy before acting: \(error); trying again")
                    try? await Task.sleep(for: .milliseconds(500))
                    continue
                }
            }
            await shipping.close(nil)
            warm.withLock { $0.actingSince = Date() }
            let duties = Task { await self.leaderDuties(term: term, sequence: sequence) }
            // The watchdog: stop acting the moment the gate lapses, even if the election has not noticed.
            while !Task.isCancelled, gate.isLeader {
                try? await Task.sleep(for: .milliseconds(20))
            }
            // Recorded before the duties are cancelled: no write is attempted after this instant.
            warm.withLock { $0.stoppedActingAt = Date() }
            duties.cancel()
            await duties.value
            if !Task.isCancelled {
                logger.warning("leadership of term \(term) lapsed (no renewal in time); stopped acting")
                await shipping.close(NotLeaderError(leader: nil))
            }
        }
    }

    /// Restores the newest shipped copy into the local database, unless this replica holds it already.
    func restoreNewest() async throws {
        guard let replica else { return }
        // The newest copy a leader recorded in the election store (fenced by its term): the targets must hold
        // it or a newer one, else they are not yet showing everything and nothing is restored from them.
        let recorded = try? await election?.read(name: "state")
        let newest = try await replica.newest()
        if let recorded, !recorded.isEmpty, (newest?.name ?? "") < recorded {
            throw StateShippingError(
                underlying: DriverError(
                    "the targets' newest copy \(newest?.name ?? "none") is older than \(recorded), the last one a "
                        + "leader recorded"
                )
            )
        }
        guard let newest else {
            logger.notice("no shipped state yet; starting from the local database")
            warm.withLock { $0.confirmedAt = .now }
            return
        }
        if warm.withLock({ $0.held }) != newest {
            try await replica.restore(newest, into: store)
            logger.info("restored state copy \(newest)")
        }
        warm.withLock {
            $0.held = newest
            $0.confirmedAt = .now
        }
    }

    /// A follower: restores each newer shipped copy into the local database, so reads are answered from a
    /// warm copy and a takeover starts close to the newest state.
    private func keepWarm() async {
        guard replica != nil else { return }
        while !Task.isCancelled {
            do {
                try await restoreNewest()
            } catch is CancellationError {
                return
            } catch {
                logger.warning("cannot refresh the warm state copy: \(error)")
            }
            try? await Task.sleep(for: settings.warmInterval)
        }
    }

    /// Seconds since this replica last confirmed its copy is the newest; nil while it leads or is alone.
    var stateAge: Double? {
        guard !gate.isSingle, !gate.isLeader else { return nil }
        return warm.withLock { warm in warm.confirmedAt.map { (ContinuousClock.now - $0).seconds } }
    }

    /// Returns once a copy of the state holding every change committed before the call is durable on the
    /// targets (at once without a replica); throws when this replica stops leading or the ship fails.
    func durable() async throws {
        guard replica != nil else { return }
        do {
            try await shipping.durable()
        } catch let error as NotLeaderError {
            throw error
        } catch {
            throw StateShippingError(underlying: error)
        }
    }

    /// Resumes interrupted operations, ships the state, and probes regions until cancelled.
    private func leaderDuties(term: Int64, sequence: ShipSequence) async {
        // Registered before the unfinished operations are read, so none planned meanwhile is missed.
        let (stream, continuation) = AsyncStream.makeStream(of: Int64.self, bufferingPolicy: .bufferingNewest(256))
        launches.withLock { $0 = continuation }
        defer { launches.withLock { $0 = nil } }
        await withDiscardingTaskGroup { tasks in
            // An operation interrupted by a crash or by a lost leader is resumed first.
            for operation in (try? store.unfinishedOperations()) ?? [] {
                if let id = operation.id {
                    logger.info("resuming failover \(id) of \(operation.service) at \(operation.state.rawValue)")
                    tasks.addTask { await self.execute(id) }
                }
            }
            if replica != nil {
                tasks.addTask { await self.shipLoop(term: term, sequence: sequence) }
            }
            for service in settings.configuration.services {
                guard let failover = service.failover else { continue }
                for (region, probe) in failover.probes {
                    tasks.addTask { await self.probeLoop(service: service, region: region, probe: probe) }
                }
            }
            // Ends when this task is cancelled (shutdown, lost leadership); the operations then stop resumable.
            for await id in stream {
                tasks.addTask { await self.execute(id) }
            }
        }
    }

    /// Ships the database whenever it changed or an API write waits, at most one ship at a time.
    private func shipLoop(term: Int64, sequence: ShipSequence) async {
        guard let replica else { return }
        var shippedVersion: Int64?
        while !Task.isCancelled {
            await shipping.waitForRequest(timeout: settings.shipInterval)
            if Task.isCancelled { return }
            let (generation, waited) = await shipping.begin()
            let version = try? store.changeCounter()
            guard waited || version != shippedVersion || version == nil else { continue }
            let number = sequence.next()
            do {
                _ = try gate.term()
                let copy = try await replica.ship(store, term: term, sequence: number)
                // The store itself refuses the record of a copy from a deposed leader's term.
                if let election, try await !election.fencedWrite(name: "state", value: copy.name, term: term) {
                    throw NotLeaderError(leader: nil)
                }
                _ = try gate.term()
                shippedVersion = version
                warm.withLock {
                    $0.held = copy
                    $0.confirmedAt = .now
                }
                await shipping.end(generation, error: nil)
            } catch {
                if !(error is CancellationError) { logger.error("cannot ship the state: \(error)") }
                await shipping.end(generation, error: error)
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// Runs an operation in the background of `run()`.
    func launch(_ id: Int64) {
        _ = launches.withLock { $0?.yield(id) }
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
                _ = try gate.term()
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
            _ = try gate.term()
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
        guard gate.isLeader else { return }
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
