import GRDB

/// Everything that can go wrong reading or writing Zoneward's state.
public enum StateError: Error, Sendable, CustomStringConvertible {
    /// The database could not be opened, migrated, read or written.
    case database(path: String, underlying: any Error)
    /// The folder that should hold the database file does not exist.
    case missingDirectory(path: String)
    /// A write carried an epoch older than the one stored: someone else decided since.
    case staleEpoch(service: String, expected: Int64, actual: Int64)
    case invalidArgument(String)
    /// A compare-and-set found another state than expected, or another runner holds the operation.
    case conflict(String)

    public var description: String {
        switch self {
        case .database(let path, let underlying):
            return "state database \(path): \(underlying)"
        case .missingDirectory(let path):
            return "state database \(path): its folder does not exist (create it, or pass --db PATH / set ZONEWARD_DB)"
        case .staleEpoch(let service, let expected, let actual):
            return "service \(service): epoch is \(actual), not \(expected); another change happened first"
        case .invalidArgument(let message), .conflict(let message):
            return message
        }
    }
}

extension StateError {
    /// True when SQLite answered busy or locked: another connection held the lock; trying again may work.
    public var isBusy: Bool {
        guard case .database(_, let underlying) = self, let error = underlying as? DatabaseError else { return false }
        return error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED
    }
}
