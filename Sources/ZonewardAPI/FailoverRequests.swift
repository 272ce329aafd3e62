import Foundation

/// The body of `POST /v1/failover`.
public struct FailoverRequest: Codable, Sendable {
    public var service: String
    public var to: String
    public var force: Bool?
    public var dryRun: Bool?
    public var actor: String?
    public var reason: String?

    public init(service: String, to: String, force: Bool, dryRun: Bool, actor: String, reason: String?) {
        self.service = service
        self.to = to
        self.force = force
        self.dryRun = dryRun
        self.actor = actor
        self.reason = reason
    }
}

/// The answer to `POST /v1/failover`: the guards, the steps, and the operation when one was started.
public struct FailoverPlan: Codable, Sendable {
    public var service: String
    public var kind: String
    public var from: String
    public var to: String
    public var guards: [GuardResult]
    public var steps: [String]
    public var operation: Int64?
    public var refused: Bool

    public init(
        service: String,
        kind: String,
        from: String,
        to: String,
        guards: [GuardResult],
        steps: [String],
        operation: Int64?,
        refused: Bool
    ) {
        self.service = service
        self.kind = kind
        self.from = from
        self.to = to
        self.guards = guards
        self.steps = steps
        self.operation = operation
        self.refused = refused
    }
}

/// The body of `POST /v1/drains`.
public struct DrainRequest: Codable, Sendable {
    public var zone: String
    public var duration: String
    public var reason: String
    public var actor: String?

    public init(zone: String, duration: String, reason: String, actor: String? = nil) {
        self.zone = zone
        self.duration = duration
        self.reason = reason
        self.actor = actor
    }
}

/// One guard's verdict.
public struct GuardResult: Sendable, Equatable, Codable {
    public var name: String
    public var passed: Bool
    public var detail: String
    /// True when `--force` made this guard pass although it failed.
    public var overridden: Bool

    public init(name: String, passed: Bool, detail: String, overridden: Bool = false) {
        self.name = name
        self.passed = passed
        self.detail = detail
        self.overridden = overridden
    }
}
