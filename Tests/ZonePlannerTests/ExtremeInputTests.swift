import Foundation
import Testing
import ZonePlanner
import ZonePlannerTesting
import ZonewardModel

/// Whatever validation lets through, the plan's figures stay finite and its JSON encodes.
@Suite struct ExtremeInputTests {
    /// The edges of what the topology file accepts: 0, the smallest subnormal, tiny, ordinary, the maximum.
    static let magnitudes: [Double] = [0, .leastNonzeroMagnitude, 1e-300, 1e-12, 1, 1e12]

    @Test func figuresStayFiniteAtTheEdgesOfValidInput() throws {
        var rng = SplitMix64(state: 0xED6E)
        let encoder = JSONEncoder()
        for index in 0..<400 {
            let count = Int.random(in: 1...5, using: &rng)
            var zones: [(String, String, Double, Double)] = (0..<count).map { zone in
                (
                    "z\(zone)", "r\(zone % 2)", Self.magnitudes.randomElement(using: &rng) ?? 0,
                    Self.magnitudes.randomElement(using: &rng) ?? 0
                )
            }
            if zones.allSatisfy({ $0.3 == 0 }) { zones[0].3 = 1 }
            let costs = CostConfiguration(
                crossZone: Self.magnitudes.randomElement(using: &rng) ?? 0,
                crossRegion: Self.magnitudes.randomElement(using: &rng) ?? 0
            )
            let alpha = Self.magnitudes.randomElement(using: &rng) ?? 0
            let problem = topology(alpha: alpha, costs: costs, zones)
            let plan = ZonePlanner.plan(problem)
            let envoy = EnvoyBaseline.plan(problem)
            for candidate in [plan, envoy] {
                let figures =
                    candidate.flow + candidate.routes + candidate.load + candidate.bound
                    + [
                        candidate.objective, candidate.crossZoneFraction, candidate.crossRegionFraction,
                        candidate.maxLoadFactor,
                    ]
                #expect(figures.allSatisfy { $0.isFinite }, "case \(index): \(zones), α \(alpha), \(costs)")
            }
            #expect(throws: Never.self, "case \(index)") {
                try encoder.encode(PlanReport(plan: plan, envoy: envoy))
            }
        }
    }
}
