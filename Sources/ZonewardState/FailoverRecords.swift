import Foundation
import GRDB
import ZonewardAPI

// The wire types live in ZonewardAPI; here they become records of the state database.

extension FailoverStep: DatabaseValueConvertible {}

extension FailoverOperation.Kind: DatabaseValueConvertible {}

extension FailoverOperation: FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "failoverOperation"

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }
}

extension FailoverStepRecord.Status: DatabaseValueConvertible {}

extension FailoverStepRecord: FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "failoverStep"

    public mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }
}

/// The controller's latest view of one region of one service.
public struct RegionHealth: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "regionHealth"

    public var service: String
    public var region: String
    public var up: Bool
    /// Replication lag in seconds when last measured.
    public var lagSeconds: Double?
    public var detail: String
    public var changedAt: Date
    public var observedAt: Date

    public init(
        service: String,
        region: String,
        up: Bool,
        lagSeconds: Double?,
        detail: String,
        changedAt: Date,
        observedAt: Date
    ) {
        self.service = service
        self.region = region
        self.up = up
        self.lagSeconds = lagSeconds
        self.detail = detail
        self.changedAt = changedAt
        self.observedAt = observedAt
    }
}
