/// How a service's primary region moves: probes, guards, and the drivers that fence and promote.
public struct FailoverConfiguration: Sendable, Equatable {
    public enum Mode: String, Sendable, CaseIterable {
        /// The controller fails over by itself when the guards allow.
        case automatic
        /// Only an operator's `zoneward failover execute` moves the primary.
        case manual
    }

    /// Default `manual`.
    public var mode: Mode
    /// One probe per region of the service.
    public var probes: [String: ProbeConfiguration]
    /// The recovery point objective: a standby more than this far behind is not promoted without `--force`.
    /// Nil means no lag guard.
    public var maxLagSeconds: Double?
    /// Where the replication lag of a region comes from.
    public var lag: LagSource?
    /// No automatic failover sooner than this after the previous change of primary. Default 5m.
    public var cooldown: Duration
    /// Isolates the old primary; nil skips fencing (the epoch still fences proxies).
    public var fence: DriverConfiguration?
    /// Makes the new primary writable; nil when promotion needs no action.
    public var promote: DriverConfiguration?
    /// How long the new primary has to pass its probe after rerouting. Default 30s.
    public var verifyTimeout: Duration
    /// Switchover drills: how often one must succeed, the controller's schedule for them (there and back), and
    /// the RTO and RPO targets (the RPO target defaults to `maxLagSeconds`).
    public var drill: DrillPolicy?

    public init(
        mode: Mode = .manual,
        probes: [String: ProbeConfiguration] = [:],
        maxLagSeconds: Double? = nil,
        lag: LagSource? = nil,
        cooldown: Duration = .seconds(300),
        fence: DriverConfiguration? = nil,
        promote: DriverConfiguration? = nil,
        verifyTimeout: Duration = .seconds(30)
    ) {
        self.mode = mode
        self.probes = probes
        self.maxLagSeconds = maxLagSeconds
        self.lag = lag
        self.cooldown = cooldown
        self.fence = fence
        self.promote = promote
        self.verifyTimeout = verifyTimeout
    }
}

/// A region health probe.
public struct ProbeConfiguration: Sendable, Equatable {
    public enum Target: Sendable, Equatable {
        /// GET; 2xx or 3xx is up.
        case http(String)
        /// A TCP connect that succeeds is up.
        case tcp(HostPort)
    }

    public var target: Target
    /// Default 1s.
    public var interval: Duration
    /// Default 1s.
    public var timeout: Duration
    /// Consecutive failures that mark the region down. Default 3.
    public var failuresToDown: Int
    /// Consecutive successes that mark it up again. Default 3.
    public var successesToUp: Int

    public init(
        target: Target,
        interval: Duration = .seconds(1),
        timeout: Duration = .seconds(1),
        failuresToDown: Int = 3,
        successesToUp: Int = 3
    ) {
        self.target = target
        self.interval = interval
        self.timeout = timeout
        self.failuresToDown = failuresToDown
        self.successesToUp = successesToUp
    }
}

/// Where a region's replication lag, in seconds, comes from. Both get the region in `ZONEWARD_REGION`
/// (the command's environment) or `?region=` (the URL's query).
public enum LagSource: Sendable, Equatable {
    /// A command that prints the lag in seconds.
    case command([String])
    /// A URL whose body is the lag in seconds.
    case url(String)
}

/// An action the failover runs: a command (exec, with a timeout and `ZONEWARD_SERVICE`, `ZONEWARD_FROM`,
/// `ZONEWARD_TO`, `ZONEWARD_EPOCH` in its environment) or a webhook (HTTP POST of the same as JSON).
public struct DriverConfiguration: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case command([String])
        case webhook(String)
    }

    public var kind: Kind
    /// Default 30s.
    public var timeout: Duration

    public init(kind: Kind, timeout: Duration = .seconds(30)) {
        self.kind = kind
        self.timeout = timeout
    }
}
