import Foundation
import GRDB
import Testing
import ZonewardState

@Suite struct StateStoreTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func drainsCountUntilTheyExpire() throws {
        let store = try StateStore.inMemory()
        try store.drainZone("us-east-1a", until: now + 1800, reason: "AZ impairment", actor: "alice", at: now)
        #expect(try store.activeDrains(at: now).map(\.zone) == ["us-east-1a"])
        #expect(try store.activeDrains(at: now + 1799).count == 1)
        // Expired drains stop counting without anyone sweeping them.
        #expect(try store.activeDrains(at: now + 1800).isEmpty)
        let swept = try store.sweepExpiredDrains(at: now + 1800)
        #expect(swept.map(\.zone) == ["us-east-1a"])
        let kinds = try store.events().map(\.kind)
        #expect(kinds == ["zone.drain-expired", "zone.drained"])
    }

    @Test func everyChangeWritesAnEvent() throws {
        let store = try StateStore.inMemory()
        try store.drainZone("a", until: now + 60, reason: "maintenance", actor: "alice", at: now)
        try store.drainZone("a", until: now + 120, reason: "longer", actor: "bob", at: now + 10)
        #expect(try store.activeDrains(at: now + 100).first?.reason == "longer")
        #expect(try store.undrainZone("a", actor: "carol", at: now + 20))
        #expect(try store.undrainZone("a", actor: "carol", at: now + 21) == false)
        let events = try store.events()
        #expect(events.map(\.kind) == ["zone.undrained", "zone.drained", "zone.drained"])
        #expect(events.map(\.actor) == ["carol", "bob", "alice"])
        #expect(events[1].detail.contains(#""replacedExpiresAt""#))
        #expect(events.allSatisfy { $0.subject == "a" })
    }

    @Test func refusesADrainThatEndsBeforeItStarts() throws {
        let store = try StateStore.inMemory()
        #expect(throws: StateError.self) {
            try store.drainZone("a", until: now, reason: "x", actor: "alice", at: now)
        }
        #expect(try store.events().isEmpty)
    }

    @Test func activeRegionChangesIncrementTheEpochOnce() throws {
        let store = try StateStore.inMemory()
        let first = try store.setActiveRegion("east", of: "orders", actor: "controller", reason: "initial", at: now)
        #expect(first.epoch == 1)
        let same = try store.setActiveRegion("east", of: "orders", actor: "controller", reason: "again", at: now)
        #expect(same.epoch == 1)
        let moved = try store.setActiveRegion(
            "west",
            of: "orders",
            expectedEpoch: 1,
            actor: "controller",
            reason: "failover",
            at: now
        )
        #expect(moved.epoch == 2)
        #expect(try store.serviceState("orders")?.activeRegion == "west")
        #expect(try store.events(kindPrefix: "service.").count == 2)
    }

    @Test func aStaleEpochIsRefused() throws {
        let store = try StateStore.inMemory()
        try store.setActiveRegion("east", of: "orders", actor: "a", reason: "r", at: now)
        try store.setActiveRegion("west", of: "orders", actor: "a", reason: "r", at: now)
        #expect(throws: StateError.self) {
            try store.setActiveRegion("east", of: "orders", expectedEpoch: 1, actor: "b", reason: "stale", at: now)
        }
        #expect(try store.serviceState("orders")?.epoch == 2)
    }

    /// A real file: WAL mode, and state survives reopening; the event log refuses edits.
    @Test func fileDatabaseUsesWALAndIsAppendOnly() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("zoneward-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("zoneward.db").path
        do {
            let store = try StateStore.open(path: path)
            try store.drainZone("b", until: now + 60, reason: "test", actor: "alice", at: now)
        }
        let reopened = try StateStore.open(path: path)
        #expect(try reopened.activeDrains(at: now).map(\.zone) == ["b"])

        let pool = try DatabasePool(path: path)
        let mode = try pool.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
        #expect(throws: DatabaseError.self) {
            try pool.write { try $0.execute(sql: "UPDATE event SET actor = 'mallory'") }
        }
        #expect(throws: DatabaseError.self) {
            try pool.write { try $0.execute(sql: "DELETE FROM event") }
        }
        #expect(try pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM event") } == 1)
    }

    @Test func aMissingFolderIsAClearError() {
        do {
            _ = try StateStore.open(path: "/nonexistent-folder/zoneward.db")
            Issue.record("opened a database in a missing folder")
        } catch {
            #expect(error.description.contains("its folder does not exist"))
        }
    }
}

@Suite struct SnapshotCursorTests {
    @Test func anotherBootIsAlwaysNews() {
        var cursor = SnapshotCursor()
        #expect(cursor.query == "after=0")
        func advance(_ version: Int, _ boot: String) -> Bool {
            cursor.advance(to: ControlSnapshot(version: version, boot: boot, services: [:], drainedZones: []))
        }
        #expect(advance(900, "a"))
        #expect(cursor.query == "after=900&boot=a")
        #expect(!advance(900, "a"))
        #expect(advance(901, "a"))
        // A restarted controller may number lower; its snapshot is taken all the same.
        #expect(advance(3, "b"))
        #expect(cursor == SnapshotCursor(boot: "b", version: 3))
    }
}
