import Foundation
import ZonewardAPI
import ZonewardBackup
import ZonewardState

/// `backup run --controller`: the run's catalog writes go to the controller's API (through to its leader),
/// and to a local mirror in memory that verification reads. The CronJob then needs no shared volume.
struct RemoteCatalogSink: BackupCatalogSink {
    let client: ControllerClient
    let mirror: StateStore

    func begin(_ record: BackupRecord, at time: Date) async throws {
        let started = try await client.beginBackup(BackupBegin(id: record.id, job: record.job, startedAt: time))
        for orphan in started.orphaned {
            printError("backup \(orphan.id) of job \(orphan.job) stopped beating; the controller marked it failed")
        }
        try mirror.beginBackup(record, at: time)
    }

    func heartbeat(_ id: String, at time: Date) async throws {
        try await client.heartbeatBackup(id)
        try mirror.heartbeat(id, at: time)
    }

    func complete(_ record: BackupRecord, at time: Date) async throws {
        _ = try await client.completeBackup(
            record.id,
            BackupCompletion(
                plainBytes: record.plainBytes ?? 0,
                storedBytes: record.storedBytes ?? 0,
                sha256: record.sha256 ?? "",
                keyId: record.keyId,
                objects: record.objects,
                manifest: record.manifest
            )
        )
        try mirror.updateBackup(record, at: time)
    }

    func fail(_ record: BackupRecord, at time: Date) async throws {
        _ = try await client.failBackup(record.id, error: record.error ?? "failed")
        try mirror.updateBackup(record, at: time)
    }
}
