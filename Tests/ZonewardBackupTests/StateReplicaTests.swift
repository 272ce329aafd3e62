import Foundation
import GRDB
import Testing
import ZonewardModel
import ZonewardState

@testable import ZonewardBackup

/// The controller state shipped through a backup job's filesystem targets: ship, newest, restore, prune.
@Suite struct StateReplicaTests {
    let directory: URL
    let job: BackupJobConfiguration

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("zoneward-replica-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let keyFile = directory.appendingPathComponent("backup.key").path
        try Data(Data((0..<32).map { UInt8($0) }).base64EncodedString().utf8).write(to: URL(fileURLWithPath: keyFile))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyFile)
        job = BackupJobConfiguration(
            name: "state",
            source: .sqlite(directory.appendingPathComponent("unused.db").path),
            schedule: "17 * * * *",
            targets: [
                .filesystem(directory.appendingPathComponent("a").path),
                .filesystem(directory.appendingPathComponent("b").path),
            ],
            keyFile: keyFile
        )
    }

    func replica(keep: Int = 20) throws -> BackupStateReplica {
        try BackupStateReplica(job: job, keep: keep, stagingRoot: directory)
    }

    /// A state database file with `events` events in it.
    func store(_ name: String, events: Int) throws -> StateStore {
        let store = try StateStore.open(path: directory.appendingPathComponent(name).path)
        for index in 0..<events {
            try store.recordEvent(
                kind: "test.event",
                subject: "s\(index)",
                actor: "test",
                at: Date(timeIntervalSince1970: Double(index))
            )
        }
        return store
    }

    func folder(_ target: String) -> URL {
        directory.appendingPathComponent(target).appendingPathComponent("state").appendingPathComponent("state")
    }

    @Test func shipNewestRestoreRoundTrip() async throws {
        let source = try store("live.db", events: 300)
        let replica = try replica()
        var times: [Duration] = []
        for sequence in 1...2 {
            let started = ContinuousClock.now
            _ = try await replica.ship(source, term: 7, sequence: Int64(sequence))
            times.append(ContinuousClock.now - started)
        }
        let copy = try await replica.ship(source, term: 7, sequence: 3)
        print("ships of a \(try source.rowCounts()["event"] ?? 0)-event state to two directories: \(times)")
        for name in ["t00000000000000000007-s000000000001.zwb", "t00000000000000000007-s000000000002.zwb"] {
            await BackupStateReplica.remove(name, at: .directory(folder("a")))
            await BackupStateReplica.remove(name, at: .directory(folder("b")))
        }
        #expect(copy.name == "t00000000000000000007-s000000000003.zwb")
        for target in ["a", "b"] {
            let names = try FileManager.default.contentsOfDirectory(atPath: folder(target).path).sorted()
            #expect(names == ["t00000000000000000007-s000000000003.json", copy.name])
        }
        #expect(try await replica.newest() == copy)

        let follower = try store("follower.db", events: 5)
        // A reader in a transaction on the follower's file while the restore replaces its content.
        var configuration = Configuration()
        configuration.allowsUnsafeTransactions = true
        let reader = try DatabaseQueue(path: follower.path, configuration: configuration)
        let before = try reader.inDatabase { db in
            try db.execute(sql: "BEGIN DEFERRED")
            return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM event")
        }
        #expect(before == 5)
        try await replica.restore(copy, into: follower)
        let during = try reader.inDatabase { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM event") }
        #expect(during == 5, "the open reader keeps seeing the old state")
        let after = try reader.inDatabase { db in
            try db.execute(sql: "COMMIT")
            return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM event")
        }
        #expect(after == 300, "a new read sees the whole new state")
        try reader.close()
        #expect(try follower.rowCounts() == source.rowCounts())
        let restoredEvents = try follower.events(limit: 1000).map { "\($0.id ?? -1) \($0.kind) \($0.subject)" }
        let sourceEvents = try source.events(limit: 1000).map { "\($0.id ?? -1) \($0.kind) \($0.subject)" }
        #expect(restoredEvents == sourceEvents)
        // The live store keeps working after the restore.
        try follower.recordEvent(kind: "after", subject: "x", actor: "test", at: Date())
        #expect(try follower.rowCounts()["event"] == 301)
        // And to a file, for an operator with no controller left.
        let file = directory.appendingPathComponent("restored.db").path
        try await replica.restore(copy, toFile: file, force: false)
        #expect(try StateStore.open(path: file).rowCounts() == source.rowCounts())
        await #expect(throws: BackupError.self) { try await replica.restore(copy, toFile: file, force: false) }
    }

    @Test func pruneKeepsKeepNewest() async throws {
        let source = try store("live.db", events: 3)
        let replica = try replica(keep: 3)
        var shipped: [ShippedState] = []
        for sequence in 1...6 { shipped.append(try await replica.ship(source, term: 1, sequence: Int64(sequence))) }
        for target in ["a", "b"] {
            let names = Set(try FileManager.default.contentsOfDirectory(atPath: folder(target).path))
            let expected = shipped.suffix(3).flatMap {
                [$0.name, String($0.name.dropLast(4)) + ".json"]
            }
            #expect(names == Set(expected))
        }
        #expect(try await replica.copies() == Array(shipped.suffix(3)))
        #expect(try await replica.newest() == shipped.last)
    }

    @Test func newestIgnoresPartialAndIncompleteCopies() async throws {
        let source = try store("live.db", events: 3)
        let replica = try replica()
        let copy = try await replica.ship(source, term: 2, sequence: 1)
        let a = folder("a")
        // A newer object still being written, an object without its manifest, a manifest without its object.
        try Data("x".utf8).write(to: a.appendingPathComponent("t00000000000000000009-s000000000001.zwb.partial"))
        try Data("x".utf8).write(to: a.appendingPathComponent("t00000000000000000008-s000000000001.zwb"))
        try Data("{}".utf8).write(to: a.appendingPathComponent("t00000000000000000007-s000000000001.json"))
        try Data("x".utf8).write(to: a.appendingPathComponent("notes.txt"))
        #expect(try await replica.newest() == copy)
        #expect(try await replica.copies() == [copy])
    }

    @Test func newestOnEmptyTargetsIsNil() async throws {
        #expect(try await replica().newest() == nil)
    }

    @Test func tamperedObjectIsRefusedAndTheLiveDatabaseKept() async throws {
        let source = try store("live.db", events: 200)
        let replica = try replica()
        let copy = try await replica.ship(source, term: 1, sequence: 1)
        for target in ["a", "b"] {
            let object = folder(target).appendingPathComponent(copy.name)
            var data = try Data(contentsOf: object)
            data[data.count / 2] ^= 0x01
            try data.write(to: object)
        }
        let live = try store("follower.db", events: 4)
        let error = await #expect(throws: BackupError.self) { try await replica.restore(copy, into: live) }
        let message = error.map { "\($0)" } ?? ""
        #expect(message.contains("could not be restored from any target"))
        #expect(message.contains("the live database is unchanged"))
        #expect(message.contains("chunk") || message.contains("SHA-256"))
        #expect(try live.rowCounts()["event"] == 4)
        #expect(try live.events(limit: 10).map(\.subject) == ["s3", "s2", "s1", "s0"])
        // Nothing of the plaintext is left in staging.
        let staged = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter {
            $0.hasPrefix("zoneward-staging-")
        }
        #expect(staged.isEmpty)
    }

    @Test func oneGoodTargetIsEnough() async throws {
        let source = try store("live.db", events: 20)
        let replica = try replica()
        let copy = try await replica.ship(source, term: 1, sequence: 1)
        let object = folder("a").appendingPathComponent(copy.name)
        var data = try Data(contentsOf: object)
        data[data.count / 2] ^= 0x01
        try data.write(to: object)
        let live = try store("follower.db", events: 0)
        try await replica.restore(copy, into: live)
        #expect(try live.rowCounts()["event"] == 20)
    }

    @Test func copiesOrderByTermThenSequence() async throws {
        let source = try store("live.db", events: 1)
        let replica = try replica()
        let newer = try await replica.ship(source, term: 2, sequence: 1)
        _ = try await replica.ship(source, term: 1, sequence: 99)
        _ = try await replica.ship(source, term: 1, sequence: 100)
        #expect(try await replica.newest() == newer)
        #expect(try await replica.copies().map { [$0.term, $0.sequence] } == [[1, 99], [1, 100], [2, 1]])
        let a = ShippedState(term: 1, sequence: 1_000, name: "")
        let b = ShippedState(term: 2, sequence: 0, name: "")
        #expect(a < b)
        let names = try [(10, 2), (9, 1_000_000), (10, 11)].map {
            try BackupStateReplica.name(term: $0.0, sequence: $0.1)
        }
        #expect(
            names.sorted().compactMap(BackupStateReplica.parse).map { [$0.term, $0.sequence] } == [
                [9, 1_000_000], [10, 2], [10, 11],
            ]
        )
        #expect(BackupStateReplica.parse(name: "t00000000000000000001-s00000000000x.zwb") == nil)
        #expect(BackupStateReplica.parse(name: "t1-s1.zwb") == nil)
        #expect(throws: BackupError.self) { try BackupStateReplica.name(term: -1, sequence: 0) }
    }

    @Test func s3ListingPagesAndEscapes() throws {
        let first = Data(
            """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>
            <KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
            <Contents><Key>p/a&amp;b.zwb</Key><Size>12</Size></Contents>
            <Contents><Key>p/c.json</Key><Size>3</Size></Contents>
            <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
            </ListBucketResult>
            """.utf8
        )
        let page = try S3Client.parseListing(first)
        #expect(page.objects == [.init(key: "p/a&b.zwb", size: 12), .init(key: "p/c.json", size: 3)])
        #expect(page.nextToken == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        let last = try S3Client.parseListing(
            Data("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>".utf8)
        )
        #expect(last.objects.isEmpty && last.nextToken == nil)
        #expect(throws: BackupError.self) { try S3Client.parseListing(Data("<Error>nope</Error>".utf8)) }
        #expect(S3Client.unescapeXML("a&lt;b&#x41;&#66;&unknown;") == "a<bAB&unknown;")
    }
}
