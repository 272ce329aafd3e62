import ArgumentParser
import Foundation
import ZonePlanner
import ZonewardAPI
import ZonewardModel
import ZonewardProxy
import ZonewardState

extension Zoneward {
    /// `zoneward plan`: the optimal routing plan of a topology file.
    struct Plan: AsyncParsableCommand {
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

                Or plan one service of a configuration for the demand the fleet measures now: the controller's
                snapshot gives each zone's measured rate; a zone without one falls back to the configured demand,
                then to equal demand, and the table says which (capacity: the declared endpoints' weights).

                Examples:
                  zoneward plan --topology config/topology.yaml --format json
                  zoneward plan --from-controller http://127.0.0.1:9900 --token-file controller.token \\
                      --config config/zoneward.yaml --service web

                Exit codes: 0 printed a plan, 1 the controller could not be read, 2 bad input (the message names
                the field or argument).
                """
        )

        @Option(help: ArgumentHelp("Topology file, YAML or JSON.", valueName: "file"))
        var topology: String?

        @Option(
            help: ArgumentHelp(
                "Controller to read the measured demand from: one URL, or its replicas' URLs separated by commas.",
                valueName: "urls"
            )
        )
        var fromController: String?

        @Option(help: ArgumentHelp("File holding the controller's bearer token.", valueName: "file"))
        var tokenFile: String?

        @Option(help: ArgumentHelp("Configuration file (with --from-controller).", valueName: "file"))
        var config: String?

        @Option(help: "The service to plan (with --from-controller); default the configuration's first.")
        var service: String?

        @Option(help: "Output format: table for people, json for scripts.")
        var format: OutputFormat = .table

        func validate() throws {
            switch (topology, fromController) {
            case (nil, nil): throw ValidationError("give --topology FILE, or --from-controller URL with --config FILE")
            case (.some, .some): throw ValidationError("--topology and --from-controller: give one, not both")
            case (nil, .some):
                guard config != nil else {
                    throw ValidationError("--config: --from-controller needs the configuration")
                }
                guard tokenFile != nil else { throw ValidationError("--token-file: the controller needs its token") }
            case (.some, nil): break
            }
        }

        func run() async throws {
            let problem: PlanningProblem
            var sources: [String: DemandSource] = [:]
            var measuredAt: Date?
            if let topologyFile = topology {
                do {
                    problem = PlanningProblem(topology: try PlanTopology.load(file: topologyFile))
                } catch {
                    printError(error.description)
                    throw ExitCode.badInput
                }
            } else {
                (problem, sources, measuredAt) = try await measuredProblem()
            }
            let plan = ZonePlanner.plan(problem)
            let envoy = EnvoyBaseline.plan(problem)
            switch format {
            case .json:
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                var data = try encoder.encode(PlanReport(plan: plan, envoy: envoy))
                if !sources.isEmpty, var object = try JSONSerialization.jsonObject(with: data) as? [String: Any] {
                    object["demandSources"] = sources.mapValues(\.rawValue)
                    if let measuredAt { object["demandMeasuredAt"] = iso8601(measuredAt) }
                    data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                }
                print(String(decoding: data, as: UTF8.self))
            case .table:
                print(PlanTable.render(problem: problem, plan: plan, envoy: envoy))
                if !sources.isEmpty {
                    let described = problem.zones.map { "\($0.name) \(sources[$0.name]?.rawValue ?? "?")" }
                    print("Demand source per zone: \(described.joined(separator: ", "))")
                    if let measuredAt {
                        let age = Int(Date().timeIntervalSince(measuredAt).rounded())
                        print("Measured demand as of \(iso8601(measuredAt)) (\(age) s ago)")
                    }
                }
            }
        }

        /// The planning problem of `--service` for the demand in the controller's snapshot now.
        private func measuredProblem() async throws -> (PlanningProblem, [String: DemandSource], Date?) {
            guard let url = fromController, let config, let tokenFile else { throw ExitCode.badInput }
            let configuration = try loadConfiguration(config)
            let candidate = service.map { configuration.service(named: $0) } ?? configuration.services.first
            guard let chosen = candidate else {
                let known = configuration.services.map(\.name).joined(separator: ", ")
                printError("--service: unknown service \"\(service ?? "")\" (known: \(known))")
                throw ExitCode.badInput
            }
            let client = try controllerClient(url, token: try readToken(tokenFile), option: "--from-controller")
            let snapshot = try await callController { () async throws(ControllerClientError) in
                try await client.snapshot().value
            }
            let demand = DemandResolution.resolve(
                zones: configuration.zones.map(\.name),
                measured: snapshot.demand?[chosen.name] ?? [:],
                configured: chosen.demand
            )
            let problem = PlanningProblem(
                configuration: configuration,
                service: chosen,
                demand: demand.mapValues(\.rate),
                drainedZones: Set(snapshot.drainedZones),
                activeRegion: snapshot.services[chosen.name]?.activeRegion
            )
            return (problem, demand.mapValues(\.source), snapshot.demandAt)
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
