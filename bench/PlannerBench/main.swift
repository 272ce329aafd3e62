// Planner benchmark: time per solve for 3, 10, 30 and 100 zones, and the mean cost of the optimal plan
// relative to Envoy's algorithm on the property tests' random topologies.
//
//   swift run -c release PlannerBench
import Foundation
import ZonePlanner
import ZonePlannerTesting

func measure(zones: Int, problems: Int, rounds: Int) -> (median: Double, p99: Double) {
    var rng = SplitMix64(state: UInt64(zones) &* 7919)
    let inputs = (0..<problems).map { _ in randomProblem(&rng, zones: zones) }
    var samples: [Double] = []
    var sink = 0.0
    for _ in 0..<rounds {
        for problem in inputs {
            let start = ContinuousClock.now
            let plan = ZonePlanner.plan(problem)
            let elapsed = ContinuousClock.now - start
            sink += plan.objective
            samples.append(Double(elapsed.components.attoseconds) / 1e12 + Double(elapsed.components.seconds) * 1e6)
        }
    }
    if sink.isNaN { print("unreachable") }
    samples.sort()
    return (samples[samples.count / 2], samples[min(samples.count - 1, samples.count * 99 / 100)])
}

print("zones  median µs/solve  p99 µs/solve")
for (zones, problems, rounds) in [(3, 2000, 5), (10, 2000, 5), (30, 300, 5), (100, 50, 5)] {
    let (median, p99) = measure(zones: zones, problems: problems, rounds: rounds)
    print(String(format: "%5d  %15.1f  %12.1f", zones, median, p99))
}

// The same generator and seed as the property test `randomTopologiesAreSolvedOptimally`.
var rng = SplitMix64(state: 20_261_129)
var ratios: [Double] = []
var strictlyBetter = 0
for _ in 0..<3000 {
    let problem = randomProblem(&rng)
    let optimal = ZonePlanner.plan(problem).objective
    let envoy = EnvoyBaseline.plan(problem).objective
    guard envoy > 0 else { continue }
    ratios.append(optimal / envoy)
    if optimal < envoy * (1 - 1e-9) { strictlyBetter += 1 }
}
let mean = ratios.reduce(0, +) / Double(ratios.count)
print(
    String(
        format:
            "random topologies: mean Zoneward cost ÷ Envoy cost = %.3f over %d with Envoy cost > 0 (%d strictly cheaper)",
        mean,
        ratios.count,
        strictlyBetter
    )
)
