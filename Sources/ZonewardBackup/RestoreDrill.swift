import Foundation
import GRDB
import ZonewardModel
import ZonewardState

/// A restore drill: the newest backup of a job restored into a scratch location and checked as a real
/// restore would be (decryption, checksum, `PRAGMA integrity_check` and row counts for SQLite; a safe
/// extraction for a directory; `pg_restore -l` for PostgreSQL), timed, then deleted.
extension BackupRunner {
    /// Runs the drill and returns its record (never throws: a failure is a failed drill, with why). The RTO is
    /// the time to restore and check; the RPO is the drill's start minus the backup's source snapshot time.
    public func restoreDrill(
        _ job: BackupJobConfiguration,
        actor: String,
        now: @Sendable () -> Date = { Date() }
    ) async -> DrillRecord {
        let startedAt = now()
        var drill = DrillRecord(
            kind: .restore,
            target: job.name,
            startedAt: startedAt,
            finishedAt: startedAt,
            success: false,
            actor: actor
        )
        do {
            let (record, location) = try await newestBackup(of: job)
            let snapshot =
                (try? JSONDecoder().decode(BackupManifest.self, from: Data(record.manifest.utf8)))?.created
                ?? record.startedAt
            drill.rpoSeconds = startedAt.timeIntervalSince(snapshot)
            let clock = ContinuousClock()
            let began = clock.now
            let checked = try await restoreAndCheck(record, job: job)
            drill.rtoSeconds = [(clock.now - began).seconds]
            drill.success = true
            drill.detail = "restored \(record.id) (from the \(location)) into a scratch location: \(checked)"
        } catch {
            drill.error = "\(error)"
        }
        drill.finishedAt = max(now(), startedAt)
        return drill
    }

    /// The newest completed backup of `job` in the catalog, else on its targets.
    func newestBackup(of job: BackupJobConfiguration) async throws -> (BackupRecord, String) {
        if let record = try store.backups(job: job.name).first(where: {
            $0.state == .completed || $0.state == .verified
        }
        ) {
            return (record, "catalog")
        }
        if let found = try await targetBackups(of: job).first {
            return (found.record, "targets")
        }
        throw BackupError.io("no completed backup of \(job.name) in the catalog or on its targets")
    }

    /// Restores `record` into a private scratch directory, checks it, and removes it; says what was checked.
    func restoreAndCheck(_ record: BackupRecord, job: BackupJobConfiguration) async throws -> String {
        let scratch = try StagingDirectory.create(in: stagingRoot, purpose: "drill")
        defer { scratch.remove() }
        switch job.source {
        case .sqlite:
            let path = scratch.url.appendingPathComponent("restored.sqlite").path
            try await restore(record: record, to: path, force: false)
            var configuration = Configuration()
            configuration.readonly = true
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            let (integrity, tables) = try await queue.read { db in
                (
                    try String.fetchAll(db, sql: "PRAGMA integrity_check"),
                    try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master WHERE type = 'table'") ?? 0
                )
            }
            try queue.close()
            guard integrity == ["ok"] else {
                throw BackupError.io("the restored database fails integrity_check: \(integrity.prefix(5))")
            }
            return "it opens, integrity_check ok, \(tables) tables, checksum and row counts match the manifest"
        case .directory:
            let tar = scratch.url.appendingPathComponent("archive.tar").path
            try await restore(record: record, to: tar, force: false)
            let into = scratch.url.appendingPathComponent("extracted").path
            try ArchiveExtraction.extract(tar, into: into, force: false)
            let entries = FileManager.default.enumerator(atPath: into)?.allObjects.count ?? 0
            return "extracted \(entries) entries, checksum matches the manifest"
        case .postgres:
            let dump = scratch.url.appendingPathComponent("restored.dump").path
            try await restore(record: record, to: dump, force: false)
            return "the dump's table of contents reads (pg_restore -l), checksum matches the manifest"
        }
    }
}
