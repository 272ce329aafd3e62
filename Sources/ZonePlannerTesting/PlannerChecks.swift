import ZonePlanner
import ZonewardModel

/// Checks and generators for testing and benchmarking the planner: an independent feasibility check, an
/// optimality certificate, random topologies.

/// A small, seeded generator so property tests are reproducible.
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64

    public init(state: UInt64) {
        self.state = state
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A problem from `(name, region, demand, capacity)` tuples.
public func topology(
    alpha: Double = 0.2,
    costs: CostConfiguration = .init(),
    _ zones: [(String, String, Double, Double)]
) -> PlanningProblem {
    PlanningProblem(
        topology: PlanTopology(
            overloadFactor: alpha,
            costs: costs,
            zones: zones.map { PlanTopology.Zone(name: $0.0, region: $0.1, demand: $0.2, capacity: $0.3) }
        )
    )
}

/// A random topology: `zones` zones (default 1–12) over 1–3 regions, some zones with no demand or no capacity, random α and costs.
public func randomProblem(_ rng: inout SplitMix64, zones zoneCount: Int? = nil) -> PlanningProblem {
    let count = zoneCount ?? Int.random(in: 1...12, using: &rng)
    let regions = Int.random(in: 1...3, using: &rng)
    var zones: [PlanTopology.Zone] = []
    for index in 0..<count {
        let demand = Double.random(in: 0...1, using: &rng) < 0.2 ? 0 : Double.random(in: 0.5...1000, using: &rng)
        let capacity = Double.random(in: 0...1, using: &rng) < 0.2 ? 0 : Double.random(in: 0.5...50, using: &rng)
        zones.append(.init(name: "z\(index)", region: "r\(index % regions)", demand: demand, capacity: capacity))
    }
    if zones.allSatisfy({ $0.capacity == 0 }) { zones[0].capacity = 1 }
    let alpha = Double.random(in: 0...1, using: &rng) < 0.2 ? 0 : Double.random(in: 0...1.5, using: &rng)
    var costs = CostConfiguration(
        crossZone: Double(Int.random(in: 1...3, using: &rng)),
        crossRegion: Double(Int.random(in: 4...20, using: &rng))
    )
    for _ in 0..<Int.random(in: 0...3, using: &rng) where count > 1 {
        let from = Int.random(in: 0..<count, using: &rng)
        let to = (from + Int.random(in: 1..<count, using: &rng)) % count
        costs.pairs.append(CostOverride(from: "z\(from)", to: "z\(to)", cost: Double.random(in: 0...25, using: &rng)))
    }
    return PlanningProblem(topology: PlanTopology(overloadFactor: alpha, costs: costs, zones: zones))
}

/// Problems with a plan, checked independently of the solver. Empty means the plan is feasible.
public func feasibilityViolations(_ problem: PlanningProblem, _ plan: ZonePlan) -> [String] {
    let n = problem.count
    let scale = max(problem.totalDemand, 1e-300)
    let tolerance = 1e-9 * scale
    var violations: [String] = []
    for s in 0..<n {
        let served = (0..<n).reduce(0.0) { $0 + plan.flow(from: s, to: $1) }
        if abs(served - problem.zones[s].demand) > tolerance {
            violations.append("zone \(s): served \(served) of demand \(problem.zones[s].demand)")
        }
        let rowSum = (0..<n).reduce(0.0) { $0 + plan.route(from: s, to: $1) }
        if abs(rowSum - 1) > 1e-9 { violations.append("zone \(s): routes sum to \(rowSum)") }
        for t in 0..<n {
            if plan.flow(from: s, to: t) < 0 || plan.route(from: s, to: t) < 0 {
                violations.append("negative flow \(s)→\(t)")
            }
            if problem.zones[t].capacity == 0 && plan.route(from: s, to: t) > 0 {
                violations.append("zone \(s) routes to zone \(t), which has no capacity")
            }
        }
    }
    for t in 0..<n where plan.load[t] > problem.bound(t) + tolerance {
        violations.append("zone \(t): load \(plan.load[t]) above bound \(problem.bound(t))")
    }
    return violations
}

/// An optimality certificate: the residual network of the plan's flow has no negative-cost cycle.
///
/// Nodes 0..<n are source zones, n..<2n destination zones, 2n the sink. Bellman–Ford from a virtual root
/// joined to every node at cost 0; a relaxation that still improves after |V| − 1 rounds proves a cycle.
public func hasNegativeResidualCycle(_ problem: PlanningProblem, _ plan: ZonePlan) -> Bool {
    let n = problem.count
    let amountTolerance = 1e-9 * max(problem.totalDemand, 1e-300)
    let maxCost = problem.cost.max() ?? 1
    let costTolerance = 1e-9 * max(maxCost, 1)
    var arcs: [(Int, Int, Double)] = []
    for s in 0..<n {
        for t in 0..<n {
            arcs.append((s, n + t, problem.cost(s, t)))
            if plan.flow(from: s, to: t) > amountTolerance { arcs.append((n + t, s, -problem.cost(s, t))) }
        }
    }
    for t in 0..<n {
        if plan.load[t] < problem.bound(t) - amountTolerance { arcs.append((n + t, 2 * n, 0)) }
        if plan.load[t] > amountTolerance { arcs.append((2 * n, n + t, 0)) }
    }
    var distance = [Double](repeating: 0, count: 2 * n + 1)
    for _ in 0..<(2 * n + 1) {
        var changed = false
        for (u, v, cost) in arcs where distance[u] + cost < distance[v] - costTolerance {
            distance[v] = distance[u] + cost
            changed = true
        }
        if !changed { return false }
    }
    return true
}
