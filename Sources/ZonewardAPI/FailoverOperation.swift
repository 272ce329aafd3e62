import Foundation

/// The steps of a failover or switchover, in order. `done` and `failed` are final.
public enum FailoverStep: String, Codable, Sendable, CaseIterable {
    case planned, fencing, promoting, rerouting, verifying, done, failed

    public var isFinal: Bool { self == .done || self == .failed }
}

/// One change of a service's primary region, persisted step by step so it survives a crash (the state
/// database's record; `GET /v1/operations` lists them).
public struct FailoverOperation: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        /// Unplanned: the primary is down.
        case failover
        /// Planned: the primary is healthy and hands over.
        case switchover
    }

    public var id: Int64?
    public var service: String
    public var kind: Kind
    public var fromRegion: String
    public var toRegion: String
    public var state: FailoverStep
    /// The service's epoch when the operation was planned; rerouting moves it to `epochBefore + 1`.
    public var epochBefore: Int64
    public var epochAfter: Int64?
    /// True when `--force` overrode the lag guard.
    public var forced: Bool
    public var actor: String
    public var reason: String
    public var error: String?
    public var createdAt: Date
    public var updatedAt: Date
    /// The process running the operation now (`host/pid/nonce`), and when it last said so; nil when none.
    public var runner: String?
    public var runnerSeenAt: Date?

    public init(
        id: Int64?,
        service: String,
        kind: Kind,
        fromRegion: String,
        toRegion: String,
        state: FailoverStep,
        epochBefore: Int64,
        epochAfter: Int64?,
        forced: Bool,
        actor: String,
        reason: String,
        error: String?,
        createdAt: Date,
        updatedAt: Date,
        runner: String? = nil,
        runnerSeenAt: Date? = nil
    ) {
        self.id = id
        self.service = service
        self.kind = kind
        self.fromRegion = fromRegion
        self.toRegion = toRegion
        self.state = state
        self.epochBefore = epochBefore
        self.epochAfter = epochAfter
        self.forced = forced
        self.actor = actor
        self.reason = reason
        self.error = error
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.runner = runner
        self.runnerSeenAt = runnerSeenAt
    }
}

/// One step of an operation as it happened: written before the step runs and again after.
public struct FailoverStepRecord: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable {
        case started, succeeded, failed
    }

    public var id: Int64?
    public var operationId: Int64
    public var step: FailoverStep
    public var status: Status
    public var detail: String
    public var at: Date

    public init(
        id: Int64? = nil,
        operationId: Int64,
        step: FailoverStep,
        status: Status,
        detail: String,
        at: Date
    ) {
        self.id = id
        self.operationId = operationId
        self.step = step
        self.status = status
        self.detail = detail
        self.at = at
    }
}

/// An operation with its steps, as `GET /v1/operations/ID` returns it.
public struct OperationReport: Codable, Sendable {
    public var operation: FailoverOperation
    public var steps: [FailoverStepRecord]

    public init(operation: FailoverOperation, steps: [FailoverStepRecord]) {
        self.operation = operation
        self.steps = steps
    }
}
