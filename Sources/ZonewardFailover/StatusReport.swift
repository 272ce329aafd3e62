import Foundation
import ZonewardModel
import ZonewardState

/// `zoneward failover status` and `/v1/status`: per service the active region, epoch, region health,
/// lag, last operation, and why automatic failover would or would not fire now.
public struct StatusReport: Codable, Sendable {
    public struct Region: Codable, Sendable {
        public var region: String
        public var up: Bool?
        public var lagSeconds: Double?
        public var detail: String
        public var observedAt: String?
    }

    public struct Operation: Codable, Sendable {
        public var id: Int64
        public var kind: String
        public var from: String
        public var to: String
        public var state: String
        public var forced: Bool
        public var error: String?
        public var updatedAt: String

        init(_ operation: FailoverOperation) {
            id = operation.id ?? 0
            kind = operation.kind.rawValue
            from = operation.fromRegion
            to = operation.toRegion
            state = operation.state.rawValue
            forced = operation.forced
            error = operation.error
            updatedAt = operation.updatedAt.formatted(.iso8601)
        }
    }

    public struct Service: Codable, Sendable {
        public var name: String
        public var activeRegion: String
        public var epoch: Int64
        public var mode: String
        public var regions: [Region]
        public var lastOperation: Operation?
        /// Whether automatic failover would fire now, and why or why not.
        public var automaticFailover: String
    }

    public var services: [Service]

    /// Builds the report from the configuration and the state database, without probing anything.
    public static func build(configuration: ZonewardConfiguration, store: StateStore, now: Date) throws -> StatusReport
    {
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
        return StatusReport(services: services)
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
