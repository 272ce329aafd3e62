import Foundation
import Logging
import Testing
import ZonewardModel

@testable import ZonewardFailover

/// Against a real etcd (/usr/bin/etcd; CI installs etcd-server) started by each test on loopback.
@Suite(
    .serialized,
    .enabled(if: EtcdServer.available, "no etcd at /usr/bin/etcd: install etcd-server to run the etcd election tests")
)
struct EtcdElectionTests {
    let recordA = LeaderRecord(id: "a/1/x", url: "http://127.0.0.1:9901")
    let recordB = LeaderRecord(id: "b/2/y", url: "http://127.0.0.1:9902")

    /// A short TTL by default, for the tests about expiry; `ttl` long where a test times something that must
    /// not wait for expiry (or for the fallback poll, a fifth of it), so a stalled thread pool cannot blur the
    /// two.
    func configuration(
        _ etcd: EtcdServer,
        endpoints: [String]? = nil,
        ttl: Duration = .seconds(2)
    ) -> ControllerHAConfiguration.EtcdElection {
        var configuration = ControllerHAConfiguration.EtcdElection(endpoints: endpoints ?? [etcd.url])
        configuration.prefix = "/test/"
        configuration.ttl = ttl
        return configuration
    }

    func term(_ gate: LeadershipGate) -> Int64? { try? gate.term() }

    @Test func oneOfTwoCandidatesWinsAndTheOtherLearnsTheLeader() async throws {
        let etcd = try await EtcdServer()
        defer { etcd.stop() }
        // TTL 4 s: A renews every 1.3 s and may act 3.5 s past a renewal, so a renewal held back 2 s by a
        // stalled pool does not cost A its leadership; the 5 s below still needs several renewals.
        let a = try EtcdElection(
            configuration(etcd, ttl: .seconds(4)),
            safetyMargin: .milliseconds(500),
            logger: quietLogger
        )
        // B's first endpoint refuses connections: it must move on to the next.
        let dead = "http://127.0.0.1:\(try freeLoopbackPort())"
        let b = try EtcdElection(
            configuration(etcd, endpoints: [dead, etcd.url], ttl: .seconds(4)),
            safetyMargin: .milliseconds(500),
            logger: quietLogger
        )
        let gateA = LeadershipGate(me: recordA)
        let gateB = LeadershipGate(me: recordB)
        let runA = Task { try await a.run(gate: gateA) }
        #expect(await eventually(within: .seconds(20)) { gateA.isLeader })
        let runB = Task { try await b.run(gate: gateB) }
        #expect(await eventually(within: .seconds(20)) { gateB.role == .follower(leader: recordA) })
        #expect(!gateB.isLeader)
        #expect(gateB.leader == recordA)

        // The term is the leader key's create revision, and leadership outlasts several TTLs of renewals.
        let stored = try await a.gateway.range(a.leaderKey, timeout: .seconds(2)).kv
        #expect(stored?.createRevision == term(gateA))
        #expect(try stored.map { try JSONDecoder().decode(LeaderRecord.self, from: $0.value) } == recordA)
        try await Task.sleep(for: .seconds(5))
        #expect(gateA.isLeader)
        #expect(!gateB.isLeader)

        runB.cancel()
        runA.cancel()
        _ = await (runA.result, runB.result)
    }

    @Test func aResigningLeaderIsReplacedAtOnce() async throws {
        let etcd = try await EtcdServer()
        defer { etcd.stop() }
        // A 120 s TTL (polled every 24 s): a takeover within 15 s is the resignation, not the expiry.
        let a = try EtcdElection(
            configuration(etcd, ttl: .seconds(120)),
            safetyMargin: .milliseconds(500),
            logger: quietLogger
        )
        let b = try EtcdElection(
            configuration(etcd, ttl: .seconds(120)),
            safetyMargin: .milliseconds(500),
            logger: quietLogger
        )
        let gateA = LeadershipGate(me: recordA)
        let gateB = LeadershipGate(me: recordB)
        let runA = Task { try await a.run(gate: gateA) }
        #expect(await eventually(within: .seconds(20)) { gateA.isLeader })
        let runB = Task { try await b.run(gate: gateB) }
        #expect(await eventually(within: .seconds(20)) { gateB.leader == recordA })
        let termA = try #require(term(gateA))

        let resigned = ContinuousClock.now
        runA.cancel()
        _ = await runA.result
        #expect(!gateA.isLeader)
        #expect(await eventually(within: .seconds(20)) { gateB.isLeader })
        let takeover = ContinuousClock.now - resigned
        #expect(takeover < .seconds(15), "took \(takeover)")
        #expect(try #require(term(gateB)) > termA)

        runB.cancel()
        _ = await runB.result
    }

    /// A leader cut off from etcd (no keep-alives, no revoke: as if killed or partitioned) stops acting
    /// before its lease can expire, and the follower takes over within TTL + 1 s. Writes fenced with the old
    /// term are then refused by etcd itself.
    @Test func aLeaderThatStopsRenewingIsReplacedAfterTheTTLAndFencedOff() async throws {
        let etcd = try await EtcdServer()
        defer { etcd.stop() }
        let faultsA = ElectionFaults()
        let a = try EtcdElection(
            configuration(etcd),
            safetyMargin: .milliseconds(500),
            logger: quietLogger,
            faults: faultsA
        )
        let b = try EtcdElection(configuration(etcd), safetyMargin: .milliseconds(500), logger: quietLogger)
        let gateA = LeadershipGate(me: recordA)
        let gateB = LeadershipGate(me: recordB)
        let runA = Task { try await a.run(gate: gateA) }
        #expect(await eventually(within: .seconds(20)) { gateA.isLeader })
        let runB = Task { try await b.run(gate: gateB) }
        #expect(await eventually(within: .seconds(20)) { gateB.leader == recordA })
        let termA = try #require(term(gateA))
        #expect(try await a.fencedWrite(name: "newest-copy", value: "copy-1", term: termA))
        #expect(try await b.read(name: "newest-copy") == "copy-1")

        let cut = ContinuousClock.now
        faultsA.partitioned = true
        var aStopped: ContinuousClock.Instant?
        var bStarted: ContinuousClock.Instant?
        // The latest deadline A's election granted it: what bounds A's acting, whenever this loop runs.
        var aDeadline = gateA.validUntil
        while ContinuousClock.now - cut < .seconds(15), bStarted == nil {
            aDeadline = max(aDeadline, gateA.validUntil)
            if aStopped == nil, !gateA.isLeader { aStopped = .now }
            if gateB.isLeader { bStarted = .now }
            try await Task.sleep(for: .milliseconds(5))
        }
        let stopped = try #require(aStopped, "the cut-off leader never stopped acting")
        let started = try #require(bStarted, "the follower never took over")
        // Safety: A's `isLeader` is worked out from the clock, so this holds however late the loop looks.
        #expect(stopped < started, "A stopped \(stopped - cut) after the cut, B started \(started - cut)")
        // Wide enough for a stalled pool to delay B's watch and campaign; still a few TTLs, not "never".
        #expect(started - cut <= .seconds(8), "took over \(started - cut) after the cut (TTL 2 s)")
        #expect(
            aDeadline - cut <= .milliseconds(1600),
            "A could act until \(aDeadline - cut) after the cut: more than TTL - margin after its last renewal"
        )
        let termB = try #require(term(gateB))
        #expect(termB > termA)

        // The old term's write is refused by the store; the new term's goes through.
        #expect(try await !b.fencedWrite(name: "newest-copy", value: "stale", term: termA))
        #expect(try await b.fencedWrite(name: "newest-copy", value: "copy-2", term: termB))
        #expect(try await b.read(name: "newest-copy") == "copy-2")
        #expect(try await !b.fencedWrite(name: "newest-copy", value: "none", term: 0))
        await #expect(throws: ElectionError.self) { try await b.fencedWrite(name: "../x", value: "v", term: termB) }
        #expect(try await b.read(name: "never-written") == nil)

        // Reconnected, A learns it lost and follows B.
        faultsA.partitioned = false
        #expect(await eventually(within: .seconds(20)) { gateA.leader == recordB })
        #expect(!gateA.isLeader)

        runA.cancel()
        runB.cancel()
        _ = await (runA.result, runB.result)
    }

    /// Over TLS with a client certificate (etcd started with --client-cert-auth): caFile, certFile, keyFile.
    @Test func tlsWithAClientCertificate() async throws {
        let etcd = try await EtcdServer(tls: true)
        defer { etcd.stop() }
        var configuration = configuration(etcd)
        configuration.caFile = etcd.certificate
        configuration.certFile = etcd.certificate
        configuration.keyFile = etcd.key
        let a = try EtcdElection(configuration, safetyMargin: .milliseconds(500), logger: quietLogger)
        let gateA = LeadershipGate(me: recordA)
        let runA = Task { try await a.run(gate: gateA) }
        #expect(await eventually(within: .seconds(20)) { gateA.isLeader })
        let termA = try #require(term(gateA))
        #expect(try await a.fencedWrite(name: "newest-copy", value: "tls", term: termA))
        #expect(try await a.read(name: "newest-copy") == "tls")
        runA.cancel()
        _ = await runA.result

        // Without the client certificate etcd refuses the handshake: no leadership.
        configuration.certFile = nil
        configuration.keyFile = nil
        let b = try EtcdElection(configuration, safetyMargin: .milliseconds(500), logger: quietLogger)
        let gateB = LeadershipGate(me: recordB)
        let runB = Task { try await b.run(gate: gateB) }
        try await Task.sleep(for: .seconds(1))
        #expect(!gateB.isLeader)
        runB.cancel()
        _ = await runB.result
    }

    /// A follower whose key is deleted (by an operator, say) campaigns at once.
    @Test func aDeletedKeyIsTakenAtOnce() async throws {
        let etcd = try await EtcdServer()
        defer { etcd.stop() }
        // A 120 s TTL (polled every 24 s): a takeover within 15 s is the watch seeing the delete.
        var a = try EtcdElection(
            configuration(etcd, ttl: .seconds(120)),
            safetyMargin: .milliseconds(500),
            logger: quietLogger
        )
        a.resignsOnCancel = false
        let b = try EtcdElection(
            configuration(etcd, ttl: .seconds(120)),
            safetyMargin: .milliseconds(500),
            logger: quietLogger
        )
        let gateA = LeadershipGate(me: recordA)
        let gateB = LeadershipGate(me: recordB)
        let runA = Task { try await a.run(gate: gateA) }
        #expect(await eventually(within: .seconds(20)) { gateA.isLeader })
        let runB = Task { try await b.run(gate: gateB) }
        #expect(await eventually(within: .seconds(20)) { gateB.leader == recordA })
        runA.cancel()
        _ = await runA.result
        let deleted = ContinuousClock.now
        try await b.gateway.delete(b.leaderKey, timeout: .seconds(2))
        #expect(await eventually(within: .seconds(20)) { gateB.isLeader })
        #expect(ContinuousClock.now - deleted < .seconds(15))
        runB.cancel()
        _ = await runB.result
    }
}
