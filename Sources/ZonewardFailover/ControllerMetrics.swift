import Foundation
import ZonewardState

extension ControllerService {
    /// The controller's own gauges in Prometheus text: leadership, and each failover service's epoch and
    /// operation in flight (from this replica's copy of the state).
    func controllerMetrics(now: Date = Date()) -> String {
        var lines: [String] = []
        func gauge(_ name: String, _ help: String, _ samples: [(labels: String, value: Double)]) {
            lines.append("# HELP \(name) \(help)")
            lines.append("# TYPE \(name) gauge")
            for sample in samples {
                lines.append("\(name)\(sample.labels.isEmpty ? "" : "{\(sample.labels)}") \(format(sample.value))")
            }
        }
        let term = try? gate.term()
        gauge(
            "zoneward_controller_leader",
            "1 while this replica leads (a single controller always does), else 0.",
            [("", term != nil ? 1 : 0)]
        )
        gauge(
            "zoneward_controller_term",
            "The term this replica leads with (0 for a single controller); absent while it follows.",
            term.map { [("", Double($0))] } ?? []
        )
        gauge(
            "zoneward_controller_state_age_seconds",
            "Seconds since this follower last confirmed its copy of the state is the newest (0 while leading).",
            [("", stateAge ?? 0)]
        )
        var epochs: [(String, Double)] = []
        var inFlight: [(String, Double)] = []
        let unfinished = (try? store.unfinishedOperations()) ?? []
        for service in settings.configuration.services where service.failover != nil {
            let label = "service=\"\(escape(service.name))\""
            let epoch = (try? coordinator.activeRegion(of: service).epoch) ?? 0
            epochs.append((label, Double(epoch)))
            inFlight.append((label, unfinished.contains { $0.service == service.name } ? 1 : 0))
        }
        gauge("zoneward_failover_epoch", "The epoch of each failover service's active region.", epochs)
        gauge(
            "zoneward_failover_operation_in_flight",
            "1 while a failover or switchover of the service is unfinished.",
            inFlight
        )
        var drillSuccess: [(String, Double)] = []
        var drillRTO: [(String, Double)] = []
        var drillRPO: [(String, Double)] = []
        var drillResult: [(String, Double)] = []
        var drillStale: [(String, Double)] = []
        let postures =
            (try? DrillAssessment.postures(configuration: settings.configuration, store: store, now: now)) ?? []
        for posture in postures {
            let label = "kind=\"\(posture.kind.rawValue)\",target=\"\(escape(posture.target))\""
            // Only targets with a policy or a drill: a job nobody drills is not reported stale.
            if posture.maxAgeSeconds != nil { drillStale.append((label, posture.stale ? 1 : 0)) }
            if let succeeded = posture.lastDrillSucceeded { drillResult.append((label, succeeded ? 1 : 0)) }
            guard let last = try? store.lastSuccessfulDrill(kind: posture.kind, target: posture.target) else {
                continue
            }
            drillSuccess.append((label, last.finishedAt.timeIntervalSince1970))
            if let rto = last.worstRTOSeconds { drillRTO.append((label, rto)) }
            if let rpo = last.rpoSeconds { drillRPO.append((label, rpo)) }
        }
        gauge(
            "zoneward_drill_last_success_timestamp_seconds",
            "When the last successful DR drill of the target finished.",
            drillSuccess
        )
        gauge(
            "zoneward_drill_rto_seconds",
            "Recovery time the last successful drill measured (the slower leg of a switchover).",
            drillRTO
        )
        gauge("zoneward_drill_rpo_seconds", "Data age the last successful drill measured.", drillRPO)
        gauge(
            "zoneward_drill_last_result",
            "1 when the newest drill of the target succeeded, 0 when it failed.",
            drillResult
        )
        gauge(
            "zoneward_drill_stale",
            "1 when the target's last successful drill is older than its drill policy's `every` (or there is none).",
            drillStale
        )
        return lines.joined(separator: "\n") + "\n"
    }

    private func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    private func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}
