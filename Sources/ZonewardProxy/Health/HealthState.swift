import ZonewardModel

/// Active health of one endpoint: healthy until `unhealthyThreshold` consecutive failed checks, then
/// unhealthy until `healthyThreshold` consecutive successes.
public typealias HealthState = ThresholdHealth

extension ThresholdHealth {
    /// Records one active check against a service's thresholds; returns the new health when it changed.
    public mutating func record(success: Bool, thresholds: HealthCheckConfiguration) -> Bool? {
        record(
            success: success,
            failuresToDown: thresholds.unhealthyThreshold,
            successesToUp: thresholds.healthyThreshold
        )
    }
}

/// Passive outlier detection for one service: endpoints that fail real requests `consecutiveFailures`
/// times in a row are ejected for `baseEjection × n` (n = how often that endpoint was ejected), never
/// more than `maxEjectedPercent` of a zone's endpoints at once. A pure state machine on an injected clock.
public struct OutlierDetector: Sendable {
    public enum Action: Sendable, Equatable {
        case none
        /// Eject until this many seconds from `now`.
        case eject(for: Duration)
        /// Would eject, but the zone already has as many ejected endpoints as allowed; `firstTime` is true
        /// for the first refusal since the endpoint's last ejection, so it is logged once.
        case refusedAtLimit(firstTime: Bool)
    }

    private var ejectedUntil: [String: ContinuousClock.Instant] = [:]
    private var ejectionCount: [String: Int] = [:]
    private var refused: Set<String> = []

    public init() {}

    public func isEjected(_ key: String, at now: ContinuousClock.Instant) -> Bool {
        (ejectedUntil[key].map { $0 > now }) ?? false
    }

    /// The endpoints ejected at `now`.
    public func ejected(at now: ContinuousClock.Instant) -> Set<String> {
        Set(ejectedUntil.filter { $0.value > now }.keys)
    }

    /// Decides on an endpoint that just reached its failure threshold.
    ///
    /// - Parameters:
    ///   - zonePeers: the keys of every endpoint of the service in the same zone, itself included.
    ///   - heldDown: endpoints that active health checks hold down. Their ejection does not count toward the
    ///     cap: the cap guards against ejecting endpoints that still pass their checks, and an endpoint that
    ///     is down either way frees no capacity by staying uncounted.
    public mutating func thresholdReached(
        _ key: String,
        zonePeers: [String],
        heldDown: Set<String> = [],
        configuration: OutlierDetectionConfiguration,
        at now: ContinuousClock.Instant
    ) -> Action {
        if isEjected(key, at: now) { return .none }
        let ejectedPeers = zonePeers.filter { $0 != key && isEjected($0, at: now) && !heldDown.contains($0) }.count
        let share = Double(ejectedPeers + 1) / Double(max(zonePeers.count, 1)) * 100
        guard share <= configuration.maxEjectedPercent else {
            return .refusedAtLimit(firstTime: refused.insert(key).inserted)
        }
        refused.remove(key)
        // Envoy's decay: each base-ejection period spent back in service takes one step off the multiplier,
        // so an endpoint that recovered for good starts over at the base length.
        var count = ejectionCount[key] ?? 0
        if let until = ejectedUntil[key], count > 0 {
            count = max(0, count - Int((now - until) / configuration.baseEjection))
        }
        // Grow until the cap; count stops growing there so a long-flapping endpoint's multiplier cannot overflow.
        let cap = max(1, Int((configuration.maxEjection / configuration.baseEjection).rounded(.up)))
        count = min(count + 1, cap)
        ejectionCount[key] = count
        let length = min(configuration.baseEjection * count, configuration.maxEjection)
        ejectedUntil[key] = now + length
        return .eject(for: length)
    }
}
