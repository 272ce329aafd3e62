import Foundation
import Hummingbird
import ZonewardAPI
import ZonewardModel
import ZonewardState

/// Drill results over the API: `GET /v1/drills` (read scope) lists them, `POST /v1/drills` (operate scope)
/// records one that `zoneward drill` measured, so they live in the controller's state with everything else.
extension ControllerAPI {
    /// The most records `GET /v1/drills` lists (`limit`).
    static let maxDrillLimit = 1000
    /// The longest `detail` or `error` recorded; longer ones are cut.
    static let maxDrillText = 4096

    static func addDrillRoutes(to router: Router<ControllerRequestContext>, for controller: ControllerService) {
        router.get("/v1/drills") { request, _ in
            let query = request.uri.queryParameters
            let limit = try integer(query.get("limit"), field: "limit", in: 1...maxDrillLimit) ?? 100
            let kind = try query.get("kind").map { text in
                guard let kind = DrillRecord.Kind(rawValue: text) else {
                    throw APIError(.badRequest, "kind: expected restore or switchover, got \"\(text.prefix(64))\"")
                }
                return kind
            }
            let target = try query.get("target").map { try backupName($0, field: "target") }
            return try json(try controller.store.drills(kind: kind, target: target, limit: limit))
        }
        router.post("/v1/drills") { request, context in
            let drill = try DrillValidation.checked(
                try await decode(DrillRecord.self, request, context),
                configuration: controller.settings.configuration
            )
            _ = try controller.gate.term()
            let stored = try controller.store.recordDrill(drill)
            try await controller.durable()
            return try json(stored, status: .created)
        }
    }
}

/// The checks a recorded drill passes: a known target of its kind, sane numbers, bounded text.
public enum DrillValidation {
    /// The drill as it will be stored, or an error naming the bad field.
    static func checked(_ drill: DrillRecord, configuration: ZonewardConfiguration) throws -> DrillRecord {
        if let problem = problem(drill, configuration: configuration) { throw APIError(.badRequest, problem) }
        var checked = drill
        checked.id = nil
        checked.detail = String(drill.detail.prefix(ControllerAPI.maxDrillText))
        checked.error = drill.error.map { String($0.prefix(ControllerAPI.maxDrillText)) }
        checked.actor = String(drill.actor.prefix(200))
        return checked
    }

    /// What is wrong with `drill`, naming the field; nil when nothing is.
    public static func problem(_ drill: DrillRecord, configuration: ZonewardConfiguration) -> String? {
        switch drill.kind {
        case .restore:
            guard configuration.backupJob(named: drill.target) != nil else {
                let known = configuration.backups.map(\.name).joined(separator: ", ")
                return "target: \"\(drill.target.prefix(64))\" is not a backup job (known: \(known))"
            }
        case .switchover:
            guard configuration.service(named: drill.target)?.failover != nil else {
                let known = configuration.services.filter { $0.failover != nil }.map(\.name).joined(separator: ", ")
                return "target: \"\(drill.target.prefix(64))\" is not a failover service (known: \(known))"
            }
        }
        guard drill.finishedAt >= drill.startedAt else { return "finishedAt: before startedAt" }
        guard drill.rtoSeconds.count <= 8, drill.probeErrors.count <= 8 else {
            return "rtoSeconds: at most 8 legs"
        }
        for value in drill.rtoSeconds where !(value.isFinite && value >= 0 && value <= 1e9) {
            return "rtoSeconds: expected seconds from 0 to 1e9, got \(value)"
        }
        if let rpo = drill.rpoSeconds, !(rpo.isFinite && rpo >= -3600 && rpo <= 1e10) {
            return "rpoSeconds: expected seconds from -3600 to 1e10, got \(rpo)"
        }
        for count in drill.probeErrors where count < 0 { return "probeErrors: expected counts of 0 or more" }
        return nil
    }
}
