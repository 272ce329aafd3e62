/// Healthy or not from consecutive check results, pure: unhealthy after `failuresToDown` failures in a row,
/// healthy again after `successesToUp` successes in a row; starts healthy. Endpoint health checks in the
/// proxy and region probes in the controller both use it.
public struct ThresholdHealth: Sendable, Equatable {
    public private(set) var isHealthy = true
    private var successes = 0
    private var failures = 0

    public init() {}

    /// Records one result; returns the new health when it changed.
    public mutating func record(success: Bool, failuresToDown: Int, successesToUp: Int) -> Bool? {
        if success {
            successes += 1
            failures = 0
            if !isHealthy && successes >= successesToUp {
                isHealthy = true
                return true
            }
        } else {
            failures += 1
            successes = 0
            if isHealthy && failures >= failuresToDown {
                isHealthy = false
                return false
            }
        }
        return nil
    }
}
