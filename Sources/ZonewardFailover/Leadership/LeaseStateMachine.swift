import Foundation

/// The campaign and renewal rules both elections share, as a pure state machine: the caller tells it what
/// the store answered and when the request was *sent*, and applies the actions it returns to the gate.
///
/// Safety before liveness: leadership acquired or renewed by a request sent at `t` is valid until
/// `t + validity` by this process's clock, never from the time the answer arrived (the store started its
/// countdown no earlier than `t`). `validity` is the TTL minus the safety margin on etcd, and client-go's
/// renew deadline on a Kubernetes Lease. A leader that has not renewed by then loses the gate and must
/// campaign again; an answer that arrives after that is ignored.
public struct LeaseStateMachine: Sendable {
    public typealias Instant = ContinuousClock.Instant

    public enum Role: Sendable, Equatable {
        /// Not leading, no leader known: campaign.
        case candidate
        /// Another replica leads (or the store said so without naming it).
        case follower(leader: LeaderRecord?)
        /// This replica leads with `term` until `validUntil`.
        case leader(term: Int64, validUntil: Instant)
    }

    public enum Action: Sendable, Equatable {
        /// `gate.grant(term:until:)`.
        case grant(term: Int64, until: Instant)
        /// `gate.follow(leader:)`.
        case follow(leader: LeaderRecord?)
        /// Campaign again now (leadership was lost or never valid).
        case campaign
    }

    /// How long a successful request keeps leadership valid from its send time.
    public let validity: Duration
    public private(set) var role: Role = .candidate
    /// The highest term granted so far; a lower one is refused (terms only grow).
    public private(set) var highestTerm: Int64?

    public init(validity: Duration) {
        self.validity = validity
    }

    /// When the current leadership lapses, if leading.
    public var validUntil: Instant? {
        if case .leader(_, let until) = role { return until }
        return nil
    }

    public var isLeader: Bool { validUntil != nil }

    /// A campaign whose first request was sent at `sentAt` won `term`.
    public mutating func acquired(term: Int64, sentAt: Instant, now: Instant) -> [Action] {
        if let highestTerm, term < highestTerm {
            // A store restored from an old backup, or a bug: never act under a term lower than one granted.
            role = .candidate
            return [.follow(leader: nil)]
        }
        let until = sentAt + validity
        guard now < until else {
            // Won, but the answer came too late to act on: the store may expire it any moment.
            role = .candidate
            return [.follow(leader: nil), .campaign]
        }
        highestTerm = term
        role = .leader(term: term, validUntil: until)
        return [.grant(term: term, until: until)]
    }

    /// A renewal sent at `sentAt` succeeded. Valid only while still leading: once lapsed, leadership is won
    /// again by campaigning, never revived by a late answer.
    public mutating func renewed(sentAt: Instant, now: Instant) -> [Action] {
        guard case .leader(let term, let until) = role else { return [] }
        guard now < until, sentAt < until else { return expire() }
        let extended = max(until, sentAt + validity)
        role = .leader(term: term, validUntil: extended)
        return [.grant(term: term, until: extended)]
    }

    /// A renewal failed (or could not be sent): leadership holds until its deadline, then lapses.
    public mutating func renewFailed(now: Instant) -> [Action] {
        tick(now: now)
    }

    /// The store says this replica does not hold leadership (another does, or its lease is gone).
    public mutating func lost(leader: LeaderRecord?) -> [Action] {
        role = .follower(leader: leader)
        return [.follow(leader: leader)]
    }

    /// Time passed: a leader past its deadline stops acting and campaigns again.
    public mutating func tick(now: Instant) -> [Action] {
        guard case .leader(_, let until) = role, now >= until else { return [] }
        return expire()
    }

    /// This replica resigned (on cancellation).
    public mutating func resigned() -> [Action] {
        role = .candidate
        return [.follow(leader: nil)]
    }

    private mutating func expire() -> [Action] {
        role = .candidate
        return [.follow(leader: nil), .campaign]
    }
}

extension LeadershipGate {
    /// Applies the state machine's actions; returns whether one asks to campaign again.
    @discardableResult
    func apply(_ actions: [LeaseStateMachine.Action]) -> Bool {
        var campaign = false
        for action in actions {
            switch action {
            case .grant(let term, let until): grant(term: term, until: until)
            case .follow(let leader): follow(leader: leader)
            case .campaign: campaign = true
            }
        }
        return campaign
    }
}
