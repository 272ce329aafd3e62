import Foundation
import ZonewardModel

/// Whether a backup job's newest verified backup is recent enough for its schedule: it is fresh when that
/// backup started at most two scheduled intervals ago (`zoneward backup status`, the controller's page).
public struct BackupFreshness: Codable, Sendable, Equatable {
    public var job: String
    public var schedule: String
    public var fresh: Bool
    /// The oldest a verified backup may be, in seconds: two scheduled intervals.
    public var allowedSeconds: Double
    /// When the newest verified backup started; nil when none is verified.
    public var lastVerifiedAt: Date?
    /// When the newest completed (or verified) backup started.
    public var lastCompletedAt: Date?
    /// The newest run's state (`running`, `completed`, `verified`, `failed`), and its error.
    public var latestState: String?
    public var latestError: String?

    /// The freshness of `job` from its catalog records, newest first.
    public init(job: BackupJobConfiguration, records: [BackupRecord], now: Date) {
        let verified = records.first { $0.state == .verified }
        let completed = records.first { $0.state == .completed || $0.state == .verified }
        self.job = job.name
        schedule = job.schedule
        let allowed = 2 * job.expectedInterval
        allowedSeconds = allowed
        lastVerifiedAt = verified?.startedAt
        lastCompletedAt = completed?.startedAt
        latestState = records.first?.state.rawValue
        latestError = records.first?.error
        fresh = verified.map { now.timeIntervalSince($0.startedAt) <= allowed } ?? false
    }

    /// Seconds since the newest verified backup started; nil when none is verified.
    public func verifiedAge(at now: Date) -> Double? {
        lastVerifiedAt.map { now.timeIntervalSince($0) }
    }
}
