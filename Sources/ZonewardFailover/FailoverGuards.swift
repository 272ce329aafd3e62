import Foundation
import ZonewardAPI
import ZonewardModel
import ZonewardState

/// The guards of a change of primary, pure: evaluated from the configuration, the observed region
/// health and lag, and the time of the last change. Only the lag guard yields to `--force`.
public enum FailoverGuards {
    public struct Inputs: Sendable {
        public var service: ServiceConfiguration
        public var activeRegion: String
        public var target: String
        /// Observed health per region (absent: never probed).
        public var health: [String: RegionHealth]
        /// The target's replication lag in seconds, when it could be measured.
        public var lag: Double?
        public var lagError: String?
        public var force: Bool
        /// For automatic failover: the primary must be down and the cooldown over.
        public var automatic: Bool
        public var lastChange: Date?
        public var now: Date

        public init(
            service: ServiceConfiguration,
            activeRegion: String,
            target: String,
            health: [String: RegionHealth],
            lag: Double?,
            lagError: String? = nil,
            force: Bool,
            automatic: Bool,
            lastChange: Date?,
            now: Date
        ) {
            self.service = service
            self.activeRegion = activeRegion
            self.target = target
            self.health = health
            self.lag = lag
            self.lagError = lagError
            self.force = force
            self.automatic = automatic
            self.lastChange = lastChange
            self.now = now
        }
    }

    public static func evaluate(_ inputs: Inputs) -> [GuardResult] {
        var results: [GuardResult] = []
        let service = inputs.service
        let failover = service.failover ?? FailoverConfiguration()
        results.append(
            GuardResult(
                name: "target",
                passed: service.regions.contains(inputs.target) && inputs.target != inputs.activeRegion,
                detail: inputs.target == inputs.activeRegion
                    ? "\(inputs.target) is already the active region"
                    : service.regions.contains(inputs.target)
                        ? "\(inputs.target) is a standby region of \(service.name)"
                        : "\(inputs.target) is not a region of \(service.name) (\(service.regions.joined(separator: ", ")))"
            )
        )
        if failover.probes[inputs.target] == nil {
            results.append(
                GuardResult(name: "target-up", passed: true, detail: "no probe configured for \(inputs.target)")
            )
        } else if let health = inputs.health[inputs.target] {
            results.append(
                GuardResult(
                    name: "target-up",
                    passed: health.up,
                    detail: "\(inputs.target) is \(health.up ? "up" : "down") (\(health.detail))"
                )
            )
        } else {
            results.append(
                GuardResult(name: "target-up", passed: false, detail: "\(inputs.target) has not been probed yet")
            )
        }
        if let maxLag = failover.maxLagSeconds {
            let passed: Bool
            let detail: String
            if let lag = inputs.lag {
                passed = lag <= maxLag
                detail = "lag \(formatNumber(lag)) s, RPO \(formatNumber(maxLag)) s"
            } else {
                passed = false
                detail = "lag unknown (\(inputs.lagError ?? "not measured")), RPO \(formatNumber(maxLag)) s"
            }
            results.append(
                GuardResult(
                    name: "lag",
                    passed: passed || inputs.force,
                    detail: detail,
                    overridden: !passed && inputs.force
                )
            )
        }
        if inputs.automatic {
            let primaryDown = inputs.health[inputs.activeRegion].map { !$0.up } ?? false
            results.append(
                GuardResult(
                    name: "primary-down",
                    passed: primaryDown,
                    detail: "\(inputs.activeRegion) is \(primaryDown ? "down" : "not down")"
                )
            )
            if let lastChange = inputs.lastChange {
                let elapsed = inputs.now.timeIntervalSince(lastChange)
                let cooldown = failover.cooldown.seconds
                results.append(
                    GuardResult(
                        name: "cooldown",
                        passed: elapsed >= cooldown,
                        detail: "last change \(Int(elapsed)) s ago, cooldown \(TimeSpan.format(failover.cooldown))"
                    )
                )
            }
            results.append(
                GuardResult(
                    name: "mode",
                    passed: failover.mode == .automatic,
                    detail: "failover mode is \(failover.mode.rawValue)"
                )
            )
        }
        return results
    }

    /// The standby an automatic failover would choose: the first region after the primary, in declared
    /// order, that is up.
    public static func candidate(
        for service: ServiceConfiguration,
        activeRegion: String,
        health: [String: RegionHealth]
    ) -> String? {
        service.regions.first { $0 != activeRegion && (health[$0]?.up ?? false) }
    }
}
