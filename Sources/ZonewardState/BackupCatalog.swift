import Foundation
import GRDB
import ZonewardAPI

extension BackupRecord.State: DatabaseValueConvertible {}

extension BackupRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "backup"
}

extension StateStore {
    static func registerBackupMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v3-backups") { db in
            try db.create(table: "backup") { t in
                t.primaryKey("id", .text)
                t.column("job", .text).notNull().indexed()
                t.column("state", .text).notNull()
                t.column("startedAt", .datetime).notNull()
                t.column("finishedAt", .datetime)
                t.column("heartbeatAt", .datetime).notNull()
                t.column("plainBytes", .integer)
                t.column("storedBytes", .integer)
                t.column("sha256", .text)
                t.column("keyId", .text)
                t.column("objects", .text).notNull()
                t.column("manifest", .text).notNull()
                t.column("error", .text)
            }
        }
    }

    /// Starts a run unless one of the same job is alive; a run whose heartbeat is older than `staleAfter`
    /// is marked failed (orphaned) first, so a dead process never blocks the next run.
    @discardableResult
    public func beginBackup(
        _ record: BackupRecord,
        staleAfter: TimeInterval = 60,
        at now: Date
    ) throws(StateError) -> [BackupRecord] {
        try write { db in
            let running = try BackupRecord.filter(Column("job") == record.job && Column("state") == "running").fetchAll(
                db
            )
            var orphaned: [BackupRecord] = []
            for var old in running {
                guard now.timeIntervalSince(old.heartbeatAt) > staleAfter else {
                    throw StateError.invalidArgument("backup job \(record.job) is already running (\(old.id))")
                }
                old.state = .failed
                old.error = "orphaned: its process stopped sending heartbeats"
                old.finishedAt = now
                try old.update(db)
                orphaned.append(old)
            }
            try record.insert(db)
            try Self.appendEvent(
                db,
                time: now,
                actor: "backup",
                kind: "backup.started",
                subject: record.job,
                detail: ["id": record.id]
            )
            return orphaned
        }
    }

    /// Marks failed every run whose heartbeat is older than `staleAfter`: its process died.
    @discardableResult
    public func sweepOrphanedBackups(staleAfter: TimeInterval, at now: Date) throws(StateError) -> [BackupRecord] {
        try write { db in
            let stale = try BackupRecord.filter(Column("state") == "running")
                .filter(Column("heartbeatAt") < now.addingTimeInterval(-staleAfter))
                .fetchAll(db)
            for var record in stale {
                record.state = .failed
                record.error = "orphaned: its process stopped sending heartbeats"
                record.finishedAt = now
                try record.update(db)
                try Self.appendEvent(
                    db,
                    time: now,
                    actor: "backup",
                    kind: "backup.failed",
                    subject: record.job,
                    detail: ["id": record.id, "error": record.error ?? ""]
                )
            }
            return stale
        }
    }

    public func heartbeat(_ id: String, at now: Date) throws(StateError) {
        try write { db in
            try db.execute(
                sql: "UPDATE backup SET heartbeatAt = ? WHERE id = ? AND state = 'running'",
                arguments: [now, id]
            )
        }
    }

    /// Saves a record's new state, with an event when it reaches `completed`, `verified` or `failed`.
    public func updateBackup(_ record: BackupRecord, at now: Date) throws(StateError) {
        try write { db in
            try record.update(db)
            try Self.appendEvent(
                db,
                time: now,
                actor: "backup",
                kind: "backup.\(record.state.rawValue)",
                subject: record.job,
                detail: ["id": record.id, "error": record.error ?? ""]
            )
        }
    }

    /// Removes a pruned backup from the catalog, with an event saying which rule let it go.
    public func forgetBackup(_ id: String, reason: String, at now: Date) throws(StateError) {
        try write { db in
            guard let record = try BackupRecord.fetchOne(db, key: id) else { return }
            try record.delete(db)
            try Self.appendEvent(
                db,
                time: now,
                actor: "backup",
                kind: "backup.pruned",
                subject: record.job,
                detail: ["id": id, "reason": reason]
            )
        }
    }

    public func backup(_ id: String) throws(StateError) -> BackupRecord? {
        try read { db in try BackupRecord.fetchOne(db, key: id) }
    }

    /// Newest first.
    public func backups(job: String? = nil, limit: Int = 100) throws(StateError) -> [BackupRecord] {
        try read { db in
            var request = BackupRecord.order(Column("startedAt").desc).limit(limit)
            if let job { request = request.filter(Column("job") == job) }
            return try request.fetchAll(db)
        }
    }
}
