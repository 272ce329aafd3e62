import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import ZonewardState

@testable import ZonewardFailover

@Suite struct SnapshotBroadcasterTests {
    let content = ControlSnapshot(
        version: 0,
        services: ["orders": .init(activeRegion: "rb", epoch: 2)],
        drainedZones: []
    )

    /// Measured before: after a restart versions began at 1 again, so a proxy polling `after=N` waited out its
    /// 30 s poll while routing to the old region.
    @Test func aFollowerOfAnotherBootIsAnsweredAtOnce() async throws {
        let before = SnapshotBroadcaster(boot: "one", firstVersion: 1000)
        await before.publish(content)
        let seen = await before.snapshot(after: 0, boot: nil, wait: .zero)
        #expect(seen.boot == "one")
        #expect(seen.version == 1000)

        // The restarted controller numbers lower (its clock went back): the boot still tells.
        let after = SnapshotBroadcaster(boot: "two", firstVersion: 5)
        await after.publish(content)
        let started = ContinuousClock.now
        let answer = await after.snapshot(after: seen.version, boot: "one", wait: .seconds(60))
        // Well under the wait, with room for a concurrency pool kept busy by other tests.
        #expect(ContinuousClock.now - started < .seconds(30))
        #expect(answer.boot == "two")
        #expect(answer.services == content.services)
        var cursor = SnapshotCursor(boot: seen.boot, version: seen.version)
        let news = cursor.advance(to: answer)
        #expect(news)
    }

    @Test func aFollowerOfThisBootWaitsForAChange() async throws {
        let broadcaster = SnapshotBroadcaster(boot: "one", firstVersion: 7)
        await broadcaster.publish(content)
        let started = ContinuousClock.now
        let unchanged = await broadcaster.snapshot(after: 7, boot: "one", wait: .milliseconds(300))
        #expect(ContinuousClock.now - started >= .milliseconds(250))
        #expect(unchanged.version == 7)
        async let changed = broadcaster.snapshot(after: 7, boot: "one", wait: .seconds(30))
        try await Task.sleep(for: .milliseconds(50))
        await broadcaster.publish(ControlSnapshot(version: 0, services: [:], drainedZones: ["za"]))
        let next = await changed
        #expect(next.version == 8)
        #expect(next.drainedZones == ["za"])
    }

    @Test func versionsDoNotRestartAtOne() async {
        let first = SnapshotBroadcaster(now: Date(timeIntervalSince1970: 1_800_000_000))
        let restarted = SnapshotBroadcaster(now: Date(timeIntervalSince1970: 1_800_000_005))
        await first.publish(content)
        await first.publish(ControlSnapshot(version: 0, services: [:], drainedZones: ["za"]))
        await restarted.publish(content)
        let old = await first.snapshot(after: 0, wait: .zero)
        let new = await restarted.snapshot(after: 0, wait: .zero)
        #expect(new.version > old.version)
        #expect(new.boot != old.boot)
    }

    @Test func theAPIAnswersAPollOfAnotherBootAtOnce() async throws {
        let controller = try makeController()
        await controller.broadcaster.publish(content)
        let app = controller.makeApplication()
        try await app.test(.router) { client in
            let started = ContinuousClock.now
            let uri = "/v1/snapshot?after=99999999999999&boot=0f0e-old&wait=60s"
            try await client.execute(uri: uri, method: .get, headers: authorized) { response in
                #expect(response.status == .ok)
                let snapshot = try JSONDecoder().decode(
                    ControlSnapshot.self,
                    from: Data(response.body.readableBytesView)
                )
                #expect(snapshot.boot == controller.broadcaster.boot)
                #expect(snapshot.services == content.services)
            }
            #expect(ContinuousClock.now - started < .seconds(30))
            try await client.execute(uri: "/v1/snapshot?boot=../x", method: .get, headers: authorized) {
                #expect($0.status == .badRequest)
                #expect(errorMessage($0).hasPrefix("boot:"))
            }
        }
    }
}
