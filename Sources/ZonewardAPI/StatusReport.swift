import Foundation

/// `zoneward failover status` and `GET /v1/status`: per service the active region, epoch, region health,
/// lag, last operation, and why automatic failover would or would not fire now.
public struct StatusReport: Codable, Sendable {
    public struct Region: Codable, Sendable {
        public var region: String
        public var up: Bool?
        public var lagSeconds: Double?
        public var detail: String
        public var observedAt: String?

        public init(region: String, up: Bool?, lagSeconds: Double?, detail: String, observedAt: String?) {
            self.region = region
            self.up = up
            self.lagSeconds = lagSeconds
            self.detail = detail
            self.observedAt = observedAt
        }
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

        public init(_ operation: FailoverOperation) {
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
        /// The DR posture in one line: strategy, last drill's RPO and RTO against the targets (nil from a
        /// controller that predates drills).
        public var drPosture: String?

        public init(
            name: String,
            activeRegion: String,
            epoch: Int64,
            mode: String,
            regions: [Region],
            lastOperation: Operation?,
            automaticFailover: String
        ) {
            self.name = name
            self.activeRegion = activeRegion
            self.epoch = epoch
            self.mode = mode
            self.regions = regions
            self.lastOperation = lastOperation
            self.automaticFailover = automaticFailover
        }
    }

    public var services: [Service]
    /// Every backup job's and failover service's drill posture and the newest drill results (nil from a
    /// controller that predates drills).
    public var drills: DrillSummary?

    public init(services: [Service], drills: DrillSummary? = nil) {
        self.services = services
        self.drills = drills
    }
}
