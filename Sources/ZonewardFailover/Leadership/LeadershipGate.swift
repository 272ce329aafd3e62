import Foundation
import Synchronization

/// Who a controller replica is, as its leader key or Lease records it: peers and clients reach it at `url`.
public struct LeaderRecord: Codable, Sendable, Hashable {
    /// Unique per process, e.g. `host/pid/nonce`.
    public var id: String
    /// The base URL of this replica's API, e.g. `http://10.0.3.7:9900`.
    public var url: String

    public init(id: String, url: String) {
        self.id = id
        self.url = url
    }
}

/// Why a replica may not act now.
public struct NotLeaderError: Error, Sendable, CustomStringConvertible {
    /// The leader as last seen, if known.
    public var leader: LeaderRecord?
    public var description: String {
        "this controller is not the leader" + (leader.map { "; the leader is \($0.id) at \($0.url)" } ?? "")
    }

    public init(leader: LeaderRecord?) {
        self.leader = leader
    }
}

/// The one place a controller asks whether it may act, and with which term.
///
/// An election keeps it up to date: `grant(term:until:)` after each successful campaign or renewal, with a
/// deadline before the lease can expire at the store (the renewal's *send* time plus the TTL, minus a safety
/// margin); `follow(leader:)` when another replica leads or leadership is lost. Every state write and every
/// driver call asks `term()` first, which throws once the deadline has passed, even if the election has not
/// noticed yet, so a leader that cannot renew stops acting before another can be elected.
///
/// A single replica (no `controller.ha`) uses `LeadershipGate.single()`: always the leader, term 0.
public final class LeadershipGate: Sendable {
    /// The role as the election last set it.
    public enum Role: Sendable, Equatable {
        case leader(term: Int64)
        case follower(leader: LeaderRecord?)
    }

    struct State {
        var role: Role = .follower(leader: nil)
        var validUntil: ContinuousClock.Instant
        var highestTerm: Int64 = 0
        var watchers: [UUID: AsyncStream<Role>.Continuation] = [:]
    }

    private let state: Mutex<State>
    private let now: @Sendable () -> ContinuousClock.Instant
    /// This replica's own record.
    public let me: LeaderRecord
    /// Whether this gate never expires (a single replica).
    public let isSingle: Bool

    public init(me: LeaderRecord, now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }) {
        self.me = me
        self.now = now
        self.isSingle = false
        state = Mutex(State(validUntil: now()))
    }

    private init(single me: LeaderRecord) {
        self.me = me
        self.now = { .now }
        self.isSingle = true
        state = Mutex(State(role: .leader(term: 0), validUntil: .now))
    }

    /// A gate that always grants term 0: one replica, no election.
    public static func single(me: LeaderRecord) -> LeadershipGate {
        LeadershipGate(single: me)
    }

    /// The election won or renewed leadership with `term`, valid until `until` by this process's clock.
    /// A term lower than one granted before is refused (returns false): terms only grow.
    @discardableResult
    public func grant(term: Int64, until: ContinuousClock.Instant) -> Bool {
        guard !isSingle else { return true }
        let (accepted, changed, watchers) = state.withLock { state -> (Bool, Bool, [AsyncStream<Role>.Continuation]) in
            guard term >= state.highestTerm else { return (false, false, []) }
            let changed = state.role != .leader(term: term)
            state.highestTerm = term
            state.role = .leader(term: term)
            state.validUntil = until
            return (true, changed, Array(state.watchers.values))
        }
        if changed { for watcher in watchers { watcher.yield(.leader(term: term)) } }
        return accepted
    }

    /// Another replica leads (or nobody is known to): this one must not act.
    public func follow(leader: LeaderRecord?) {
        guard !isSingle else { return }
        let (changed, watchers) = state.withLock { state -> (Bool, [AsyncStream<Role>.Continuation]) in
            let role = Role.follower(leader: leader)
            let changed = state.role != role
            state.role = role
            state.validUntil = now()
            return (changed, Array(state.watchers.values))
        }
        if changed { for watcher in watchers { watcher.yield(.follower(leader: leader)) } }
    }

    /// The current term if this replica may act now; else throws `NotLeaderError` naming the leader seen.
    public func term() throws(NotLeaderError) -> Int64 {
        if isSingle { return 0 }
        let instant = now()
        let result: Result<Int64, NotLeaderError> = state.withLock { state in
            switch state.role {
            case .leader(let term) where instant < state.validUntil: return .success(term)
            case .leader: return .failure(NotLeaderError(leader: nil))
            case .follower(let leader): return .failure(NotLeaderError(leader: leader))
            }
        }
        return try result.get()
    }

    /// Whether this replica may act now.
    public var isLeader: Bool { (try? term()) != nil }

    /// Until when a leader may act (the past for a follower): for tests that check the deadline an election
    /// granted rather than time when a polling task noticed it pass.
    var validUntil: ContinuousClock.Instant { state.withLock { $0.validUntil } }

    /// The role as the election last set it (a leader past its deadline still reads `.leader` here).
    public var role: Role { state.withLock { $0.role } }

    /// The leader's record as known: this replica's own while it leads, else the one last seen.
    public var leader: LeaderRecord? {
        switch role {
        case .leader: me
        case .follower(let leader): leader
        }
    }

    /// The roles as they change, starting with the current one.
    public func roles() -> AsyncStream<Role> {
        let (stream, continuation) = AsyncStream.makeStream(of: Role.self, bufferingPolicy: .bufferingNewest(8))
        let id = UUID()
        let current = state.withLock { state in
            state.watchers[id] = continuation
            return state.role
        }
        continuation.yield(current)
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.watchers.removeValue(forKey: id) }
        }
        return stream
    }
}

/// A way of electing one leader among controller replicas.
public protocol LeaderElection: Sendable {
    /// Campaigns, and while leader renews, until cancelled; keeps `gate` up to date (see `LeadershipGate`).
    /// On cancellation a leader resigns (deletes its key or releases its Lease) so the next one need not wait
    /// out the TTL. Errors talking to the store are retried, never thrown, except configuration errors.
    func run(gate: LeadershipGate) async throws

    /// Writes `value` under `name` in the election's store only while `term` still holds leadership there,
    /// checked by the store itself in the same transaction: returns false when refused (a newer term leads).
    func fencedWrite(name: String, value: String, term: Int64) async throws -> Bool

    /// The value last written under `name` by `fencedWrite`, or nil.
    func read(name: String) async throws -> String?
}

extension LeaderElection {
    public func fencedWrite(name: String, value: String, term: Int64) async throws -> Bool {
        throw ElectionError.unsupported("\(Self.self) has no fenced store")
    }

    public func read(name: String) async throws -> String? {
        throw ElectionError.unsupported("\(Self.self) has no fenced store")
    }
}

/// Why an election cannot do what it was asked.
public enum ElectionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `controller.ha` cannot be used as given; the message names the field.
    case configuration(String)
    /// The store could not be reached or answered with an error.
    case store(String)
    /// A name that cannot be stored (fenced writes).
    case invalidName(String)
    /// This election has no such operation.
    case unsupported(String)

    public var description: String {
        switch self {
        case .configuration(let message): "controller.ha: \(message)"
        case .store(let message): "election store: \(message)"
        case .invalidName(let message): "invalid fenced name: \(message)"
        case .unsupported(let message): message
        }
    }
}

extension LeadershipGate {
    /// The epoch a change made in `term` gets after `previous`: greater than any epoch an earlier term could
    /// have issued (`term << 20` and up; 2^20 changes per term), and greater than `previous`.
    public static func epoch(after previous: Int64, term: Int64) -> Int64 {
        let floor = term > 0 && term < (Int64.max >> 21) ? term << 20 : 0
        return max(previous + 1, floor)
    }
}
