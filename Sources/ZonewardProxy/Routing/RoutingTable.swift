import Foundation
import Logging
import Synchronization
import ZonePlanner
import ZonewardModel
import ZonewardState

/// All services' routes at one moment. Immutable; replaced whole when anything changes.
public final class RoutingSnapshot: Sendable {
    public let version: Int
    public let configuration: ZonewardConfiguration
    public let sourceZone: String
    /// In `configuration.services` order.
    public let services: [ServiceRoutes]
    public let unhealthy: Set<String>
    public let ejected: Set<String>
    public let drainedZones: Set<String>

    init(
        version: Int,
        configuration: ZonewardConfiguration,
        sourceZone: String,
        services: [ServiceRoutes],
        unhealthy: Set<String>,
        ejected: Set<String>,
        drainedZones: Set<String>
    ) {
        self.version = version
        self.configuration = configuration
        self.sourceZone = sourceZone
        self.services = services
        self.unhealthy = unhealthy
        self.ejected = ejected
        self.drainedZones = drainedZones
    }

    public func routes(for service: String) -> ServiceRoutes? {
        services.first { $0.service.name == service }
    }
}

/// The proxy's routing state: configuration, endpoint health, ejections and drains, and the snapshot
/// planned from them. Every change re-plans at once and logs one line saying why.
public final class RoutingTable: Sendable {
    private struct State {
        var configuration: ZonewardConfiguration
        var endpoints: [String: UpstreamEndpoint]
        var health: [String: HealthState] = [:]
        var outliers: [String: OutlierDetector] = [:]
        var drainedZones: Set<String> = []
        var activeRegions: [String: String] = [:]
        var epochs: [String: Int64] = [:]
        /// Endpoints found by discovery, per service, beside the declared ones.
        var discovered: [String: [EndpointConfiguration]] = [:]
        /// Measured demand by service and zone (requests per second), and when it was measured.
        var measured: [String: [String: Double]] = [:]
        var measuredAt: Date?
        /// The demand each service's plan in force was made for.
        var demandInForce: [String: [String: ZoneDemand]] = [:]
        /// Request counters per service, kept across snapshots and reloads.
        var counters: [String: DemandCounter] = [:]
        var version = 0

        /// A service's endpoints: declared, then discovered.
        func endpointConfigurations(of service: ServiceConfiguration) -> [EndpointConfiguration] {
            service.endpoints + (discovered[service.name] ?? [])
        }
    }

    public let sourceZone: String
    public let metrics: ProxyMetrics
    private let logger: Logger
    private let state: Mutex<State>
    private let current: Mutex<RoutingSnapshot>
    private let published = Atomic<Int>(0)
    private let discovery = Mutex<[String: DiscoveryStatus]>([:])

    /// - Parameter sourceZone: the zone this proxy runs in; must be one of the configuration's zones.
    public init(configuration: ZonewardConfiguration, sourceZone: String, metrics: ProxyMetrics, logger: Logger) {
        self.sourceZone = sourceZone
        self.metrics = metrics
        self.logger = logger
        var initial = State(configuration: configuration, endpoints: [:])
        initial.endpoints = Self.endpoints(of: initial, reusing: [:])
        let snapshot = Self.plan(&initial, sourceZone: sourceZone, metrics: metrics, now: .now)
        metrics.publish(snapshot)
        state = Mutex(initial)
        current = Mutex(snapshot)
    }

    /// The routes in force.
    public var snapshot: RoutingSnapshot { current.withLock { $0 } }

    /// Changes whenever a new snapshot is published: the request path re-reads `snapshot` only then.
    public var version: Int { published.load(ordering: .acquiring) }

    /// Every endpoint of every service, by key.
    public var endpoints: [UpstreamEndpoint] {
        state.withLock { Array($0.endpoints.values) }.sorted { $0.key < $1.key }
    }

    /// Swaps in a new, already validated configuration; endpoints that stay keep their counters and health.
    public func replace(configuration: ZonewardConfiguration) {
        update("configuration reloaded") { state in
            state.configuration = configuration
            state.endpoints = Self.endpoints(of: state, reusing: state.endpoints)
            let keys = Set(state.endpoints.keys)
            state.health = state.health.filter { keys.contains($0.key) }
            return true
        }
    }

    /// The request counter of every service, for the demand meter.
    public var demandCounters: [String: DemandCounter] { state.withLock { $0.counters } }

    /// When the demand in force was measured; nil while plans use configured or equal demand.
    public var demandMeasuredAt: Date? { state.withLock { $0.measuredAt } }

    /// Applies measured demand (requests per second by service and zone). A service re-plans only when a
    /// zone's demand moved more than `routing.replanThreshold` from the demand its plan in force was made
    /// for; smaller moves are kept for the next re-plan, so plans do not flap on noise.
    public func applyMeasuredDemand(_ demand: [String: [String: Double]], at now: Date) {
        update("", kind: "demand") { state in
            guard state.configuration.routing.measuredDemand else { return false }
            var moves: [String] = []
            let zones = state.configuration.zones.map(\.name)
            for service in state.configuration.services {
                let rates = demand[service.name] ?? [:]
                state.measured[service.name] = rates
                let candidate = DemandResolution.resolve(zones: zones, measured: rates, configured: service.demand)
                let moved = DemandResolution.moved(
                    from: state.demandInForce[service.name] ?? [:],
                    to: candidate,
                    threshold: state.configuration.routing.replanThreshold
                )
                if !moved.isEmpty {
                    let detail = moved.map { zone in
                        let before = state.demandInForce[service.name]?[zone]?.rate ?? 0
                        return "\(zone) \(formatRate(before)) → \(formatRate(candidate[zone]?.rate ?? 0))"
                    }
                    moves.append("\(service.name) (\(detail.joined(separator: ", ")))")
                }
            }
            state.measuredAt = now
            guard !moves.isEmpty else { return false }
            logger.info("re-planned on measured demand: \(moves.joined(separator: "; "))")
            return true
        }
    }

    /// Where each service's discovery stands, for `/admin/plan`.
    public var discoveryStatus: [String: DiscoveryStatus] { discovery.withLock { $0 } }

    /// Records what a discovery source says of a service's state (synced, or stale with the reason).
    public func setDiscoveryState(_ state: String, detail: String, endpoints: Int?, for service: String, at now: Date) {
        let changed = discovery.withLock { statuses in
            var status = statuses[service] ?? DiscoveryStatus(state: state, detail: detail, since: now, endpoints: 0)
            let changed = status.state != state
            if changed { status.since = now }
            status.state = state
            status.detail = detail
            if let endpoints { status.endpoints = endpoints }
            statuses[service] = status
            return changed
        }
        if changed { metrics.setDiscoveryState(service: service, state: state) }
    }

    /// Replaces the discovered endpoints of a service with a complete new set, in one re-plan. Returns
    /// whether anything changed (the caller then restarts health checks for the new set).
    @discardableResult
    public func setDiscoveredEndpoints(_ endpoints: [EndpointConfiguration], for service: String) -> Bool {
        var changed = false
        update("discovered endpoints of \(service) changed: \(endpoints.count) endpoints") { state in
            guard state.discovered[service] != endpoints else { return false }
            state.discovered[service] = endpoints
            state.endpoints = Self.endpoints(of: state, reusing: state.endpoints)
            let keys = Set(state.endpoints.keys)
            state.health = state.health.filter { keys.contains($0.key) }
            changed = true
            return true
        }
        return changed
    }

    /// Records one active health check; re-plans when the endpoint's health changes.
    public func recordHealthCheck(_ endpoint: UpstreamEndpoint, success: Bool, detail: String) {
        update("") { state in
            guard let service = state.configuration.service(named: endpoint.service) else { return false }
            var health = state.health[endpoint.key] ?? HealthState()
            let change = health.record(success: success, thresholds: service.healthCheck)
            state.health[endpoint.key] = health
            if let change {
                logger.info(
                    "endpoint \(change ? "healthy" : "unhealthy"): \(endpoint.key) in \(endpoint.zone) (\(detail))",
                    metadata: ["upstream.address": "\(endpoint.address)", "zone.destination": "\(endpoint.zone)"]
                )
            }
            return change != nil
        }
    }

    /// Records the outcome of a real request for outlier detection. Successes cost one atomic load.
    public func recordResult(_ endpoint: UpstreamEndpoint, success: Bool, detail: @autoclosure () -> String) {
        if success {
            if endpoint.consecutiveFailures.load(ordering: .relaxed) != 0 {
                endpoint.consecutiveFailures.store(0, ordering: .relaxed)
            }
            return
        }
        let failures = endpoint.consecutiveFailures.wrappingAdd(1, ordering: .relaxed).newValue
        let threshold = state.withLock { $0.configuration.service(named: endpoint.service)?.outlierDetection }
        guard let threshold, failures >= threshold.consecutiveFailures else { return }
        endpoint.consecutiveFailures.store(0, ordering: .relaxed)
        let reason = detail()
        var ejection: Duration?
        update("") { state in
            let peers = state.endpoints.values.filter { $0.service == endpoint.service && $0.zone == endpoint.zone }
            var detector = state.outliers[endpoint.service] ?? OutlierDetector()
            let action = detector.thresholdReached(
                endpoint.key,
                zonePeers: peers.map(\.key),
                heldDown: Set(state.health.filter { !$0.value.isHealthy }.keys),
                configuration: threshold,
                at: .now
            )
            state.outliers[endpoint.service] = detector
            switch action {
            case .eject(let length):
                ejection = length
                logger.info(
                    """
                    endpoint ejected for \(TimeSpan.format(length)): \(endpoint.key) in \(endpoint.zone) \
                    after \(threshold.consecutiveFailures) consecutive failures (\(reason))
                    """
                )
                return true
            case .refusedAtLimit(let firstTime):
                guard firstTime else { return false }
                logger.info(
                    """
                    endpoint not ejected: \(endpoint.key) failed \(threshold.consecutiveFailures) times, but \
                    \(formatNumber(threshold.maxEjectedPercent))% of \(endpoint.zone) is already ejected
                    """
                )
                return false
            case .none:
                return false
            }
        }
        if let ejection {
            // Re-plan when the ejection ends.
            Task { [weak self] in
                try? await Task.sleep(for: ejection + .milliseconds(5))
                self?.update("ejection of \(endpoint.key) ended") { _ in true }
            }
        }
    }

    /// Applies active regions from the controller or the state database. An entry whose epoch is older than
    /// the one held is refused (a stale snapshot never undoes a newer failover). Returns the services whose
    /// active region changed.
    @discardableResult
    public func applyServiceStates(_ entries: [String: ControlSnapshot.ServiceEntry]) -> [String: String] {
        var changed: [String: String] = [:]
        update("") { state in
            for (service, entry) in entries {
                let held = state.epochs[service] ?? -1
                if entry.epoch < held {
                    logger.warning(
                        "refused a stale routing snapshot for \(service): epoch \(entry.epoch) is older than \(held)"
                    )
                    continue
                }
                state.epochs[service] = entry.epoch
                if state.activeRegions[service] != entry.activeRegion {
                    let before = state.activeRegions[service]
                    state.activeRegions[service] = entry.activeRegion
                    changed[service] = entry.activeRegion
                    logger.info(
                        "active region of \(service): \(before ?? "primary") → \(entry.activeRegion) (epoch \(entry.epoch))"
                    )
                }
            }
            return !changed.isEmpty
        }
        return changed
    }

    /// The epoch held for a service (-1 before any snapshot).
    public func epoch(of service: String) -> Int64 {
        state.withLock { $0.epochs[service] ?? -1 }
    }

    /// Sets the zones drained now; re-plans when they changed.
    public func setDrainedZones(_ zones: Set<String>) {
        update("") { state in
            guard state.drainedZones != zones else { return false }
            let added = zones.subtracting(state.drainedZones).sorted()
            let removed = state.drainedZones.subtracting(zones).sorted()
            state.drainedZones = zones
            var parts: [String] = []
            if !added.isEmpty { parts.append("drained \(added.joined(separator: ", "))") }
            if !removed.isEmpty { parts.append("undrained \(removed.joined(separator: ", "))") }
            logger.info("zone drains changed: \(parts.joined(separator: "; "))")
            return true
        }
    }

    /// Runs `change` on the state; when it returns true, re-plans and publishes a new snapshot, counted in
    /// `zoneward_replans_total{reason=kind}` (`topology`: endpoints, health, drains, configuration; `demand`).
    private func update(_ reason: String, kind: String = "topology", _ change: (inout State) -> Bool) {
        let snapshot: RoutingSnapshot? = state.withLock { state in
            guard change(&state) else { return nil }
            return Self.plan(&state, sourceZone: sourceZone, metrics: metrics, now: .now)
        }
        guard let snapshot else { return }
        current.withLock { $0 = snapshot }
        published.wrappingAdd(1, ordering: .releasing)
        metrics.publish(snapshot)
        metrics.replans(kind).increment()
        if !reason.isEmpty { logger.info("re-planned: \(reason)") }
        for routes in snapshot.services {
            logger.debug(
                "plan \(routes.service.name): \(routes.condition.rawValue), cross-zone \(routes.plan.crossZoneFraction)"
            )
        }
    }

    private static func endpoints(
        of state: State,
        reusing existing: [String: UpstreamEndpoint]
    ) -> [String: UpstreamEndpoint] {
        var endpoints: [String: UpstreamEndpoint] = [:]
        for service in state.configuration.services {
            // A CA file that cannot be loaded makes every connection fail, which health checks then show.
            let tls = service.upstreamTLS.flatMap { try? UpstreamTLS.make($0) }
            for endpointConfiguration in state.endpointConfigurations(of: service) {
                let endpoint = UpstreamEndpoint(
                    service: service.name,
                    configuration: endpointConfiguration,
                    tls: tls,
                    timeouts: service.timeouts
                )
                if let old = existing[endpoint.key], old.zone == endpoint.zone, old.weight == endpoint.weight,
                    old.tls?.configuration == endpoint.tls?.configuration, old.timeouts == endpoint.timeouts
                {
                    endpoints[endpoint.key] = old
                } else {
                    endpoints[endpoint.key] = endpoint
                }
            }
        }
        return endpoints
    }

    /// Plans every service from the state.
    private static func plan(
        _ state: inout State,
        sourceZone: String,
        metrics: ProxyMetrics,
        now: ContinuousClock.Instant
    ) -> RoutingSnapshot {
        state.version += 1
        let configuration = state.configuration
        let unhealthy = Set(state.health.filter { !$0.value.isHealthy }.keys)
        var ejected: Set<String> = []
        for detector in state.outliers.values { ejected.formUnion(detector.ejected(at: now)) }
        let zoneIndex = Dictionary(uniqueKeysWithValues: configuration.zones.enumerated().map { ($1.name, $0) })
        let zoneNames = configuration.zones.map(\.name)
        let source = zoneIndex[sourceZone] ?? 0
        var services: [ServiceRoutes] = []
        for service in configuration.services {
            let all = state.endpointConfigurations(of: service).compactMap {
                state.endpoints["\(service.name)/\($0.address)"]
            }
            let active = state.activeRegions[service.name] ?? service.primaryRegion
            let regionOf = Dictionary(uniqueKeysWithValues: configuration.zones.map { ($0.name, $0.region) })
            func grouped(_ endpoints: [UpstreamEndpoint]) -> [[UpstreamEndpoint]] {
                var byZone = [[UpstreamEndpoint]](repeating: [], count: configuration.zones.count)
                for endpoint in endpoints { byZone[zoneIndex[endpoint.zone] ?? 0].append(endpoint) }
                return byZone
            }
            // What routing allows at all: undrained zones, and only the active region for an
            // `activeRegion` service (the others may be fenced). Panic never widens beyond this.
            let allowed = all.filter { endpoint in
                endpoint.weight > 0 && !state.drainedZones.contains(endpoint.zone)
                    && (service.routing != .activeRegion || regionOf[endpoint.zone] == active)
            }
            let eligible = allowed.filter { !unhealthy.contains($0.key) && !ejected.contains($0.key) }
            let demand = DemandResolution.resolve(
                zones: zoneNames,
                measured: state.measured[service.name] ?? [:],
                configured: service.demand
            )
            state.demandInForce[service.name] = demand
            let counter = state.counters[service.name] ?? DemandCounter()
            state.counters[service.name] = counter
            let drainedZones = state.drainedZones
            /// The problem of routing this service's demand to `endpoints` (their weights are the capacity).
            func problemFor(_ endpoints: [UpstreamEndpoint]) -> PlanningProblem {
                PlanningProblem(
                    configuration: configuration,
                    service: service,
                    capacity: endpoints.reduce(into: [String: Double]()) { $0[$1.zone, default: 0] += $1.weight },
                    demand: demand.mapValues(\.rate),
                    drainedZones: drainedZones,
                    activeRegion: active
                )
            }
            var chosen = eligible
            var problem = problemFor(eligible)
            let panic = problem.totalCapacity <= 0
            if panic {
                // Panic: no healthy capacity where routing allows. Route to every endpoint routing allows,
                // healthy or not, rather than drop traffic; with none there, requests get 503 no-capacity.
                chosen = allowed
                problem = problemFor(allowed)
            }
            let plan = ZonePlanner.plan(problem)
            let condition: RoutingCondition
            if panic {
                condition = chosen.isEmpty ? .unavailable : .panic
            } else {
                let drainsMatter = all.contains { drainedZones.contains($0.zone) }
                condition = drainsMatter ? .draining : (plan.state == .spilling ? .spilling : .local)
            }
            services.append(
                ServiceRoutes(
                    service: service,
                    problem: problem,
                    plan: plan,
                    envoy: EnvoyBaseline.plan(problem),
                    condition: condition,
                    sourceZone: source,
                    eligible: grouped(chosen),
                    allEndpoints: all,
                    demand: demand,
                    demandCounter: counter,
                    metrics: metrics.serviceMetrics(
                        service: service.name,
                        sourceZone: sourceZone,
                        zones: configuration.zones.map(\.name)
                    )
                )
            )
        }
        return RoutingSnapshot(
            version: state.version,
            configuration: configuration,
            sourceZone: sourceZone,
            services: services,
            unhealthy: unhealthy,
            ejected: ejected,
            drainedZones: state.drainedZones
        )
    }
}

/// A rate for a log line: three significant digits.
func formatRate(_ rate: Double) -> String {
    rate >= 100 ? String(Int(rate.rounded())) : String(format: "%.3g", rate)
}

/// Where a service's endpoint discovery stands.
public struct DiscoveryStatus: Sendable, Encodable, Equatable {
    /// `synced`, or `stale` (the source cannot be read; the last known endpoints stay in force).
    public var state: String
    /// Why stale, or which endpoints were left out and why.
    public var detail: String
    /// Since when in this state.
    public var since: Date
    /// Endpoints in the last set.
    public var endpoints: Int
}
