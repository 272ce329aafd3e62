import ZonePlanner
import ZonewardModel

/// Why zone routing is in its current state, as the `zoneward_routing_state` gauge reports it.
public enum RoutingCondition: String, Sendable, CaseIterable {
    /// Every request stays in its zone.
    case local
    /// Some requests cross zones because a zone has less capacity than its demand.
    case spilling
    /// A zone the service has endpoints in is drained.
    case draining
    /// No healthy capacity where routing allows: every endpoint routing allows (undrained zones, the active
    /// region) is used regardless of health.
    case panic
    /// No endpoint at all where routing allows: requests get 503 with `X-Zoneward-Error: no-capacity`.
    case unavailable
}

/// One service's routing, as of one snapshot: the plan's row for the proxy's own zone and the endpoints
/// eligible in each zone. Immutable; the request path picks from it without locks.
public final class ServiceRoutes: Sendable {
    public let service: ServiceConfiguration
    public let problem: PlanningProblem
    public let plan: ZonePlan
    public let envoy: ZonePlan
    public let condition: RoutingCondition
    /// Index of the proxy's own zone in `problem.zones`.
    public let sourceZone: Int
    /// Cumulative probabilities of the source zone's row.
    let cumulativeRow: [Double]
    /// Eligible endpoints per zone, in `problem.zones` order, with cumulative weights for weighted choice.
    let endpointsByZone: [[UpstreamEndpoint]]
    let cumulativeWeights: [[Double]]
    /// Every endpoint, for display.
    public let allEndpoints: [UpstreamEndpoint]
    /// Endpoint keys that are eligible now.
    public let eligibleKeys: Set<String>
    /// The demand this plan was made for, per zone, with where it came from.
    public let demand: [String: ZoneDemand]
    /// Counts the requests that start here (the demand meter reads it).
    let demandCounter: DemandCounter
    let metrics: ServiceMetrics
    /// Index of each zone by name, for metrics.
    let zoneIndex: [String: Int]

    init(
        service: ServiceConfiguration,
        problem: PlanningProblem,
        plan: ZonePlan,
        envoy: ZonePlan,
        condition: RoutingCondition,
        sourceZone: Int,
        eligible: [[UpstreamEndpoint]],
        allEndpoints: [UpstreamEndpoint],
        demand: [String: ZoneDemand] = [:],
        demandCounter: DemandCounter = DemandCounter(),
        metrics: ServiceMetrics
    ) {
        self.demand = demand
        self.demandCounter = demandCounter
        self.metrics = metrics
        zoneIndex = Dictionary(uniqueKeysWithValues: problem.zones.enumerated().map { ($1.name, $0) })
        self.service = service
        self.problem = problem
        self.plan = plan
        self.envoy = envoy
        self.condition = condition
        self.sourceZone = sourceZone
        var running = 0.0
        cumulativeRow = (0..<plan.count).map { t in
            running += plan.route(from: sourceZone, to: t)
            return running
        }
        endpointsByZone = eligible
        cumulativeWeights = eligible.map { endpoints in
            var total = 0.0
            return endpoints.map { endpoint in
                total += max(endpoint.weight, 0)
                return total
            }
        }
        self.allEndpoints = allEndpoints
        eligibleKeys = Set(eligible.joined().map(\.key))
    }

    /// The zone a request goes to, drawn from the plan's row for the proxy's zone.
    func pickZone(_ random: inout BalancerRandom) -> Int {
        let draw = random.unit() * (cumulativeRow.last ?? 1)
        for (zone, bound) in cumulativeRow.enumerated() where draw < bound && !endpointsByZone[zone].isEmpty {
            return zone
        }
        // Rounding at the top of the row, or a zone emptied since: the most likely zone with endpoints.
        var best = -1
        for zone in cumulativeRow.indices where !endpointsByZone[zone].isEmpty {
            if best < 0 || plan.route(from: sourceZone, to: zone) > plan.route(from: sourceZone, to: best) {
                best = zone
            }
        }
        return best
    }

    /// Picks an endpoint: a zone by the plan, then power of two choices on outstanding requests ÷ weight.
    ///
    /// - Parameter excluding: endpoints already tried for this request (a retry goes elsewhere).
    func pick(_ random: inout BalancerRandom, excluding: [UpstreamEndpoint] = []) -> UpstreamEndpoint? {
        pickWithZone(&random, excluding: excluding)?.endpoint
    }

    /// As `pick`, with the index of the endpoint's zone (in `problem.zones`, as the metrics count it): the
    /// request path then never looks the zone up by name (two string-keyed lookups per request).
    func pickWithZone(
        _ random: inout BalancerRandom,
        excluding: [UpstreamEndpoint] = []
    ) -> (endpoint: UpstreamEndpoint, zone: Int)? {
        let zone = pickZone(&random)
        guard zone >= 0 else { return nil }
        if let endpoint = twoChoices(in: zone, &random, excluding: excluding) {
            return (endpoint, zone)
        }
        // Everything in that zone was tried: the next zones by the plan's preference, then any zone.
        let order = cumulativeRow.indices.sorted {
            plan.route(from: sourceZone, to: $0) > plan.route(from: sourceZone, to: $1)
        }
        for other in order where other != zone {
            if let endpoint = twoChoices(in: other, &random, excluding: excluding) { return (endpoint, other) }
        }
        return nil
    }

    private func twoChoices(
        in zone: Int,
        _ random: inout BalancerRandom,
        excluding: [UpstreamEndpoint]
    ) -> UpstreamEndpoint? {
        let endpoints = endpointsByZone[zone]
        if excluding.isEmpty {
            switch endpoints.count {
            case 0: return nil
            case 1: return endpoints[0]
            default:
                let first = weightedChoice(zone, &random)
                var second = weightedChoice(zone, &random)
                if second === first { second = weightedChoice(zone, &random) }
                return lessLoaded(first, second)
            }
        }
        let candidates = endpoints.filter { candidate in !excluding.contains { $0 === candidate } }
        guard !candidates.isEmpty else { return nil }
        if candidates.count == 1 { return candidates[0] }
        let first = candidates[Int(random.next() % UInt64(candidates.count))]
        let second = candidates[Int(random.next() % UInt64(candidates.count))]
        return lessLoaded(first, second)
    }

    private func weightedChoice(_ zone: Int, _ random: inout BalancerRandom) -> UpstreamEndpoint {
        let weights = cumulativeWeights[zone]
        let endpoints = endpointsByZone[zone]
        guard let total = weights.last, total > 0 else {
            return endpoints[Int(random.next() % UInt64(endpoints.count))]
        }
        let draw = random.unit() * total
        for (index, bound) in weights.enumerated() where draw < bound {
            return endpoints[index]
        }
        return endpoints[endpoints.count - 1]
    }

    private func lessLoaded(_ a: UpstreamEndpoint, _ b: UpstreamEndpoint) -> UpstreamEndpoint {
        // Ties go to the first draw, which was weighted: idle endpoints share traffic by weight.
        let loadA = Double(a.outstanding.load(ordering: .relaxed)) / max(a.weight, .leastNormalMagnitude)
        let loadB = Double(b.outstanding.load(ordering: .relaxed)) / max(b.weight, .leastNormalMagnitude)
        return loadB < loadA ? b : a
    }
}
