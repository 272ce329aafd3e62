import Foundation

/// One DR drill's measured result: a restore of a backup job's newest backup, or a planned switchover of a
/// service and its return. Kept in the state database (`drills` table) and listed by `zoneward drill history`.
public struct DrillRecord: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// The newest backup of a job restored into a scratch location and checked.
        case restore
        /// A planned switchover of a service through the controller (and back, per leg).
        case switchover
    }

    public var id: Int64?
    public var kind: Kind
    /// The backup job (restore) or the service (switchover).
    public var target: String
    public var startedAt: Date
    public var finishedAt: Date
    public var success: Bool
    /// Recovery time in seconds: the restore's, or one per switchover leg (there, back).
    public var rtoSeconds: [Double]
    /// Data age in seconds: the drill's time minus the restored backup's source snapshot time.
    public var rpoSeconds: Double?
    /// Failed probe requests during each switchover leg.
    public var probeErrors: [Int]
    /// What was restored or moved, and how it was checked.
    public var detail: String
    public var error: String?
    /// Who ran it: an operator's name, or `controller` for a scheduled drill.
    public var actor: String

    public init(
        id: Int64? = nil,
        kind: Kind,
        target: String,
        startedAt: Date,
        finishedAt: Date,
        success: Bool,
        rtoSeconds: [Double] = [],
        rpoSeconds: Double? = nil,
        probeErrors: [Int] = [],
        detail: String = "",
        error: String? = nil,
        actor: String = "operator"
    ) {
        self.id = id
        self.kind = kind
        self.target = target
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.success = success
        self.rtoSeconds = rtoSeconds
        self.rpoSeconds = rpoSeconds
        self.probeErrors = probeErrors
        self.detail = detail
        self.error = error
        self.actor = actor
    }

    /// The longest recovery time measured (the slower leg of a switchover); nil when none was.
    public var worstRTOSeconds: Double? { rtoSeconds.max() }
}

/// A backup job's or failover service's DR posture: its strategy, the RPO and RTO its last successful drill
/// measured against its targets, and whether that drill is older than its policy allows.
public struct DrillPosture: Codable, Sendable, Equatable {
    /// `restore` for a backup job, `switchover` for a failover service.
    public var kind: DrillRecord.Kind
    /// The backup job or the service.
    public var target: String
    /// `backups only` or `geo-replicated standby (…)`.
    public var strategy: String
    public var rtoTargetSeconds: Double?
    public var rpoTargetSeconds: Double?
    /// The last successful drill (RFC 3339), its measured RTO (the slower leg) and RPO.
    public var lastSuccessAt: String?
    public var measuredRTOSeconds: Double?
    public var measuredRPOSeconds: Double?
    /// Whether the newest drill, successful or not, succeeded; nil when none ran.
    public var lastDrillSucceeded: Bool?
    /// The policy's `every`, in seconds; nil when there is none.
    public var maxAgeSeconds: Double?
    /// The last successful drill is older than `every`, or there is none while a policy asks for one.
    public var stale: Bool
    /// A measurement is over its target.
    public var overTarget: Bool
    /// The posture in one line, as `zoneward failover status` and `drill status` print it.
    public var line: String

    public init(
        kind: DrillRecord.Kind,
        target: String,
        strategy: String,
        rtoTargetSeconds: Double?,
        rpoTargetSeconds: Double?,
        lastSuccessAt: String?,
        measuredRTOSeconds: Double?,
        measuredRPOSeconds: Double?,
        lastDrillSucceeded: Bool?,
        maxAgeSeconds: Double?,
        stale: Bool,
        overTarget: Bool,
        line: String
    ) {
        self.kind = kind
        self.target = target
        self.strategy = strategy
        self.rtoTargetSeconds = rtoTargetSeconds
        self.rpoTargetSeconds = rpoTargetSeconds
        self.lastSuccessAt = lastSuccessAt
        self.measuredRTOSeconds = measuredRTOSeconds
        self.measuredRPOSeconds = measuredRPOSeconds
        self.lastDrillSucceeded = lastDrillSucceeded
        self.maxAgeSeconds = maxAgeSeconds
        self.stale = stale
        self.overTarget = overTarget
        self.line = line
    }
}

/// The drills part of the status report: every target's posture, and the newest results.
public struct DrillSummary: Codable, Sendable, Equatable {
    public var posture: [DrillPosture]
    /// The newest drills, newest first (at most 20).
    public var recent: [DrillRecord]

    public init(posture: [DrillPosture], recent: [DrillRecord]) {
        self.posture = posture
        self.recent = recent
    }
}
