/// Why zone routing is in its current state.
public enum RoutingState: String, Sendable, Codable, CaseIterable {
    /// Every zone serves its own demand.
    case local
    /// Some demand crosses zones because a zone has less capacity than its share.
    case spilling
    /// No zone has capacity: route to every endpoint rather than drop traffic.
    case panic
}

/// A routing plan: how much traffic from each zone each zone serves, and what that costs.
public struct ZonePlan: Sendable, Equatable {
    public var zoneNames: [String]
    /// `flow[s * n + t]`: traffic from zone s served in zone t.
    public var flow: [Double]
    /// `routes[s * n + t]`: the probability that a request from zone s goes to zone t; each row sums to 1.
    public var routes: [Double]
    /// Traffic served by each zone.
    public var load: [Double]
    /// The most each zone may serve: (1 + α) · D · c_t / C.
    public var bound: [Double]
    /// Σ cost · flow.
    public var objective: Double
    /// The share of all demand served outside its zone.
    public var crossZoneFraction: Double
    /// The share of all demand served outside its region.
    public var crossRegionFraction: Double
    /// The largest load ÷ fair share over zones with capacity (1 is perfectly balanced).
    public var maxLoadFactor: Double
    public var state: RoutingState

    public var count: Int { zoneNames.count }

    public func route(from source: Int, to destination: Int) -> Double {
        routes[source * zoneNames.count + destination]
    }

    public func flow(from source: Int, to destination: Int) -> Double {
        flow[source * zoneNames.count + destination]
    }
}

extension ZonePlan {
    /// Fills in the figures derived from a flow and its routing rows.
    init(problem: PlanningProblem, flow: [Double], routes: [Double], panic: Bool = false) {
        let n = problem.count
        var load = [Double](repeating: 0, count: n)
        var objective = 0.0
        var crossZone = 0.0
        var crossRegion = 0.0
        for s in 0..<n {
            for t in 0..<n {
                let amount = flow[s * n + t]
                guard amount > 0 else { continue }
                load[t] += amount
                objective += amount * problem.cost(s, t)
                if s != t { crossZone += amount }
                if problem.zones[s].region != problem.zones[t].region { crossRegion += amount }
            }
        }
        let demand = problem.totalDemand
        let capacity = problem.totalCapacity
        var maxLoadFactor = 0.0
        if demand > 0, capacity > 0 {
            // load ÷ fair share as (share of demand) ÷ (share of capacity): two ratios of like quantities,
            // so tiny or huge inputs neither underflow nor overflow. A capacity share that underflows to 0 has
            // a bound of 0 and so no load.
            for t in 0..<n where problem.zones[t].capacity > 0 {
                let capacityShare = problem.zones[t].capacity / capacity
                guard capacityShare > 0 else { continue }
                maxLoadFactor = max(maxLoadFactor, (load[t] / demand) / capacityShare)
            }
        }
        self.init(
            zoneNames: problem.zones.map(\.name),
            flow: flow,
            routes: routes,
            load: load,
            bound: (0..<n).map(problem.bound),
            objective: objective,
            crossZoneFraction: demand > 0 ? crossZone / demand : 0,
            crossRegionFraction: demand > 0 ? crossRegion / demand : 0,
            maxLoadFactor: maxLoadFactor,
            state: panic ? .panic : (crossZone > 0 ? .spilling : .local)
        )
    }
}
