import Foundation
import GRDB

/// One shipped copy of the state database: made by the leader of `term`, the `sequence`-th it shipped in
/// that term. Copies order by term, then sequence: the greatest is the newest a leader acknowledged from.
public struct ShippedState: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var term: Int64
    public var sequence: Int64
    /// The object's name on its targets, e.g. `t00000000000000001234-s000000000042.zwb`.
    public var name: String

    public init(term: Int64, sequence: Int64, name: String) {
        self.term = term
        self.sequence = sequence
        self.name = name
    }

    public static func < (lhs: ShippedState, rhs: ShippedState) -> Bool {
        (lhs.term, lhs.sequence) < (rhs.term, rhs.sequence)
    }

    public var description: String { "\(name) (term \(term), #\(sequence))" }
}

/// Where the controller's state follows its leader: copies of the SQLite database on object storage.
///
/// The leader ships after each committed change and acknowledges an API write only once a copy that holds
/// it is durable; followers restore the newest copy to keep a warm one; a new leader restores the newest
/// before it acts.
public protocol StateReplica: Sendable {
    /// Ships a consistent copy of `store`'s database made in `term` as copy number `sequence`; returns once
    /// it is durable on every target (written, synced, checksum confirmed). Prunes older copies.
    func ship(_ store: StateStore, term: Int64, sequence: Int64) async throws -> ShippedState
    /// The newest copy on the targets, or nil when there is none yet.
    func newest() async throws -> ShippedState?
    /// Replaces the content of `store`'s database with `copy` (verified and decrypted first), in one
    /// transaction, so readers see the old state or the new one and nothing between.
    func restore(_ copy: ShippedState, into store: StateStore) async throws
}

extension StateStore {
    /// Writes a consistent copy of the database into a new file at `path` through SQLite's online backup
    /// API (one read transaction: writers go on meanwhile); returns the rows per table of the copy.
    public func copy(to path: String) throws(StateError) -> [String: Int] {
        do {
            // A scratch file: no journal and no fsync, the copy is synced where it is stored.
            var configuration = Configuration()
            configuration.prepareDatabase { db in
                try db.execute(sql: "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF")
            }
            let destination = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? destination.close() }
            try writer.backup(to: destination)
            return try destination.read(Self.rowCounts)
        } catch let error as StateError {
            throw error
        } catch {
            throw StateError.database(path: path, underlying: error)
        }
    }

    /// Replaces the whole content of this database with the database file at `path`, opened read-only, in
    /// one write transaction (SQLite's online backup API in a single step): readers see the old state or
    /// the new one, never a mix.
    public func replaceContents(withDatabaseAt path: String) throws(StateError) {
        do {
            var configuration = Configuration()
            configuration.readonly = true
            let source = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? source.close() }
            try source.backup(to: writer)
        } catch let error as StateError {
            throw error
        } catch {
            throw StateError.database(path: writer.path, underlying: error)
        }
    }

    /// Rows per table, for a manifest and to check a copy against it.
    public func rowCounts() throws(StateError) -> [String: Int] {
        try read(Self.rowCounts)
    }

    /// Rows per table of the database `db` is connected to (SQLite's own tables left out).
    public static func rowCounts(_ db: Database) throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for table in try String.fetchAll(
            db,
            sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ) {
            let quoted = "\"\(table.replacingOccurrences(of: "\"", with: "\"\""))\""
            counts[table] = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(quoted)") ?? 0
        }
        return counts
    }
}
