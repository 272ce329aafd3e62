import Foundation
import GRDB
import ZonewardAPI

extension DrillRecord.Kind: DatabaseValueConvertible {}

extension DrillRecord: FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "drills"

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }
}

extension StateStore {
    static func registerDrillMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v4-drills") { db in
            try db.create(table: "drills") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("kind", .text).notNull()
                t.column("target", .text).notNull()
                t.column("startedAt", .datetime).notNull()
                t.column("finishedAt", .datetime).notNull()
                t.column("success", .boolean).notNull()
                // JSON arrays: one value per switchover leg, one for a restore.
                t.column("rtoSeconds", .text).notNull()
                t.column("rpoSeconds", .double)
                t.column("probeErrors", .text).notNull()
                t.column("detail", .text).notNull()
                t.column("error", .text)
                t.column("actor", .text).notNull()
            }
            try db.create(index: "drillsByTarget", on: "drills", columns: ["kind", "target", "startedAt"])
        }
    }

    /// Records a finished drill and a `drill.succeeded` or `drill.failed` event; returns it with its id.
    @discardableResult
    public func recordDrill(_ drill: DrillRecord) throws(StateError) -> DrillRecord {
        guard drill.finishedAt >= drill.startedAt else {
            throw StateError.invalidArgument("finishedAt: a drill cannot finish before it starts")
        }
        return try write { db in
            var stored = drill
            stored.id = nil
            try stored.insert(db)
            var detail = ["id": String(stored.id ?? 0), "kind": drill.kind.rawValue]
            if let rto = drill.worstRTOSeconds { detail["rtoSeconds"] = String(format: "%.3f", rto) }
            if let rpo = drill.rpoSeconds { detail["rpoSeconds"] = String(format: "%.3f", rpo) }
            if let error = drill.error { detail["error"] = error }
            try Self.appendEvent(
                db,
                time: drill.finishedAt,
                actor: drill.actor,
                kind: drill.success ? "drill.succeeded" : "drill.failed",
                subject: drill.target,
                detail: detail
            )
            return stored
        }
    }

    /// Drills, newest first, optionally of one kind and target.
    public func drills(
        kind: DrillRecord.Kind? = nil,
        target: String? = nil,
        limit: Int = 100
    ) throws(StateError) -> [DrillRecord] {
        try read { db in
            var request = DrillRecord.order(Column("startedAt").desc, Column("id").desc).limit(limit)
            if let kind { request = request.filter(Column("kind") == kind.rawValue) }
            if let target { request = request.filter(Column("target") == target) }
            return try request.fetchAll(db)
        }
    }

    /// The newest successful drill of `kind` on `target`.
    public func lastSuccessfulDrill(kind: DrillRecord.Kind, target: String) throws(StateError) -> DrillRecord? {
        try read { db in
            try DrillRecord.filter(Column("kind") == kind.rawValue && Column("target") == target)
                .filter(Column("success") == true)
                .order(Column("startedAt").desc, Column("id").desc)
                .fetchOne(db)
        }
    }
}
