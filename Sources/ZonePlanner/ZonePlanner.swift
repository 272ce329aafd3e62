/// Solves the zone routing problem of DESIGN.md exactly.
///
///     minimise   Σ_s Σ_t cost(s,t) · x_st
///     subject to Σ_t x_st = d_s              (all demand is served)
///                Σ_s x_st ≤ (1 + α) · f_t    (no zone beyond its fair share by more than α)
///
/// It is a transportation problem, solved as a min-cost flow by successive shortest paths with
/// node potentials (Dijkstra on reduced costs) from a source S through source zones and destination
/// zones to a sink T. Starting from the all-local flow is valid because every cost is ≥ 0 and the
/// cost within a zone is 0, so the zero potentials already certify it. Each augmentation exhausts a
/// source, fills a destination, or empties a flow, and at the end no negative cycle is left in the
/// residual network: the result is optimal, not approximately so.
public enum ZonePlanner {
    /// Computes the optimal plan. With no capacity anywhere the plan is `panic`: rows spread over every zone.
    public static func plan(_ problem: PlanningProblem) -> ZonePlan {
        let n = problem.count
        guard n > 0 else {
            return ZonePlan(problem: problem, flow: [], routes: [])
        }
        guard problem.totalCapacity > 0 else {
            let uniform = [Double](repeating: 1 / Double(n), count: n * n)
            let flow = (0..<n * n).map { problem.zones[$0 / n].demand / Double(n) }
            return ZonePlan(problem: problem, flow: flow, routes: uniform, panic: true)
        }
        var solver = FlowSolver(problem: problem)
        solver.solve()
        var routes = [Double](repeating: 0, count: n * n)
        for s in 0..<n {
            let rowTotal = (0..<n).reduce(0.0) { $0 + solver.flow[s * n + $1] }
            if problem.zones[s].demand > 0, rowTotal > 0 {
                for t in 0..<n {
                    routes[s * n + t] = solver.flow[s * n + t] / rowTotal
                }
            } else {
                routes[s * n + solver.marginalDestination(from: s)] = 1
            }
        }
        return ZonePlan(problem: problem, flow: solver.flow, routes: routes)
    }
}

/// Successive-shortest-path min-cost flow on the dense bipartite network of one problem.
///
/// Nodes: 0 = S, 1...n = source zones, n+1...2n = destination zones, 2n+1 = T.
struct FlowSolver {
    let problem: PlanningProblem
    let n: Int
    /// x_st, row-major.
    var flow: [Double]
    /// Demand of each source zone not yet routed.
    var unrouted: [Double]
    /// Room left in each destination zone below its bound.
    var room: [Double]
    var potential: [Double]
    /// Amounts at or below this are treated as zero; far below any amount that matters in the problem.
    let epsilon: Double

    private var distance: [Double]
    private var parent: [Int]
    private var done: [Bool]

    init(problem: PlanningProblem) {
        self.problem = problem
        let n = problem.count
        self.n = n
        let totalDemand = problem.totalDemand
        epsilon = max(totalDemand, Double.leastNormalMagnitude) * 1e-12
        flow = [Double](repeating: 0, count: n * n)
        unrouted = problem.zones.map(\.demand)
        room = (0..<n).map(problem.bound)
        // Local first: with costs ≥ 0 and 0 within a zone, the all-local flow has no negative residual cycle.
        for z in 0..<n {
            let local = min(unrouted[z], room[z])
            flow[z * n + z] = local
            unrouted[z] -= local
            room[z] -= local
        }
        potential = [Double](repeating: 0, count: 2 * n + 2)
        distance = [Double](repeating: 0, count: 2 * n + 2)
        parent = [Int](repeating: -1, count: 2 * n + 2)
        done = [Bool](repeating: false, count: 2 * n + 2)
    }

    private var sink: Int { 2 * n + 1 }

    mutating func solve() {
        // Primal-dual: one Dijkstra per phase, then every augmenting path of zero reduced cost found by
        // depth-first search (costs take few distinct values, so phases are few). Each augmentation
        // exhausts a source, fills a destination or empties a flow; the bound only guards against a
        // rounding pathology looping forever.
        var remainingPhases = 4 * n * n + 64
        while remainingPhases > 0, unrouted.contains(where: { $0 > epsilon }) {
            guard shortestPaths(fromSources: nil) else { break }
            augment()
            augmentAlongTightPaths()
            remainingPhases -= 1
        }
    }

    /// Arcs whose reduced cost is within rounding of zero lie on shortest paths after the potential update.
    private var tightness: Double {
        1e-12 * max(1, potential[2 * n + 1].magnitude)
    }

    /// Augments along every S→T path of tight arcs (a blocking flow), pruning dead ends.
    private mutating func augmentAlongTightPaths() {
        for v in 0..<(2 * n + 2) { done[v] = false }
        var pushes = 2 * n * n + 16
        while pushes > 0, unrouted.contains(where: { $0 > epsilon }) {
            for v in 0..<(2 * n + 2) { parent[v] = -1 }
            guard findTightPath(from: 0) else { return }
            augment()
            pushes -= 1
        }
    }

    /// Depth-first search over tight residual arcs, recording `parent`; marks nodes that lead nowhere.
    private mutating func findTightPath(from u: Int) -> Bool {
        if u == sink { return true }
        let tolerance = tightness
        let base = potential[u]
        func tight(_ cost: Double, _ v: Int) -> Bool {
            !done[v] && parent[v] < 0 && v != 0 && abs(cost + base - potential[v]) <= tolerance
        }
        if u == 0 {
            for s in 0..<n where unrouted[s] > epsilon && tight(0, s + 1) {
                parent[s + 1] = 0
                if findTightPath(from: s + 1) { return true }
            }
        } else if u <= n {
            let s = u - 1
            for t in 0..<n where tight(problem.cost(s, t), n + 1 + t) {
                parent[n + 1 + t] = u
                if findTightPath(from: n + 1 + t) { return true }
            }
        } else if u <= 2 * n {
            let t = u - n - 1
            if room[t] > epsilon && tight(0, sink) {
                parent[sink] = u
                return true
            }
            for s in 0..<n where flow[s * n + t] > epsilon && tight(-problem.cost(s, t), s + 1) {
                parent[s + 1] = u
                if findTightPath(from: s + 1) { return true }
            }
        }
        done[u] = true
        return false
    }

    /// The first destination zone of the cheapest augmenting path from source zone `s`: where one more
    /// request from `s` would go. When no zone has room left (α = 0), the cheapest zone with capacity.
    mutating func marginalDestination(from s: Int) -> Int {
        if shortestPaths(fromSources: s) {
            var node = sink
            var firstDestination = -1
            while node != 0 && node != s + 1 {
                let previous = parent[node]
                if previous == s + 1 { firstDestination = node - n - 1 }
                node = previous
            }
            if firstDestination >= 0 { return firstDestination }
        }
        var best = -1
        for t in 0..<n where problem.zones[t].capacity > 0 {
            if best < 0 {
                best = t
                continue
            }
            let (costT, costBest) = (problem.cost(s, t), problem.cost(s, best))
            if costT < costBest || (costT == costBest && problem.zones[t].capacity > problem.zones[best].capacity) {
                best = t
            }
        }
        return max(best, 0)
    }

    /// Dijkstra on reduced costs from S (or from one source zone) to T. Updates the potentials.
    /// Returns false when T is unreachable.
    private mutating func shortestPaths(fromSources only: Int?) -> Bool {
        let nodeCount = 2 * n + 2
        for v in 0..<nodeCount {
            distance[v] = .infinity
            parent[v] = -1
            done[v] = false
        }
        if let only {
            distance[only + 1] = 0
        } else {
            distance[0] = 0
        }
        while true {
            // Dense Dijkstra: O(V) selection beats a heap on a complete bipartite graph.
            var u = -1
            var best = Double.infinity
            for v in 0..<nodeCount where !done[v] && distance[v] < best {
                best = distance[v]
                u = v
            }
            if u < 0 { return false }
            done[u] = true
            if u == sink { break }
            relaxArcs(from: u)
        }
        let reached = distance[sink]
        for v in 0..<nodeCount {
            potential[v] += min(distance[v], reached)
        }
        return true
    }

    private mutating func relaxArcs(from u: Int) {
        let base = distance[u] + potential[u]
        if u == 0 {
            for s in 0..<n where unrouted[s] > epsilon {
                relax(to: s + 1, cost: base - potential[s + 1], from: u)
            }
        } else if u <= n {
            let s = u - 1
            for t in 0..<n {
                relax(to: n + 1 + t, cost: base + problem.cost(s, t) - potential[n + 1 + t], from: u)
            }
        } else if u <= 2 * n {
            let t = u - n - 1
            if room[t] > epsilon {
                relax(to: sink, cost: base - potential[sink], from: u)
            }
            for s in 0..<n where flow[s * n + t] > epsilon {
                relax(to: s + 1, cost: base - problem.cost(s, t) - potential[s + 1], from: u)
            }
        }
    }

    private mutating func relax(to v: Int, cost: Double, from u: Int) {
        // Reduced costs are ≥ 0 in exact arithmetic; clamp rounding noise so Dijkstra stays valid.
        let candidate = max(cost, distance[u])
        if !done[v] && candidate < distance[v] {
            distance[v] = candidate
            parent[v] = u
        }
    }

    private mutating func augment() {
        // Walk T ← t ← s ← … ← S to find the bottleneck.
        var amount = Double.infinity
        var node = sink
        while node != 0 {
            let previous = parent[node]
            if previous == 0 {
                amount = min(amount, unrouted[node - 1])
            } else if node == sink {
                amount = min(amount, room[previous - n - 1])
            } else if previous > n {
                // Backward arc destination → source: undo flow x_st.
                amount = min(amount, flow[(node - 1) * n + (previous - n - 1)])
            }
            node = previous
        }
        node = sink
        while node != 0 {
            let previous = parent[node]
            if previous == 0 {
                unrouted[node - 1] = settle(unrouted[node - 1] - amount)
            } else if node == sink {
                room[previous - n - 1] = settle(room[previous - n - 1] - amount)
            } else if previous <= n {
                flow[(previous - 1) * n + (node - n - 1)] += amount
            } else {
                let index = (node - 1) * n + (previous - n - 1)
                flow[index] = settle(flow[index] - amount)
            }
            node = previous
        }
    }

    /// Snaps rounding residue to exactly zero so an exhausted arc stays exhausted.
    private func settle(_ value: Double) -> Double {
        value <= epsilon ? 0 : value
    }
}
