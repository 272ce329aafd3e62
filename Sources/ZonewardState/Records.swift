import Foundation
import GRDB
import ZonewardAPI

extension ZoneDrain: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "zoneDrain"
}

/// Which region serves a service now, and the epoch that orders every change of it.
public struct ServiceState: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "serviceState"

    public var service: String
    public var activeRegion: String
    /// Incremented exactly once per change of active region.
    public var epoch: Int64
    public var updatedAt: Date

    public init(service: String, activeRegion: String, epoch: Int64, updatedAt: Date) {
        self.service = service
        self.activeRegion = activeRegion
        self.epoch = epoch
        self.updatedAt = updatedAt
    }
}

/// One entry of the append-only event log.
public struct StateEvent: Codable, Sendable, Equatable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "event"

    public var id: Int64?
    public var time: Date
    /// Who caused it: a user name, `controller`, `proxy`.
    public var actor: String
    /// Dotted kind, e.g. `zone.drained`, `zone.undrained`, `zone.drain-expired`.
    public var kind: String
    /// What it is about: a zone, a service, a backup.
    public var subject: String
    /// A JSON object with the details.
    public var detail: String

    public init(id: Int64? = nil, time: Date, actor: String, kind: String, subject: String, detail: String) {
        self.id = id
        self.time = time
        self.actor = actor
        self.kind = kind
        self.subject = subject
        self.detail = detail
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }
}
