import Foundation
import GRDB
import ZonewardAPI

/// Zoneward's observed and decided state in SQLite: zone drains, active regions and epochs, the event log.
///
/// One `DatabasePool` (WAL) per file per process; every write is one transaction that keeps the invariants.
public struct StateStore: Sendable {
    let writer: any DatabaseWriter

    /// Wraps an open database and brings its schema up to date.
    public init(_ writer: any DatabaseWriter) throws(StateError) {
        self.writer = writer
        do {
            try Self.migrator.migrate(writer)
        } catch {
            throw StateError.database(path: writer.path, underlying: error)
        }
    }

    /// Opens (creating if needed) the database file at `path` in WAL mode.
    public static func open(path: String) throws(StateError) -> StateStore {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw StateError.missingDirectory(path: path)
        }
        var configuration = Configuration()
        // Another process (a proxy, the CLI) may hold the write lock briefly.
        configuration.busyMode = .timeout(5)
        do {
            let pool = try DatabasePool(path: path, configuration: configuration)
            return try StateStore(pool)
        } catch let error as StateError {
            throw error
        } catch {
            throw StateError.database(path: path, underlying: error)
        }
    }

    /// An empty in-memory database, for tests.
    public static func inMemory() throws(StateError) -> StateStore {
        do {
            return try StateStore(DatabaseQueue())
        } catch let error as StateError {
            throw error
        } catch {
            throw StateError.database(path: ":memory:", underlying: error)
        }
    }

    public var path: String { writer.path }

    /// A number that changes whenever anything is committed to the database, by this process or another
    /// (SQLite's `data_version` and this connection's total changes): the state shipper ships when it moves.
    public func changeCounter() throws(StateError) -> Int64 {
        do {
            return try writer.writeWithoutTransaction { db in
                let version = try Int64.fetchOne(db, sql: "PRAGMA data_version") ?? 0
                return (version << 32) &+ Int64(db.totalChangesCount)
            }
        } catch {
            throw StateError.database(path: writer.path, underlying: error)
        }
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "zoneDrain") { t in
                t.primaryKey("zone", .text)
                t.column("reason", .text).notNull()
                t.column("actor", .text).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("expiresAt", .datetime).notNull().indexed()
            }
            try db.create(table: "serviceState") { t in
                t.primaryKey("service", .text)
                t.column("activeRegion", .text).notNull()
                t.column("epoch", .integer).notNull().check { $0 >= 0 }
                t.column("updatedAt", .datetime).notNull()
            }
            try db.create(table: "event") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("time", .datetime).notNull().indexed()
                t.column("actor", .text).notNull()
                t.column("kind", .text).notNull().indexed()
                t.column("subject", .text).notNull()
                t.column("detail", .text).notNull().defaults(to: "{}")
            }
            // The event log is append-only: refuse edits and deletions at the database itself.
            try db.execute(
                sql: """
                    CREATE TRIGGER eventNoUpdate BEFORE UPDATE ON event
                    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
                    CREATE TRIGGER eventNoDelete BEFORE DELETE ON event
                    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
                    """
            )
        }
        registerFailoverMigrations(&migrator)
        registerBackupMigrations(&migrator)
        registerDrillMigrations(&migrator)
        return migrator
    }

    func write<T: Sendable>(_ updates: @Sendable (Database) throws -> T) throws(StateError) -> T {
        do {
            return try writer.write(updates)
        } catch let error as StateError {
            throw error
        } catch {
            throw StateError.database(path: writer.path, underlying: error)
        }
    }

    func read<T: Sendable>(_ value: @Sendable (Database) throws -> T) throws(StateError) -> T {
        do {
            return try writer.read(value)
        } catch {
            throw StateError.database(path: writer.path, underlying: error)
        }
    }
}

// MARK: - Events

extension StateStore {
    /// Appends one event inside the caller's transaction.
    static func appendEvent(
        _ db: Database,
        time: Date,
        actor: String,
        kind: String,
        subject: String,
        detail: [String: String]
    ) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(detail), as: UTF8.self)
        var event = StateEvent(time: time, actor: actor, kind: kind, subject: subject, detail: json)
        try event.insert(db)
    }

    /// Appends one event on its own.
    public func recordEvent(
        kind: String,
        subject: String,
        actor: String,
        detail: [String: String] = [:],
        at time: Date
    ) throws(StateError) {
        try write { db in
            try Self.appendEvent(db, time: time, actor: actor, kind: kind, subject: subject, detail: detail)
        }
    }

    /// The newest events first, optionally only those whose kind starts with `kindPrefix`.
    public func events(kindPrefix: String? = nil, limit: Int = 100) throws(StateError) -> [StateEvent] {
        try read { db in
            var request = StateEvent.order(Column("id").desc).limit(limit)
            if let kindPrefix {
                request = request.filter(Column("kind").like("\(kindPrefix)%"))
            }
            return try request.fetchAll(db)
        }
    }
}

// MARK: - Zone drains

extension StateStore {
    /// Drains `zone` until `expiresAt`, replacing any drain it already has, and records the event.
    @discardableResult
    public func drainZone(
        _ zone: String,
        until expiresAt: Date,
        reason: String,
        actor: String,
        at now: Date
    ) throws(StateError) -> ZoneDrain {
        guard expiresAt > now else { throw StateError.invalidArgument("the drain must end after it starts") }
        let drain = ZoneDrain(zone: zone, reason: reason, actor: actor, createdAt: now, expiresAt: expiresAt)
        try write { db in
            let previous = try ZoneDrain.fetchOne(db, key: zone)
            try drain.upsert(db)
            var detail = ["reason": reason, "expiresAt": iso8601(expiresAt)]
            if let previous, previous.isActive(at: now) { detail["replacedExpiresAt"] = iso8601(previous.expiresAt) }
            try Self.appendEvent(db, time: now, actor: actor, kind: "zone.drained", subject: zone, detail: detail)
        }
        return drain
    }

    /// Ends the drain of `zone`. Returns false (and records nothing) when the zone was not drained.
    @discardableResult
    public func undrainZone(_ zone: String, actor: String, at now: Date) throws(StateError) -> Bool {
        try write { db in
            guard let drain = try ZoneDrain.fetchOne(db, key: zone) else { return false }
            try drain.delete(db)
            let wasActive = drain.isActive(at: now)
            try Self.appendEvent(
                db,
                time: now,
                actor: actor,
                kind: wasActive ? "zone.undrained" : "zone.drain-expired",
                subject: zone,
                detail: ["reason": drain.reason, "expiresAt": iso8601(drain.expiresAt)]
            )
            return wasActive
        }
    }

    /// Drains in force at `now`. Expired ones stop counting by themselves, whether or not they were swept.
    public func activeDrains(at now: Date) throws(StateError) -> [ZoneDrain] {
        try read { db in
            try ZoneDrain.filter(Column("expiresAt") > now).order(Column("zone")).fetchAll(db)
        }
    }

    /// Removes drains that expired by `now`, recording a `zone.drain-expired` event for each.
    @discardableResult
    public func sweepExpiredDrains(at now: Date) throws(StateError) -> [ZoneDrain] {
        try write { db in
            let expired = try ZoneDrain.filter(Column("expiresAt") <= now).fetchAll(db)
            for drain in expired {
                try drain.delete(db)
                try Self.appendEvent(
                    db,
                    time: now,
                    actor: "zoneward",
                    kind: "zone.drain-expired",
                    subject: drain.zone,
                    detail: ["reason": drain.reason, "expiresAt": iso8601(drain.expiresAt)]
                )
            }
            return expired
        }
    }
}

// MARK: - Service state

extension StateStore {
    public func serviceState(_ service: String) throws(StateError) -> ServiceState? {
        try read { db in try ServiceState.fetchOne(db, key: service) }
    }

    public func serviceStates() throws(StateError) -> [ServiceState] {
        try read { db in try ServiceState.order(Column("service")).fetchAll(db) }
    }

    /// Makes `region` the active region of `service`, incrementing its epoch; a no-op when it already is.
    ///
    /// `expectedEpoch`, when given, must equal the current epoch (0 for a service with no state yet):
    /// a writer holding stale state is refused rather than allowed to overwrite a newer decision.
    @discardableResult
    public func setActiveRegion(
        _ region: String,
        of service: String,
        expectedEpoch: Int64? = nil,
        actor: String,
        reason: String,
        at now: Date
    ) throws(StateError) -> ServiceState {
        try write { db in
            let current = try ServiceState.fetchOne(db, key: service)
            let currentEpoch = current?.epoch ?? 0
            if let expectedEpoch, expectedEpoch != currentEpoch {
                throw StateError.staleEpoch(service: service, expected: expectedEpoch, actual: currentEpoch)
            }
            if let current, current.activeRegion == region { return current }
            let next = ServiceState(service: service, activeRegion: region, epoch: currentEpoch + 1, updatedAt: now)
            try next.upsert(db)
            try Self.appendEvent(
                db,
                time: now,
                actor: actor,
                kind: "service.active-region-changed",
                subject: service,
                detail: [
                    "from": current?.activeRegion ?? "", "to": region, "epoch": String(next.epoch), "reason": reason,
                ]
            )
            return next
        }
    }
}

/// An ISO 8601 timestamp in UTC to the second, as stored in event details and printed by the CLI.
public func iso8601(_ date: Date) -> String {
    date.formatted(.iso8601)
}
