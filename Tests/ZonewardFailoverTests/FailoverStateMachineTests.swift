import Foundation
import Testing
import ZonewardFailover
import ZonewardModel
import ZonewardState

@Suite struct FailoverStateMachineTests {
    @Test func walksEveryStepInOrder() {
        #expect(
            FailoverStateMachine.remainingSteps(from: .planned)
                == [.planned, .fencing, .promoting, .rerouting, .verifying, .done]
        )
        #expect(FailoverStateMachine.next(after: .promoting, succeeded: false) == .failed)
        #expect(FailoverStateMachine.next(after: .done, succeeded: false) == .done)
    }

    @Test func eachStateHasItsAction() {
        var operation = FailoverOperation(
            id: 1,
            service: "orders",
            kind: .failover,
            fromRegion: "a",
            toRegion: "b",
            state: .planned,
            epochBefore: 3,
            epochAfter: nil,
            forced: false,
            actor: "t",
            reason: "r",
            error: nil,
            createdAt: Date(),
            updatedAt: Date()
        )
        var actions: [FailoverAction] = []
        while true {
            let action = FailoverStateMachine.action(for: operation)
            actions.append(action)
            if action == .finished { break }
            operation.state = FailoverStateMachine.next(after: operation.state, succeeded: true)
        }
        #expect(
            actions == [
                .checkGuards, .fence(region: "a"), .promote(region: "b"), .reroute, .verify(region: "b"), .finished,
            ]
        )
    }
}

@Suite struct FailoverGuardsTests {
    let service = ServiceConfiguration(
        name: "orders",
        listen: HostPort(host: "127.0.0.1", port: 1),
        wireProtocol: .tcp,
        routing: .activeRegion,
        regions: ["a", "b", "c"],
        endpoints: [],
        failover: FailoverConfiguration(
            mode: .automatic,
            probes: [
                "a": .init(target: .tcp(HostPort(host: "127.0.0.1", port: 2))),
                "b": .init(target: .tcp(HostPort(host: "127.0.0.1", port: 3))),
            ],
            maxLagSeconds: 5,
            lag: .command(["true"]),
            cooldown: .seconds(300)
        )
    )
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func health(_ up: [String: Bool]) -> [String: RegionHealth] {
        up.mapValues {
            RegionHealth(
                service: "orders",
                region: "",
                up: $0,
                lagSeconds: nil,
                detail: "",
                changedAt: now,
                observedAt: now
            )
        }
    }

    func evaluate(
        lag: Double?,
        force: Bool = false,
        automatic: Bool = true,
        lastChange: Date? = nil,
        up: [String: Bool] = ["a": false, "b": true]
    ) -> [String: GuardResult] {
        let results = FailoverGuards.evaluate(
            .init(
                service: service,
                activeRegion: "a",
                target: "b",
                health: health(up),
                lag: lag,
                force: force,
                automatic: automatic,
                lastChange: lastChange,
                now: now
            )
        )
        return Dictionary(uniqueKeysWithValues: results.map { ($0.name, $0) })
    }

    @Test func allowsAFailoverWhenEveryGuardPasses() {
        let results = evaluate(lag: 0)
        #expect(results.values.allSatisfy { $0.passed })
    }

    @Test func theLagGuardRefusesUnlessForced() {
        #expect(evaluate(lag: 9)["lag"]?.passed == false)
        #expect(evaluate(lag: nil)["lag"]?.passed == false)
        let forced = evaluate(lag: 9, force: true)["lag"]
        #expect(forced?.passed == true)
        #expect(forced?.overridden == true)
    }

    @Test func automaticNeedsThePrimaryDownAndTheCooldownOver() {
        #expect(evaluate(lag: 0, up: ["a": true, "b": true])["primary-down"]?.passed == false)
        #expect(evaluate(lag: 0, lastChange: now - 60)["cooldown"]?.passed == false)
        #expect(evaluate(lag: 0, lastChange: now - 600)["cooldown"]?.passed == true)
        // A manual switchover has neither guard.
        #expect(evaluate(lag: 0, automatic: false, up: ["a": true, "b": true])["primary-down"] == nil)
    }

    @Test func theTargetMustBeUp() {
        #expect(evaluate(lag: 0, up: ["a": false, "b": false])["target-up"]?.passed == false)
    }

    @Test func candidateIsTheFirstHealthyStandby() {
        #expect(
            FailoverGuards.candidate(for: service, activeRegion: "a", health: health(["b": false, "c": true])) == "c"
        )
        #expect(
            FailoverGuards.candidate(for: service, activeRegion: "a", health: health(["b": true, "c": true])) == "b"
        )
    }
}

@Suite struct FailoverStoreTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    /// Rerouting moves the epoch exactly once, however often it is repeated.
    @Test func rerouteIsIdempotentAndBumpsTheEpochOnce() throws {
        let store = try StateStore.inMemory()
        try store.setActiveRegion("a", of: "orders", actor: "t", reason: "initial", at: now)
        let operation = try store.planOperation(
            service: "orders",
            kind: .switchover,
            from: "a",
            to: "b",
            epochBefore: 1,
            forced: false,
            actor: "t",
            reason: "test",
            at: now
        )
        let id = try #require(operation.id)
        let first = try store.reroute(id, at: now)
        let again = try store.reroute(id, at: now)
        #expect(first.epoch == 2)
        #expect(again == first)
        #expect(try store.serviceState("orders")?.activeRegion == "b")
    }

    @Test func aSecondOperationWaitsForTheFirst() throws {
        let store = try StateStore.inMemory()
        _ = try store.planOperation(
            service: "orders",
            kind: .switchover,
            from: "a",
            to: "b",
            epochBefore: 0,
            forced: false,
            actor: "t",
            reason: "one",
            at: now
        )
        #expect(throws: StateError.self) {
            _ = try store.planOperation(
                service: "orders",
                kind: .switchover,
                from: "a",
                to: "c",
                epochBefore: 0,
                forced: false,
                actor: "t",
                reason: "two",
                at: now
            )
        }
    }

    @Test func aStaleOperationCannotReroute() throws {
        let store = try StateStore.inMemory()
        let operation = try store.planOperation(
            service: "orders",
            kind: .switchover,
            from: "a",
            to: "b",
            epochBefore: 0,
            forced: false,
            actor: "t",
            reason: "test",
            at: now
        )
        try store.setActiveRegion("c", of: "orders", actor: "someone", reason: "meanwhile", at: now)
        #expect(throws: StateError.self) { try store.reroute(operation.id ?? 0, at: now) }
    }
}
