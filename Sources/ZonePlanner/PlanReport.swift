/// The JSON shape of a plan: what `zoneward plan --format json` prints and the proxy serves at `/admin/plan`.
public struct PlanReport: Codable, Sendable, Equatable {
    /// The figures of a baseline, for comparison.
    public struct Baseline: Codable, Sendable, Equatable {
        public var objective: Double
        public var crossZoneFraction: Double
        public var crossRegionFraction: Double
        public var maxLoadFactor: Double
    }

    /// `routes[source][destination]`: the probability that a request from `source` is served in `destination`.
    public var routes: [String: [String: Double]]
    /// Traffic served by each zone.
    public var load: [String: Double]
    /// The most each zone may serve: (1 + α) · D · c_t / C.
    public var bound: [String: Double]
    public var objective: Double
    public var crossZoneFraction: Double
    public var crossRegionFraction: Double
    public var maxLoadFactor: Double
    /// `local`, `spilling` or `panic`.
    public var state: RoutingState
    /// Envoy's zone-aware algorithm on the same input.
    public var envoy: Baseline

    public init(plan: ZonePlan, envoy: ZonePlan) {
        var routes: [String: [String: Double]] = [:]
        for (s, source) in plan.zoneNames.enumerated() {
            var row: [String: Double] = [:]
            for (t, destination) in plan.zoneNames.enumerated() {
                row[destination] = plan.route(from: s, to: t)
            }
            routes[source] = row
        }
        self.routes = routes
        load = Dictionary(uniqueKeysWithValues: zip(plan.zoneNames, plan.load))
        bound = Dictionary(uniqueKeysWithValues: zip(plan.zoneNames, plan.bound))
        objective = plan.objective
        crossZoneFraction = plan.crossZoneFraction
        crossRegionFraction = plan.crossRegionFraction
        maxLoadFactor = plan.maxLoadFactor
        state = plan.state
        self.envoy = Baseline(
            objective: envoy.objective,
            crossZoneFraction: envoy.crossZoneFraction,
            crossRegionFraction: envoy.crossRegionFraction,
            maxLoadFactor: envoy.maxLoadFactor
        )
    }
}
