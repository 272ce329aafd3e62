import Testing

@testable import ZonewardProxy

@Suite struct ExchangeStateMachineTests {
    func machine(idempotent: Bool = true, keepAlive: Bool = true) -> ExchangeStateMachine {
        ExchangeStateMachine(request: .init(isIdempotent: idempotent, keepAlive: keepAlive), maxRetries: 2)
    }

    @Test func aConnectFailureIsRetriedForAnyMethodWithinTheLimit() {
        var exchange = machine(idempotent: false)
        #expect(exchange.upstreamFailed(.connectFailed("refused")) { true } == .retry)
        #expect(exchange.state == .connecting)
        #expect(exchange.upstreamFailed(.poolExhausted) { true } == .retry)
        #expect(exchange.upstreamFailed(.connectFailed("refused")) { true } == .respond(.connectFailed("")))
        #expect(exchange.retries == 2)
        #expect(exchange.state == .finished)
    }

    @Test func theBudgetIsAskedOnlyForARetryThatWouldOtherwiseHappen() {
        var exchange = machine(idempotent: false)
        exchange.connected()
        var asked = 0
        // A POST reset before answering is not retried: the budget is not even asked (nor charged).
        #expect(
            exchange.upstreamFailed(.resetBeforeResponse) {
                asked += 1
                return true
            } == .respond(.resetBeforeResponse)
        )
        #expect(asked == 0)
        var refused = machine()
        #expect(refused.upstreamFailed(.connectFailed("x")) { false } == .respond(.connectFailed("")))
    }

    @Test func anIdempotentResetIsRetriedOnlyBeforeBodyBytes() {
        var get = machine()
        get.connected()
        #expect(get.upstreamFailed(.resetBeforeResponse) { true } == .retry)
        var put = machine()
        put.connected()
        put.bodySent(5)
        #expect(put.upstreamFailed(.resetBeforeResponse) { true } == .respond(.resetBeforeResponse))
        var timedOut = machine()
        timedOut.connected()
        #expect(timedOut.upstreamFailed(.timeout) { true } == .respond(.timeout))
    }

    @Test func afterAnyResponseByteAFailureClosesTheClient() {
        var exchange = machine()
        exchange.connected()
        exchange.responseHead(status: 100, interim: true, closesClient: false)
        #expect(exchange.status == 0)
        #expect(exchange.responseStarted)
        #expect(exchange.upstreamFailed(.resetMidResponse) { true } == .closeClient)
        var local = machine()
        local.connected()
        local.responseHead(status: 200, interim: false, closesClient: false)
        #expect(local.localError() == .closeClient)
        var early = machine()
        #expect(early.localError() == .respond)
    }

    @Test func theEndingDecidesBothConnections() {
        var clean = machine()
        clean.connected()
        clean.responseHead(status: 200, interim: false, closesClient: false)
        #expect(clean.status == 200)
        #expect(
            clean.responseEnded(upstreamReusable: true, bodyComplete: true, quiescing: false)
                == .init(reuseUpstream: true, closeClient: false)
        )
        // The endpoint answered before the client finished its body: neither connection can be reused.
        var early = machine()
        early.responseHead(status: 413, interim: false, closesClient: false)
        #expect(
            early.responseEnded(upstreamReusable: true, bodyComplete: false, quiescing: false)
                == .init(reuseUpstream: false, closeClient: true)
        )
        var closing = machine(keepAlive: false)
        closing.responseHead(status: 200, interim: false, closesClient: false)
        #expect(closing.responseEnded(upstreamReusable: true, bodyComplete: true, quiescing: false).closeClient)
        var asked = machine()
        asked.responseHead(status: 200, interim: false, closesClient: true)
        #expect(asked.responseEnded(upstreamReusable: true, bodyComplete: true, quiescing: false).closeClient)
        var quiescing = machine()
        quiescing.responseHead(status: 200, interim: false, closesClient: false)
        #expect(
            quiescing.responseEnded(upstreamReusable: true, bodyComplete: true, quiescing: true)
                == .init(reuseUpstream: true, closeClient: true)
        )
    }
}
