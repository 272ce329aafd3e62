import Foundation
import Logging
import Testing
import ZonewardDiscovery
import ZonewardModel

@testable import ZonewardFailover

/// Against integration/lib/k8s_api_double.py (the API server's wire format for Leases) started by each test.
@Suite(
    .serialized,
    .enabled(if: KubernetesAPIDouble.available, "needs python3, openssl and integration/lib/k8s_api_double.py")
)
struct KubernetesLeaseElectionTests {
    let recordA = LeaderRecord(id: "a/1/x", url: "http://127.0.0.1:9901")
    let recordB = LeaderRecord(id: "b/2/y", url: "http://127.0.0.1:9902")

    var configuration: ControllerHAConfiguration.KubernetesLeaseElection {
        var configuration = ControllerHAConfiguration.KubernetesLeaseElection()
        configuration.lease = "zoneward-test"
        configuration.leaseDuration = .seconds(3)
        configuration.renewDeadline = .seconds(2)
        configuration.retryPeriod = .milliseconds(500)
        return configuration
    }

    /// `longLease`: a 30 s lease (renewed within 20 s), for a test that times something which must not wait
    /// for the lease to run out, so a stalled thread pool cannot blur the two.
    func election(_ double: KubernetesAPIDouble, longLease: Bool = false) throws -> KubernetesLeaseElection {
        var configuration = configuration
        if longLease {
            configuration.leaseDuration = .seconds(30)
            configuration.renewDeadline = .seconds(20)
        }
        configuration.kubeconfig = double.kubeconfig
        var ha = ControllerHAConfiguration(election: .kubernetes(configuration), stateJob: "state")
        ha.safetyMargin = .seconds(1)
        let election = try makeElection(ha, logger: quietLogger)
        return try #require(election as? KubernetesLeaseElection)
    }

    func term(_ gate: LeadershipGate) -> Int64? { try? gate.term() }

    /// A Lease MicroTime (`2023-11-14T22:13:20.123456Z`) as a date.
    static func date(_ microTime: String) -> Date? {
        guard microTime.count == 27, microTime.hasSuffix("Z"),
            let whole = try? Date(String(microTime.prefix(19)) + "Z", strategy: .iso8601),
            let micros = Int(microTime.dropFirst(20).prefix(6))
        else { return nil }
        return whole.addingTimeInterval(Double(micros) / 1_000_000)
    }

    @Test func aCandidateTakesAnExpiredLeaseAndTransitionsAreTheTerm() async throws {
        let double = try await KubernetesAPIDouble()
        defer { double.stop() }
        var a = try election(double)
        a.resignsOnCancel = false  // acts out a killed leader: the Lease is left held
        let b = try election(double)
        #expect(a.namespace == "zw")  // from the kubeconfig's context
        let gateA = LeadershipGate(me: recordA)
        let gateB = LeadershipGate(me: recordB)
        let runA = Task { try await a.run(gate: gateA) }
        #expect(await eventually(within: .seconds(20)) { gateA.isLeader })
        #expect(term(gateA) == 0)  // created with leaseTransitions 0
        let runB = Task { try await b.run(gate: gateB) }
        #expect(await eventually(within: .seconds(20)) { gateB.leader == recordA })
        try await Task.sleep(for: .seconds(2))  // renewals keep it A's past a renewDeadline
        // A renewal a stalled pool held back past the renewDeadline can make A stand down for a moment, so A's
        // gate is given time; the Lease shows it stayed A's, with no transition.
        #expect(await eventually(within: .seconds(20)) { gateA.isLeader })
        #expect(!gateB.isLeader)

        let lease = try #require(try await b.fetch())
        #expect(lease["spec"]?["holderIdentity"]?.string == recordA.id)
        #expect(lease["spec"]?["leaseTransitions"]?.int64 == 0)
        #expect(lease["spec"]?["leaseDurationSeconds"]?.int64 == 3)
        let renewTime = try #require(lease["spec"]?["renewTime"]?.string)
        #expect(renewTime.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"#, options: .regularExpression) != nil)

        runA.cancel()
        _ = await runA.result
        let left = try #require(try await b.fetch())
        #expect(left["spec"]?["holderIdentity"]?.string == recordA.id)
        let lastRenewal = try #require(left["spec"]?["renewTime"]?.string.flatMap(Self.date))
        // B takes it once the record has not changed for leaseDuration on B's clock: 3 s after A's last
        // renewal at the earliest. Compared as the Lease records them (one host's clock), so a stalled pool
        // cannot make it look early or late.
        #expect(await eventually(within: .seconds(20)) { gateB.isLeader })
        #expect(term(gateB) == 1)
        let taken = try #require(try await b.fetch())
        let acquired = try #require(taken["spec"]?["acquireTime"]?.string.flatMap(Self.date))
        #expect(
            acquired.timeIntervalSince(lastRenewal) >= 2.999,
            "took over \(acquired.timeIntervalSince(lastRenewal)) s after the last renewal"
        )
        #expect(taken["spec"]?["holderIdentity"]?.string == recordB.id)
        #expect(taken["spec"]?["leaseTransitions"]?.int64 == 1)
        #expect(taken["metadata"]?["annotations"]?[KubernetesLeaseElection.leaderURLAnnotation]?.string == recordB.url)
        runB.cancel()
        _ = await runB.result
    }

    @Test func aResigningLeaderReleasesTheLease() async throws {
        let double = try await KubernetesAPIDouble()
        defer { double.stop() }
        let a = try election(double, longLease: true)
        let b = try election(double, longLease: true)
        let gateA = LeadershipGate(me: recordA)
        let gateB = LeadershipGate(me: recordB)
        let runA = Task { try await a.run(gate: gateA) }
        #expect(await eventually(within: .seconds(20)) { gateA.isLeader })
        let runB = Task { try await b.run(gate: gateB) }
        #expect(await eventually(within: .seconds(20)) { gateB.leader == recordA })

        let resigned = ContinuousClock.now
        runA.cancel()
        _ = await runA.result
        #expect(!gateA.isLeader)
        #expect(await eventually(within: .seconds(20)) { gateB.isLeader })
        // A retry period or a few (500 ms each), not the 30 s lease.
        #expect(ContinuousClock.now - resigned < .seconds(15))
        #expect(term(gateB) == 1)
        runB.cancel()
        _ = await runB.result
        let released = try #require(try await b.fetch())
        #expect(released["spec"]?["holderIdentity"]?.string == "")
        #expect(released["spec"]?["leaseTransitions"]?.int64 == 1)
    }

    /// Two candidates racing on the same read: one write wins, the other gets 409 and learns the holder.
    @Test func racingWritesConflict() async throws {
        let double = try await KubernetesAPIDouble()
        defer { double.stop() }
        let a = try election(double)
        let b = try election(double)
        var observationA = KubernetesLeaseElection.Observation()
        var observationB = KubernetesLeaseElection.Observation()
        var sentAt = ContinuousClock.now
        #expect(try await a.fetch() == nil)
        // Both saw no Lease: both create; the second gets 409 AlreadyExists.
        #expect(
            try await a.tryAcquireOrRenew(me: recordA, current: nil, observation: &observationA, sentAt: &sentAt)
                == .acquired(term: 0)
        )
        #expect(
            try await b.tryAcquireOrRenew(me: recordB, current: nil, observation: &observationB, sentAt: &sentAt)
                == .conflict
        )
        // A renews from a read that another writer then overwrites: 409 Conflict, nothing written.
        let read = try await a.fetch()
        #expect(
            await double.overwriteLease(
                namespace: "zw",
                name: "zoneward-test",
                spec: #"{"holderIdentity": "c", "leaseTransitions": 4, "leaseDurationSeconds": 3}"#
            )
        )
        #expect(
            try await a.tryAcquireOrRenew(me: recordA, current: read, observation: &observationA, sentAt: &sentAt)
                == .conflict
        )
        // Read again: held by c, not expired on A's clock.
        let current = try await a.fetch()
        #expect(
            try await a.tryAcquireOrRenew(me: recordA, current: current, observation: &observationA, sentAt: &sentAt)
                == .held(by: LeaderRecord(id: "c", url: ""))
        )

        // A running election gets through the conflicts: c stops renewing, A takes over with term 5.
        let gateA = LeadershipGate(me: recordA)
        let runA = Task { try await a.run(gate: gateA) }
        #expect(await eventually(within: .seconds(20)) { gateA.leader?.id == "c" })
        #expect(await eventually(within: .seconds(20)) { gateA.isLeader })
        #expect(term(gateA) == 5)
        runA.cancel()
        _ = await runA.result
    }

    /// A Lease with fields of the wrong types or out of range is taken over, never trapped on.
    @Test func oddLeaseFieldsDoNotTrap() async throws {
        let double = try await KubernetesAPIDouble()
        defer { double.stop() }
        let spec = #"{"holderIdentity": 5, "leaseTransitions": 9223372036854775807, "leaseDurationSeconds": -3}"#
        #expect(await double.overwriteLease(namespace: "zw", name: "zoneward-test", spec: spec))
        let a = try election(double)
        let gateA = LeadershipGate(me: recordA)
        let runA = Task { try await a.run(gate: gateA) }
        #expect(await eventually(within: .seconds(20)) { gateA.isLeader })
        #expect(term(gateA) == .max)
        runA.cancel()
        _ = await runA.result
    }

    @Test func fencedWritesNeedTheHolderAndItsTerm() async throws {
        let double = try await KubernetesAPIDouble()
        defer { double.stop() }
        var a = try election(double)
        a.resignsOnCancel = false
        let b = try election(double)
        #expect(try await a.fencedWrite(name: "newest-copy", value: "v0", term: 0) == false)  // not running
        let gateA = LeadershipGate(me: recordA)
        let gateB = LeadershipGate(me: recordB)
        let runA = Task { try await a.run(gate: gateA) }
        #expect(await eventually(within: .seconds(20)) { gateA.isLeader })
        let termA = try #require(term(gateA))
        #expect(try await a.fencedWrite(name: "newest-copy", value: "copy-1", term: termA))
        #expect(try await a.fencedWrite(name: "newest-copy", value: "copy-x", term: termA + 1) == false)
        #expect(try await a.read(name: "newest-copy") == "copy-1")
        #expect(try await b.read(name: "newest-copy") == "copy-1")
        let writer = a
        await #expect(throws: ElectionError.self) {
            try await writer.fencedWrite(name: "leader-url", value: "x", term: termA)
        }

        let runB = Task { try await b.run(gate: gateB) }
        runA.cancel()
        _ = await runA.result
        #expect(await eventually(within: .seconds(20)) { gateB.isLeader })
        let termB = try #require(term(gateB))
        #expect(termB > termA)
        #expect(try await a.fencedWrite(name: "newest-copy", value: "stale", term: termA) == false)
        #expect(try await b.fencedWrite(name: "newest-copy", value: "copy-2", term: termB))
        #expect(try await a.read(name: "newest-copy") == "copy-2")
        runB.cancel()
        _ = await runB.result
    }
}

@Suite struct MakeElectionTests {
    func error(_ configuration: ControllerHAConfiguration) -> String {
        do {
            _ = try makeElection(configuration, logger: quietLogger)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    @Test func etcdMistakesNameTheirField() {
        var etcd = ControllerHAConfiguration.EtcdElection(endpoints: [])
        #expect(error(.init(election: .etcd(etcd), stateJob: "s")).contains("etcd.endpoints"))
        etcd.endpoints = ["127.0.0.1:2379"]
        #expect(error(.init(election: .etcd(etcd), stateJob: "s")).contains("etcd.endpoints"))
        etcd.endpoints = ["http://127.0.0.1:2379"]
        etcd.ttl = .milliseconds(500)
        #expect(error(.init(election: .etcd(etcd), stateJob: "s")).contains("etcd.ttl"))
        etcd.ttl = .seconds(5)
        var ha = ControllerHAConfiguration(election: .etcd(etcd), stateJob: "s")
        ha.safetyMargin = .seconds(5)
        #expect(error(ha).contains("safetyMargin"))
        etcd.caFile = "/nonexistent/ca.pem"
        #expect(error(.init(election: .etcd(etcd), stateJob: "s")).contains("etcd.caFile"))
        etcd.caFile = nil
        etcd.certFile = "/nonexistent/cert.pem"
        #expect(error(.init(election: .etcd(etcd), stateJob: "s")).contains("etcd.keyFile"))
        etcd.certFile = nil
        #expect(error(.init(election: .etcd(etcd), stateJob: "s")) == "no error")
    }

    @Test func kubernetesMistakesNameTheirField() {
        var kubernetes = ControllerHAConfiguration.KubernetesLeaseElection()
        kubernetes.kubeconfig = "/nonexistent/kubeconfig"
        #expect(error(.init(election: .kubernetes(kubernetes), stateJob: "s")).contains("kubernetes.kubeconfig"))
        kubernetes.renewDeadline = .seconds(15)
        #expect(throws: ElectionError.self) { try KubernetesLeaseElection.validate(kubernetes) }
        #expect((try? KubernetesLeaseElection.validate(kubernetes)) == nil)
        do {
            try KubernetesLeaseElection.validate(kubernetes)
        } catch {
            #expect(error.description.contains("kubernetes.renewDeadline"))
        }
        kubernetes.renewDeadline = .seconds(2)
        do {
            try KubernetesLeaseElection.validate(kubernetes)
        } catch {
            #expect(error.description.contains("kubernetes.retryPeriod"))
        }
        kubernetes.renewDeadline = .seconds(10)
        kubernetes.lease = "Not A Name"
        do {
            try KubernetesLeaseElection.validate(kubernetes)
        } catch {
            #expect(error.description.contains("kubernetes.lease"))
        }
    }

    /// With no store reachable an election keeps trying, never leads, and returns when cancelled.
    @Test(.timeLimit(.minutes(1))) func anUnreachableEtcdIsRetriedNotThrown() async throws {
        let closed = try freeLoopbackPort()
        var configuration = ControllerHAConfiguration.EtcdElection(endpoints: ["http://127.0.0.1:\(closed)"])
        configuration.ttl = .seconds(2)
        let election = try EtcdElection(configuration, safetyMargin: .milliseconds(500), logger: quietLogger)
        let gate = LeadershipGate(me: LeaderRecord(id: "a", url: "http://127.0.0.1:1"))
        let run = Task { try await election.run(gate: gate) }
        try await Task.sleep(for: .seconds(1))
        #expect(!gate.isLeader)
        run.cancel()
        let result = await run.result
        #expect((try? result.get()) != nil)
        // No wall-clock bound on the return: with every suite running on 2 cores a task can wait seconds for a
        // thread. The time limit catches an election that ignores cancellation.
    }

    @Test func microTimeHasMicroseconds() {
        #expect(
            KubernetesLeaseElection.microTime(Date(timeIntervalSince1970: 1_700_000_000.123456))
                == "2023-11-14T22:13:20.123456Z"
        )
        #expect(KubernetesLeaseElection.microTime(Date(timeIntervalSince1970: .nan)) == "1970-01-01T00:00:00.000000Z")
    }
}
