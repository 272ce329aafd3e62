import Foundation

/// One shipped copy of the state database: made by the leader of `term`, the `sequence`-th it shipped in
/// that term. Copies order by term, then sequence: the greatest is the newest a leader acknowledged from.
public struct ShippedState: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var term: Int64
    public var sequence: Int64
    /// The object's name on its targets, e.g. `t00000000000000001234-s000000000042.zws`.
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
