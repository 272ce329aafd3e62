/// Envoy's zone-aware routing, as a baseline to compare the optimal plan against.
///
/// With L_z the local share of demand and U_z the share of capacity, zone s keeps min(L_s, U_s) of all
/// traffic local and sends the rest to the zones j with U_j > L_j, in proportion to U_j − L_j. It is a
/// feasible point of the planner's problem at α = 0, so the optimum is never worse.
public enum EnvoyBaseline {
    public static func plan(_ problem: PlanningProblem) -> ZonePlan {
        let n = problem.count
        let demand = problem.totalDemand
        let capacity = problem.totalCapacity
        guard n > 0, capacity > 0 else { return ZonePlanner.plan(problem) }
        let local = problem.zones.map { demand > 0 ? $0.demand / demand : 0 }
        let upstream = problem.zones.map { $0.capacity / capacity }
        let surplus = (0..<n).map { max(0, upstream[$0] - local[$0]) }
        let totalSurplus = surplus.reduce(0, +)
        var routes = [Double](repeating: 0, count: n * n)
        for s in 0..<n {
            let kept: Double
            if local[s] <= upstream[s] {
                kept = upstream[s] > 0 ? 1 : 0
            } else {
                kept = upstream[s] / local[s]
            }
            routes[s * n + s] = kept
            let spill = 1 - kept
            guard spill > 0 else { continue }
            // Where spilled traffic goes; if no zone has surplus (only when this zone has no demand), by capacity.
            let weights = totalSurplus > 0 ? surplus : upstream
            let total = totalSurplus > 0 ? totalSurplus : 1
            for t in 0..<n where weights[t] > 0 {
                routes[s * n + t] += spill * weights[t] / total
            }
        }
        let flow = (0..<n * n).map { problem.zones[$0 / n].demand * routes[$0] }
        return ZonePlan(problem: problem, flow: flow, routes: routes)
    }
}
