import Foundation
import ZonewardState

/// Where `BackupRunner.run` records a run's progress: the writes a run makes to the catalog, and nothing
/// else. The state database (`StateStore`) is the default; a sink that forwards them to the controller
/// (`backup run --controller URL`) lets a run work without the database file.
public protocol BackupCatalogSink: Sendable {
    /// Records a run that starts; fails when a live run of the same job holds the lease.
    func begin(_ record: BackupRecord, at time: Date) async throws
    /// Renews the run's lease: a run whose heartbeats stop is orphaned.
    func heartbeat(_ id: String, at time: Date) async throws
    /// Records the run `completed`, with its objects and manifest.
    func complete(_ record: BackupRecord, at time: Date) async throws
    /// Records the run `failed`, with its error.
    func fail(_ record: BackupRecord, at time: Date) async throws
}

/// The catalog in the state database; `heartbeat(_:at:)` is the store's own.
extension StateStore: BackupCatalogSink {
    public func begin(_ record: BackupRecord, at time: Date) async throws {
        try beginBackup(record, at: time)
    }

    public func complete(_ record: BackupRecord, at time: Date) async throws {
        try updateBackup(record, at: time)
    }

    public func fail(_ record: BackupRecord, at time: Date) async throws {
        try updateBackup(record, at: time)
    }
}
