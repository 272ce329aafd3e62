import ArgumentParser
import Foundation
import ZonePlanner
import ZonewardModel

extension Zoneward {
    /// `zoneward plan`: the optimal routing plan of a topology file.
    struct Plan: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the optimal zone routing plan for a topology file.",
            discussion: """
                Solves the routing problem exactly: all demand is served, no zone is loaded beyond \
                (1 + overloadFactor) times its fair share, and the cost of cross-zone and cross-region hops \
                is minimal. Compares the result with Envoy's zone-aware algorithm and with all-local routing.

                The topology file (YAML or JSON):
                  overloadFactor: 0.2              # α ≥ 0, default 0.2
                  costs: {crossZone: 1, crossRegion: 10, pairs: [{from: a, to: b, cost: 4}]}
                  zones:
                    - {name: us-east-1a, region: us-east-1, demand: 120, capacity: 100}

                Example:
                  zoneward plan --topology config/topology.yaml --format json

                Exit codes: 0 printed a plan, 2 bad input (the message names the field).
                """
        )

        @Option(help: ArgumentHelp("Topology file, YAML or JSON.", valueName: "file"))
        var topology: String

        @Option(help: "Output format: table for people, json for scripts.")
        var format: OutputFormat = .table

        func run() throws {
            let topology: PlanTopology
            do {
                topology = try PlanTopology.load(file: self.topology)
            } catch {
                printError(error.description)
                throw ExitCode.badInput
            }
            let problem = PlanningProblem(topology: topology)
            let plan = ZonePlanner.plan(problem)
            let envoy = EnvoyBaseline.plan(problem)
            switch format {
            case .json:
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                let data = try encoder.encode(PlanReport(plan: plan, envoy: envoy))
                print(String(decoding: data, as: UTF8.self))
            case .table:
                print(PlanTable.render(problem: problem, plan: plan, envoy: envoy))
            }
        }
    }
}

/// Renders a plan for people: the route matrix, then Zoneward vs Envoy vs all-local.
enum PlanTable {
    static func render(problem: PlanningProblem, plan: ZonePlan, envoy: ZonePlan) -> String {
        let names = plan.zoneNames
        var rows: [[String]] = [["from \\ to"] + names + ["demand", "load", "bound"]]
        for (s, name) in names.enumerated() {
            var row = [name]
            for t in names.indices {
                let p = plan.route(from: s, to: t)
                row.append(p == 0 ? "·" : percent(p))
            }
            row += [
                formatAmount(problem.zones[s].demand), formatAmount(plan.load[s]), formatAmount(plan.bound[s]),
            ]
            rows.append(row)
        }
        var text =
            "Routes (share of each zone's requests served in each zone), α = \(formatNumber(problem.overloadFactor)):\n"
        text += TextTable.render(rows)
        let local = allLocal(problem)
        let summary: [[String]] = [
            ["", "cross-zone", "cross-region", "cost", "max load ÷ fair share"],
            figures("Zoneward (optimal)", plan),
            figures("Envoy zone-aware", envoy),
            ["all-local", "0.0%", "0.0%", "0", local],
        ]
        text += "\n" + TextTable.render(summary)
        text += "\nstate: \(plan.state.rawValue)"
        return text
    }

    private static func figures(_ label: String, _ plan: ZonePlan) -> [String] {
        [
            label, percent(plan.crossZoneFraction), percent(plan.crossRegionFraction), formatAmount(plan.objective),
            String(format: "%.3f", plan.maxLoadFactor),
        ]
    }

    /// How overloaded the busiest zone would be if every zone served only itself.
    private static func allLocal(_ problem: PlanningProblem) -> String {
        let demand = problem.totalDemand
        let capacity = problem.totalCapacity
        var worst = 0.0
        for zone in problem.zones where zone.demand > 0 {
            guard zone.capacity > 0 else { return "∞ (a zone with demand has no capacity)" }
            worst = max(worst, (zone.demand / demand) / (zone.capacity / capacity))
        }
        return String(format: "%.3f", worst)
    }

    static func percent(_ fraction: Double) -> String {
        String(format: "%.1f%%", fraction * 100)
    }

    static func formatAmount(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e12 { return formatNumber(value) }
        return String(format: "%.4g", value)
    }
}

/// Left-aligned plain-text columns separated by two spaces.
enum TextTable {
    static func render(_ rows: [[String]]) -> String {
        let columns = rows.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in rows {
            for (index, cell) in row.enumerated() {
                widths[index] = max(widths[index], cell.count)
            }
        }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }
            .joined(separator: "  ")
        }
        .joined(separator: "\n")
    }
}
