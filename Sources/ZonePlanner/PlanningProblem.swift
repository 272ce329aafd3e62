import ZonewardModel

/// The planner's input: zones with demand and capacity, the overload factor α and a cost matrix.
public struct PlanningProblem: Sendable, Equatable {
    /// The zones in a fixed order; every matrix below is indexed the same way.
    public var zones: [PlanTopology.Zone]
    /// α ≥ 0: no zone is loaded beyond (1 + α) times its fair share.
    public var overloadFactor: Double
    /// `cost[s * n + t]`: cost of serving one unit from zone s in zone t. 0 on the diagonal, ≥ 0 elsewhere.
    public var cost: [Double]

    public init(zones: [PlanTopology.Zone], overloadFactor: Double, cost: [Double]) {
        precondition(cost.count == zones.count * zones.count, "the cost matrix must be n × n")
        self.zones = zones
        self.overloadFactor = overloadFactor
        self.cost = cost
    }

    /// Builds the problem for a topology file, expanding the cost model into a matrix.
    public init(topology: PlanTopology) {
        let configurations = topology.zones.map(\.configuration)
        var cost: [Double] = []
        cost.reserveCapacity(configurations.count * configurations.count)
        for from in configurations {
            for to in configurations {
                cost.append(topology.costs.cost(from: from, to: to))
            }
        }
        self.init(zones: topology.zones, overloadFactor: topology.overloadFactor, cost: cost)
    }

    public var count: Int { zones.count }
    public var totalDemand: Double { zones.reduce(0) { $0 + $1.demand } }
    public var totalCapacity: Double { zones.reduce(0) { $0 + $1.capacity } }

    public func cost(_ source: Int, _ destination: Int) -> Double {
        cost[source * zones.count + destination]
    }

    /// The most zone t may serve: (1 + α) · D · c_t / C.
    public func bound(_ zone: Int) -> Double {
        let capacity = totalCapacity
        guard capacity > 0 else { return 0 }
        // The capacity share first: D · c_t would underflow for tiny inputs.
        return (1 + overloadFactor) * totalDemand * (zones[zone].capacity / capacity)
    }
}

extension PlanningProblem {
    /// The problem one service poses: capacity per zone from its endpoints' weights, minus drained or unhealthy
    /// capacity, and only the active region's zones for an `activeRegion` service.
    ///
    /// - Parameters:
    ///   - capacity: the capacity of each zone; default the sum of the service's endpoint weights per zone.
    ///   - demand: measured demand per zone; default the service's declared demand, else 1 per zone.
    ///   - drainedZones: zones whose capacity is 0.
    ///   - activeRegion: for `activeRegion` services, the region that serves; default the primary.
    public init(
        configuration: ZonewardConfiguration,
        service: ServiceConfiguration,
        capacity: [String: Double]? = nil,
        demand: [String: Double]? = nil,
        drainedZones: Set<String> = [],
        activeRegion: String? = nil
    ) {
        let declaredCapacity = service.endpoints.reduce(into: [String: Double]()) {
            $0[$1.zone, default: 0] += $1.weight
        }
        let capacity = capacity ?? declaredCapacity
        let demand = demand ?? service.demand
        let serving = service.routing == .activeRegion ? (activeRegion ?? service.primaryRegion) : nil
        let zones = configuration.zones.map { zone in
            var zoneCapacity = capacity[zone.name] ?? 0
            if drainedZones.contains(zone.name) { zoneCapacity = 0 }
            if let serving, zone.region != serving { zoneCapacity = 0 }
            return PlanTopology.Zone(
                name: zone.name,
                region: zone.region,
                demand: demand.map { $0[zone.name] ?? 0 } ?? 1,
                capacity: zoneCapacity
            )
        }
        let topology = PlanTopology(
            overloadFactor: configuration.routing.overloadFactor,
            costs: configuration.routing.costs,
            zones: zones
        )
        self.init(topology: topology)
    }
}
