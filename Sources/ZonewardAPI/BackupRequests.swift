import Foundation

/// The body of `POST /v1/backups`: what a backup run records as it starts (its catalog record is then
/// `running`, heartbeat at `startedAt`).
public struct BackupBegin: Codable, Sendable, Equatable {
    public var id: String
    /// The configured backup job.
    public var job: String
    /// When the run started; the controller's clock when absent.
    public var startedAt: Date?

    public init(id: String, job: String, startedAt: Date? = nil) {
        self.id = id
        self.job = job
        self.startedAt = startedAt
    }
}

/// The answer to `POST /v1/backups` (201): the new record, and the runs of the same job found dead
/// (heartbeat too old) and marked failed to make way for it.
public struct BackupStarted: Codable, Sendable, Equatable {
    public var backup: BackupRecord
    public var orphaned: [BackupRecord]

    public init(backup: BackupRecord, orphaned: [BackupRecord]) {
        self.backup = backup
        self.orphaned = orphaned
    }
}

/// The body of `POST /v1/backups/ID/complete`: what a run records once every object is written and its
/// checksum confirmed, in the catalog's own form (`objects` a JSON list of the stored objects, `manifest`
/// the manifest JSON).
public struct BackupCompletion: Codable, Sendable, Equatable {
    public var plainBytes: Int64
    public var storedBytes: Int64
    public var sha256: String
    public var keyId: String?
    public var objects: String
    public var manifest: String

    public init(
        plainBytes: Int64,
        storedBytes: Int64,
        sha256: String,
        keyId: String?,
        objects: String,
        manifest: String
    ) {
        self.plainBytes = plainBytes
        self.storedBytes = storedBytes
        self.sha256 = sha256
        self.keyId = keyId
        self.objects = objects
        self.manifest = manifest
    }
}

/// The body of `POST /v1/backups/ID/fail`: why the run failed.
public struct BackupFailure: Codable, Sendable, Equatable {
    public var error: String

    public init(error: String) {
        self.error = error
    }
}
