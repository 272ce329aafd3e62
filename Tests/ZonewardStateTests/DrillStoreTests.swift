import Foundation
import GRDB
import Testing
import ZonewardState

@Suite struct DrillStoreTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func drill(
        _ kind: DrillRecord.Kind,
        _ target: String,
        at start: Date,
        success: Bool = true,
        rto: [Double] = [2.5, 1.5]
    ) -> DrillRecord {
        DrillRecord(
            kind: kind,
            target: target,
            startedAt: start,
            finishedAt: start + 10,
            success: success,
            rtoSeconds: rto,
            rpoSeconds: kind == .restore ? 42 : nil,
            probeErrors: kind == .switchover ? [1, 0] : [],
            detail: "d",
            error: success ? nil : "broke",
            actor: "alice"
        )
    }

    @Test func recordsAndListsDrillsNewestFirstWithTheirLegs() throws {
        let store = try StateStore.inMemory()
        let first = try store.recordDrill(drill(.switchover, "orders", at: now))
        let second = try store.recordDrill(drill(.restore, "state", at: now + 60, rto: [0.25]))
        #expect(first.id == 1)
        #expect(second.id == 2)
        let all = try store.drills()
        #expect(all.map(\.target) == ["state", "orders"])
        // The per-leg arrays survive the round trip through SQLite.
        #expect(all[1].rtoSeconds == [2.5, 1.5])
        #expect(all[1].probeErrors == [1, 0])
        #expect(all[1].worstRTOSeconds == 2.5)
        #expect(all[0].rpoSeconds == 42)
        #expect(try store.drills(kind: .switchover).map(\.target) == ["orders"])
        #expect(try store.drills(target: "state").count == 1)
        #expect(try store.drills(limit: 1).map(\.target) == ["state"])
    }

    @Test func theLastSuccessSkipsFailedDrills() throws {
        let store = try StateStore.inMemory()
        try store.recordDrill(drill(.restore, "state", at: now))
        try store.recordDrill(drill(.restore, "state", at: now + 100, success: false))
        try store.recordDrill(drill(.restore, "other", at: now + 200))
        let last = try #require(try store.lastSuccessfulDrill(kind: .restore, target: "state"))
        #expect(last.startedAt == now)
        #expect(try store.lastSuccessfulDrill(kind: .switchover, target: "state") == nil)
    }

    @Test func everyDrillWritesAnEvent() throws {
        let store = try StateStore.inMemory()
        try store.recordDrill(drill(.switchover, "orders", at: now))
        try store.recordDrill(drill(.restore, "state", at: now, success: false))
        let events = try store.events(kindPrefix: "drill.")
        #expect(events.map(\.kind) == ["drill.failed", "drill.succeeded"])
        #expect(events.map(\.subject) == ["state", "orders"])
        #expect(events[0].detail.contains("broke"))
        #expect(events[1].detail.contains(#""rtoSeconds":"2.500""#))
    }

    @Test func refusesADrillThatFinishesBeforeItStarts() throws {
        let store = try StateStore.inMemory()
        var backwards = drill(.restore, "state", at: now)
        backwards.finishedAt = now - 1
        #expect(throws: StateError.self) { try store.recordDrill(backwards) }
        #expect(try store.drills().isEmpty)
    }
}
