import Testing
import ZonePlanner
import ZonePlannerTesting
import ZonewardModel

@Suite struct ZonePlannerTests {
    /// DESIGN.md's example: demand 50/30/20 over equal capacity in one region.
    @Test(arguments: [(0.0, 1.0 / 6), (0.2, 0.1), (0.5, 0.0)])
    func matchesTheDesignExample(alpha: Double, expectedCrossZone: Double) {
        let problem = topology(alpha: alpha, [("a", "r", 50, 1), ("b", "r", 30, 1), ("c", "r", 20, 1)])
        let plan = ZonePlanner.plan(problem)
        #expect(abs(plan.crossZoneFraction - expectedCrossZone) < 1e-12)
        #expect(abs(EnvoyBaseline.plan(problem).crossZoneFraction - 1.0 / 6) < 1e-12)
        #expect(feasibilityViolations(problem, plan).isEmpty)
    }

    @Test func keepsAllTrafficLocalWhenCapacityAllows() {
        let problem = topology([("a", "r", 10, 5), ("b", "r", 10, 5)])
        let plan = ZonePlanner.plan(problem)
        #expect(plan.state == .local)
        #expect(plan.route(from: 0, to: 0) == 1)
        #expect(plan.route(from: 1, to: 1) == 1)
    }

    @Test func oneZoneServesItself() {
        let problem = topology([("only", "r", 42, 3)])
        let plan = ZonePlanner.plan(problem)
        #expect(plan.routes == [1])
        #expect(plan.load == [42])
        #expect(plan.objective == 0)
    }

    /// Given a zone with demand and no capacity, all of its traffic goes to the cheapest zones with room.
    @Test func zoneWithoutCapacitySendsEverythingAway() {
        let problem = topology([("a", "east", 100, 0), ("b", "east", 0, 1), ("c", "west", 0, 1)])
        let plan = ZonePlanner.plan(problem)
        #expect(plan.route(from: 0, to: 0) == 0)
        // b is in the same region (cost 1) and may take (1 + α) · 100 / 2 = 60; the rest crosses regions.
        #expect(abs(plan.flow(from: 0, to: 1) - 60) < 1e-9)
        #expect(abs(plan.flow(from: 0, to: 2) - 40) < 1e-9)
        #expect(abs(plan.crossRegionFraction - 0.4) < 1e-12)
        #expect(feasibilityViolations(problem, plan).isEmpty)
    }

    /// A zone with no demand still gets a row: where one more request from it would go.
    @Test func zeroDemandZoneRoutesItsMarginalRequest() {
        let problem = topology([("a", "east", 0, 0), ("b", "east", 10, 1), ("c", "west", 10, 1)])
        let plan = ZonePlanner.plan(problem)
        // No capacity in a; b is cheaper than c and has room (α = 0.2).
        #expect(plan.route(from: 0, to: 1) == 1)
        let local = topology([("a", "east", 0, 1), ("b", "east", 10, 1)])
        #expect(ZonePlanner.plan(local).route(from: 0, to: 0) == 1)
    }

    @Test func zeroDemandRowWhenNoZoneHasRoomLeft() {
        // α = 0: every zone is exactly full; the marginal request goes to the cheapest zone with capacity.
        let problem = topology(alpha: 0, [("a", "east", 0, 0), ("b", "west", 10, 1), ("c", "east", 10, 1)])
        let plan = ZonePlanner.plan(problem)
        #expect(plan.route(from: 0, to: 2) == 1)
        #expect(feasibilityViolations(problem, plan).isEmpty)
    }

    @Test func withNoDemandAnywhereEveryRowIsMarginal() {
        let problem = topology([("a", "r", 0, 1), ("b", "r", 0, 0)])
        let plan = ZonePlanner.plan(problem)
        #expect(plan.routes == [1, 0, 1, 0])
        #expect(plan.crossZoneFraction == 0)
    }

    /// At α = 0 every zone with capacity is loaded exactly to its fair share.
    @Test func alphaZeroLoadsEveryZoneToItsFairShare() {
        let problem = topology(alpha: 0, [("a", "r", 70, 1), ("b", "r", 20, 2), ("c", "s", 10, 1)])
        let plan = ZonePlanner.plan(problem)
        #expect(abs(plan.load[0] - 25) < 1e-9)
        #expect(abs(plan.load[1] - 50) < 1e-9)
        #expect(abs(plan.load[2] - 25) < 1e-9)
        #expect(!hasNegativeResidualCycle(problem, plan))
    }

    @Test func regionWithoutCapacityCrossesRegions() {
        let problem = topology([("e1", "east", 30, 0), ("e2", "east", 10, 0), ("w1", "west", 60, 5)])
        let plan = ZonePlanner.plan(problem)
        #expect(abs(plan.crossRegionFraction - 0.4) < 1e-12)
        #expect(plan.route(from: 0, to: 2) == 1)
        #expect(feasibilityViolations(problem, plan).isEmpty)
    }

    @Test(arguments: [1e-9, 1e-3, 1, 1e6, 1e12])
    func scaleDoesNotChangeTheRoutes(scale: Double) {
        let zones = [("a", "r", 50.0, 1.0), ("b", "r", 30.0, 1.0), ("c", "s", 20.0, 1.0)]
        let reference = ZonePlanner.plan(topology(zones))
        let scaled = topology(zones.map { ($0.0, $0.1, $0.2 * scale, $0.3 / scale) })
        let plan = ZonePlanner.plan(scaled)
        for (p, q) in zip(plan.routes, reference.routes) {
            #expect(abs(p - q) < 1e-9)
        }
        #expect(feasibilityViolations(scaled, plan).isEmpty)
        #expect(!hasNegativeResidualCycle(scaled, plan))
    }

    @Test func hugeAndTinyZonesTogether() {
        let problem = topology([("big", "r", 1e12, 1e-6), ("tiny", "r", 1e-6, 1e6), ("mid", "s", 5, 1)])
        let plan = ZonePlanner.plan(problem)
        #expect(feasibilityViolations(problem, plan).isEmpty)
        #expect(!hasNegativeResidualCycle(problem, plan))
    }

    @Test func cheapPairOverrideIsPreferred() {
        let costs = CostConfiguration(crossZone: 1, crossRegion: 10, pairs: [.init(from: "a", to: "w", cost: 0.5)])
        let problem = topology(costs: costs, [("a", "east", 100, 0), ("b", "east", 0, 1), ("w", "west", 0, 1)])
        let plan = ZonePlanner.plan(problem)
        #expect(abs(plan.flow(from: 0, to: 2) - 60) < 1e-9)
        #expect(abs(plan.flow(from: 0, to: 1) - 40) < 1e-9)
    }

    @Test func noCapacityAnywhereIsPanic() {
        let problem = topology([("a", "r", 10, 0), ("b", "r", 10, 0)])
        let plan = ZonePlanner.plan(problem)
        #expect(plan.state == .panic)
        #expect(plan.routes.allSatisfy { $0 == 0.5 })
    }

    /// Property: on thousands of random topologies the plan is feasible, carries an optimality certificate,
    /// and is never worse than Envoy's algorithm.
    @Test func randomTopologiesAreSolvedOptimally() {
        var rng = SplitMix64(state: 20_261_129)
        var ratios: [Double] = []
        for trial in 0..<3000 {
            let problem = randomProblem(&rng)
            let plan = ZonePlanner.plan(problem)
            let envoy = EnvoyBaseline.plan(problem)
            let violations = feasibilityViolations(problem, plan)
            #expect(violations.isEmpty, "trial \(trial): \(violations)")
            #expect(!hasNegativeResidualCycle(problem, plan), "trial \(trial): not optimal")
            // Envoy's plan is feasible even at α = 0, so it is a fair baseline.
            #expect(feasibilityViolations(problem, envoy).isEmpty, "trial \(trial): Envoy infeasible")
            #expect(envoy.maxLoadFactor <= 1 + 1e-9, "trial \(trial)")
            let tolerance = 1e-9 * max(envoy.objective, 1)
            #expect(plan.objective <= envoy.objective + tolerance, "trial \(trial): worse than Envoy")
            if envoy.objective > 0 { ratios.append(plan.objective / envoy.objective) }
        }
        #expect(!ratios.isEmpty)
    }

    /// The certificate itself must catch a plan that is feasible but not optimal.
    @Test func certificateRejectsASuboptimalPlan() {
        let problem = topology([("a", "east", 100, 0), ("b", "east", 0, 1), ("w", "west", 0, 1)])
        var plan = ZonePlanner.plan(problem)
        // Move 10 units from the cheap zone b to the expensive zone w: still feasible, no longer optimal.
        plan.flow[1] -= 10
        plan.flow[2] += 10
        plan.load[1] -= 10
        plan.load[2] += 10
        #expect(feasibilityViolations(problem, plan).isEmpty)
        #expect(hasNegativeResidualCycle(problem, plan))
    }

    @Test func envoyBaselineFollowsItsRule() {
        // L = (0.5, 0.3, 0.2), U = 1/3 each: a keeps 1/3 of all traffic and spills to b and c by their surplus.
        let problem = topology([("a", "r", 50, 1), ("b", "r", 30, 1), ("c", "r", 20, 1)])
        let envoy = EnvoyBaseline.plan(problem)
        #expect(abs(envoy.route(from: 0, to: 0) - (1.0 / 3) / 0.5) < 1e-12)
        let surplusB = 1.0 / 3 - 0.3
        let surplusC = 1.0 / 3 - 0.2
        let spill = 1 - (1.0 / 3) / 0.5
        #expect(abs(envoy.route(from: 0, to: 1) - spill * surplusB / (surplusB + surplusC)) < 1e-12)
        #expect(envoy.route(from: 1, to: 1) == 1)
        #expect(abs(envoy.maxLoadFactor - 1) < 1e-12)
    }
}
