import Foundation
import ZonewardAPI
import ZonewardModel
import ZonewardState

extension StatusReport {
    /// Builds the report from the configuration and the state database, without probing anything.
    public static func build(configuration: ZonewardConfiguration, store: StateStore, now: Date) throws -> StatusReport
    {
        let postures = try DrillAssessment.postures(configuration: configuration, store: store, now: now)
        var services: [Service] = []
        for service in configuration.services where service.failover != nil {
            let state = try store.serviceState(service.name)
            let active = state?.activeRegion ?? service.primaryRegion ?? ""
            let health = Dictionary(
                uniqueKeysWithValues: try store.regionHealth(service: service.name).map { ($0.region, $0) }
            )
            let regions = service.regions.map { region in
                let observed = health[region]
                return Region(
                    region: region,
                    up: observed?.up,
                    lagSeconds: observed?.lagSeconds,
                    detail: observed?.detail ?? "not probed yet",
                    observedAt: observed?.observedAt.formatted(.iso8601)
                )
            }
            services.append(
                Service(
                    name: service.name,
                    activeRegion: active,
                    epoch: state?.epoch ?? 0,
                    mode: service.failover?.mode.rawValue ?? "manual",
                    regions: regions,
                    lastOperation: try store.operations(service: service.name, limit: 1).first.map(Operation.init),
                    automaticFailover: verdict(
                        service,
                        active: active,
                        health: health,
                        lastChange: state?.updatedAt,
                        now: now
                    )
                )
            )
        }
        for index in services.indices {
            services[index].drPosture =
                postures.first { $0.kind == .switchover && $0.target == services[index].name }?.line
        }
        return StatusReport(
            services: services,
            drills: DrillSummary(posture: postures, recent: try store.drills(limit: 20))
        )
    }

    static func verdict(
        _ service: ServiceConfiguration,
        active: String,
        health: [String: RegionHealth],
        lastChange: Date?,
        now: Date
    ) -> String {
        guard let candidate = FailoverGuards.candidate(for: service, activeRegion: active, health: health) else {
            return "would not fire: no standby region is up"
        }
        let results = FailoverGuards.evaluate(
            .init(
                service: service,
                activeRegion: active,
                target: candidate,
                health: health,
                lag: health[candidate]?.lagSeconds,
                lagError: "never measured",
                force: false,
                automatic: true,
                lastChange: lastChange,
                now: now
            )
        )
        let refused = results.filter { !$0.passed }
        if refused.isEmpty { return "would fire now: to \(candidate)" }
        return "would not fire: " + refused.map { "\($0.name) (\($0.detail))" }.joined(separator: "; ")
    }
}
