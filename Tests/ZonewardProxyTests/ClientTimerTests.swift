import NIOCore
import Testing
import ZonewardModel

@testable import ZonewardProxy

@Suite struct ClientTimerTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    var timeouts: TimeoutConfiguration {
        var timeouts = TimeoutConfiguration()
        timeouts.requestHead = .seconds(10)
        timeouts.clientBody = .seconds(30)
        timeouts.clientWrite = .seconds(60)
        timeouts.clientIdle = .seconds(60)
        return timeouts
    }

    func at(_ seconds: Int64) -> NIODeadline { start + .seconds(seconds) }

    /// A slowloris client sends a header line every 2 s: each byte is activity, but the head's deadline
    /// runs from its first byte and is not extended.
    @Test func tricklingAHeadDoesNotExtendItsDeadline() {
        var timer = ClientTimer(timeouts: timeouts, acceptedAt: start)
        timer.headBegan()
        var verdicts: [ClientTimer.Verdict] = []
        for second in stride(from: Int64(2), through: 12, by: 2) {
            timer.touch()
            timer.headBegan()
            verdicts.append(timer.tick(at: at(second), phase: .awaitingRequest))
        }
        #expect(verdicts.prefix(4).allSatisfy { $0 == .keep })
        #expect(verdicts[4] == .requestHeadTimeout(bytesSeen: true))
    }

    /// A connection that never sends a byte is closed at the head deadline without a 408 (a preconnect).
    @Test func aSilentConnectionIsClosedQuietlyAtTheHeadDeadline() {
        var timer = ClientTimer(timeouts: timeouts, acceptedAt: start)
        #expect(timer.tick(at: at(9), phase: .awaitingRequest) == .keep)
        #expect(timer.tick(at: at(10), phase: .awaitingRequest) == .requestHeadTimeout(bytesSeen: false))
    }

    /// Between requests the idle timeout applies; the next head's deadline runs from its first byte.
    @Test func keepAliveConnectionsIdleThenTimeTheNextHead() {
        var timer = ClientTimer(timeouts: timeouts, acceptedAt: start)
        timer.headEnded()
        timer.restartActivityClock()
        #expect(timer.tick(at: at(59), phase: .awaitingRequest) == .keep)
        timer.touch()
        timer.headBegan()  // marks the head's start at the last tick (59 s)
        #expect(timer.tick(at: at(68), phase: .awaitingRequest) == .keep)
        #expect(timer.tick(at: at(69), phase: .awaitingRequest) == .requestHeadTimeout(bytesSeen: true))
        var idle = ClientTimer(timeouts: timeouts, acceptedAt: start)
        idle.headEnded()
        #expect(idle.tick(at: at(60), phase: .awaitingRequest) == .idle)
    }

    /// A body withheld for `clientBody` is a 408; body bytes keep it alive; waiting on the proxy never counts.
    @Test func aWithheldBodyTimesOutButBusyPhasesDoNot() {
        var timer = ClientTimer(timeouts: timeouts, acceptedAt: start)
        timer.headEnded()
        #expect(timer.tick(at: at(100), phase: .busy) == .keep)
        timer.restartActivityClock()  // the endpoint can take the body from now (100 s)
        #expect(timer.tick(at: at(120), phase: .awaitingBody) == .keep)
        timer.touch()
        #expect(timer.tick(at: at(125), phase: .awaitingBody) == .keep)
        #expect(timer.tick(at: at(154), phase: .awaitingBody) == .keep)
        #expect(timer.tick(at: at(155), phase: .awaitingBody) == .bodyTimeout)
    }

    /// A client that stops taking the response is closed after `clientWrite`, in any phase.
    @Test func aClientThatDoesNotReadIsClosed() {
        var timer = ClientTimer(timeouts: timeouts, acceptedAt: start)
        timer.headEnded()
        _ = timer.tick(at: at(1), phase: .busy)
        timer.writabilityChanged(writable: false)
        #expect(timer.tick(at: at(60), phase: .busy) == .keep)
        #expect(timer.tick(at: at(61), phase: .busy) == .notReading)
        timer.writabilityChanged(writable: true)
        #expect(timer.tick(at: at(200), phase: .busy) == .keep)
    }

    @Test func ticksAQuarterOfTheShortestTimeout() {
        #expect(ClientTimer(timeouts: timeouts, acceptedAt: start).period == .milliseconds(2500))
        var short = timeouts
        short.requestHead = .seconds(1)
        #expect(ClientTimer(timeouts: short, acceptedAt: start).period == .milliseconds(250))
    }
}

@Suite struct RetryBudgetTests {
    let start = NIODeadline.uptimeNanoseconds(5_000_000_000)

    /// The window slides: a burst of failures just after a 10 s boundary gets the budget that the last
    /// 10 seconds of requests earned (a fixed window would have reset it to the floor of 3).
    @Test func theBudgetDoesNotResetAtAWindowBoundary() {
        var budget = RetryBudget()
        for index in 0..<1000 {
            budget.countRequest(at: start + .milliseconds(Int64(index * 9)))  // 1,000 requests over 9 s
        }
        let later = start + .milliseconds(10_003)
        var allowed = 0
        for _ in 0..<300 where budget.mayRetry(at: later, share: 0.2) { allowed += 1 }
        #expect(allowed > 150)
        #expect(allowed <= 200)
    }

    @Test func atLeastThreeRetriesAndNotMoreThanTheShare() {
        var budget = RetryBudget()
        var granted: [Bool] = []
        for _ in 0..<4 { granted.append(budget.mayRetry(at: start, share: 0.2)) }
        #expect(granted == [true, true, true, false])
        for _ in 0..<100 { budget.countRequest(at: start) }
        let more = budget.mayRetry(at: start, share: 0.2)  // 100 requests earn 20
        #expect(more)
        // Old requests and retries leave the window.
        let later = budget.mayRetry(at: start + .seconds(11), share: 0.2)
        #expect(later)
    }
}
