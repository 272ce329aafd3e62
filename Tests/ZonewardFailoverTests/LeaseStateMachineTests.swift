import Foundation
import Synchronization
import Testing

@testable import ZonewardFailover

/// A clock the test moves by hand.
final class FakeClock: Sendable {
    private let instant = Mutex(ContinuousClock.now)
    var now: ContinuousClock.Instant { instant.withLock { $0 } }
    func advance(_ duration: Duration) { instant.withLock { $0 += duration } }
}

@Suite struct LeaseStateMachineTests {
    let other = LeaderRecord(id: "b", url: "http://127.0.0.2:9900")

    @Test func aWonCampaignGrantsFromItsSendTimeForTheValidity() {
        let clock = FakeClock()
        var machine = LeaseStateMachine(validity: .seconds(4))  // e.g. TTL 5 s − margin 1 s
        let sent = clock.now
        clock.advance(.milliseconds(300))
        let actions = machine.acquired(term: 7, sentAt: sent, now: clock.now)
        #expect(actions == [.grant(term: 7, until: sent + .seconds(4))])
        #expect(machine.validUntil == sent + .seconds(4))
    }

    @Test func aRenewalNeverExtendsFromTheAnswerTime() {
        let clock = FakeClock()
        var machine = LeaseStateMachine(validity: .seconds(4))
        _ = machine.acquired(term: 3, sentAt: clock.now, now: clock.now)
        clock.advance(.seconds(1))
        let sent = clock.now
        clock.advance(.seconds(2))  // a slow answer
        let actions = machine.renewed(sentAt: sent, now: clock.now)
        #expect(actions == [.grant(term: 3, until: sent + .seconds(4))])
        #expect(machine.validUntil != clock.now + .seconds(4))
    }

    @Test func aLateAnswerDoesNotReviveLapsedLeadership() {
        let clock = FakeClock()
        var machine = LeaseStateMachine(validity: .seconds(4))
        let start = clock.now
        _ = machine.acquired(term: 3, sentAt: start, now: start)
        let sent = start + .seconds(3)
        clock.advance(.seconds(5))  // the answer comes after the deadline
        let actions = machine.renewed(sentAt: sent, now: clock.now)
        #expect(actions == [.follow(leader: nil), .campaign])
        #expect(!machine.isLeader)
    }

    @Test func aRenewalSentAfterTheDeadlineIsIgnored() {
        let clock = FakeClock()
        var machine = LeaseStateMachine(validity: .seconds(4))
        _ = machine.acquired(term: 3, sentAt: clock.now, now: clock.now)
        clock.advance(.seconds(4))
        #expect(machine.tick(now: clock.now) == [.follow(leader: nil), .campaign])
        // Now a candidate: a renewal result does nothing; only a campaign can win again.
        #expect(machine.renewed(sentAt: clock.now, now: clock.now).isEmpty)
    }

    @Test func failedRenewalsKeepLeadershipUntilTheDeadlineThenReCampaign() {
        let clock = FakeClock()
        var machine = LeaseStateMachine(validity: .seconds(4))
        _ = machine.acquired(term: 9, sentAt: clock.now, now: clock.now)
        clock.advance(.seconds(2))
        #expect(machine.renewFailed(now: clock.now).isEmpty)
        #expect(machine.isLeader)
        clock.advance(.milliseconds(1999))
        #expect(machine.tick(now: clock.now).isEmpty)
        clock.advance(.milliseconds(1))
        #expect(machine.renewFailed(now: clock.now) == [.follow(leader: nil), .campaign])
        #expect(machine.role == .candidate)
        // Re-campaigning wins a later term.
        #expect(
            machine.acquired(term: 12, sentAt: clock.now, now: clock.now).first
                == .grant(term: 12, until: clock.now + .seconds(4))
        )
    }

    @Test func theGateStopsGrantingAtTheDeadlineEvenWithoutATick() throws {
        let clock = FakeClock()
        let gate = LeadershipGate(me: LeaderRecord(id: "a", url: "http://127.0.0.1:9900"), now: { clock.now })
        var machine = LeaseStateMachine(validity: .seconds(4))
        gate.apply(machine.acquired(term: 5, sentAt: clock.now, now: clock.now))
        #expect(try gate.term() == 5)
        clock.advance(.milliseconds(3999))
        #expect(gate.isLeader)
        clock.advance(.milliseconds(1))
        #expect(!gate.isLeader)
    }

    @Test func termsOnlyGrow() {
        let clock = FakeClock()
        var machine = LeaseStateMachine(validity: .seconds(4))
        _ = machine.acquired(term: 10, sentAt: clock.now, now: clock.now)
        _ = machine.lost(leader: other)
        let actions = machine.acquired(term: 8, sentAt: clock.now, now: clock.now)
        #expect(actions == [.follow(leader: nil)])
        #expect(!machine.isLeader)
        #expect(machine.highestTerm == 10)
        #expect(machine.acquired(term: 10, sentAt: clock.now, now: clock.now).first?.isGrant == true)
        #expect(machine.acquired(term: 11, sentAt: clock.now, now: clock.now).first?.isGrant == true)
        #expect(machine.highestTerm == 11)
    }

    @Test func aWinWhoseAnswerCameTooLateIsNotActedOn() {
        let clock = FakeClock()
        var machine = LeaseStateMachine(validity: .seconds(4))
        let sent = clock.now
        clock.advance(.seconds(5))
        #expect(machine.acquired(term: 2, sentAt: sent, now: clock.now) == [.follow(leader: nil), .campaign])
        #expect(!machine.isLeader)
    }

    @Test func losingToAnotherFollowsIt() {
        let clock = FakeClock()
        var machine = LeaseStateMachine(validity: .seconds(4))
        _ = machine.acquired(term: 2, sentAt: clock.now, now: clock.now)
        #expect(machine.lost(leader: other) == [.follow(leader: other)])
        #expect(machine.role == .follower(leader: other))
        #expect(machine.tick(now: clock.now + .seconds(100)).isEmpty)
        #expect(machine.resigned() == [.follow(leader: nil)])
    }

    @Test func applyingActionsDrivesTheGate() throws {
        let clock = FakeClock()
        let gate = LeadershipGate(me: LeaderRecord(id: "a", url: "u"), now: { clock.now })
        #expect(!gate.apply([.grant(term: 4, until: clock.now + .seconds(1))]))
        #expect(try gate.term() == 4)
        #expect(gate.apply([.follow(leader: other), .campaign]))
        #expect(gate.role == .follower(leader: other))
    }
}

extension LeaseStateMachine.Action {
    var isGrant: Bool {
        if case .grant = self { return true }
        return false
    }
}
