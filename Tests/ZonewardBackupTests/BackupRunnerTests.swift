import Foundation
import GRDB
import Testing
import ZonewardBackup
import ZonewardModel
import ZonewardState

@Suite struct BackupRunnerTests {
    let directory: URL
    let store: StateStore
    let runner: BackupRunner
    let job: BackupJobConfiguration

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("zoneward-runner-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let source = directory.appendingPathComponent("app.db").path
        let database = try DatabaseQueue(path: source)
        try database.write { db in
            try db.execute(sql: "CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT)")
            for index in 0..<2000 {
                try db.execute(sql: "INSERT INTO items (body) VALUES (?)", arguments: ["item \(index)"])
            }
        }
        try database.close()
        let keyFile = directory.appendingPathComponent("backup.key").path
        try Data(Data((0..<32).map { UInt8($0) }).base64EncodedString().utf8).write(to: URL(fileURLWithPath: keyFile))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyFile)
        job = BackupJobConfiguration(
            name: "app",
            source: .sqlite(source),
            schedule: "17 * * * *",
            targets: [
                .filesystem(directory.appendingPathComponent("a").path),
                .filesystem(directory.appendingPathComponent("b").path),
            ],
            keyFile: keyFile
        )
        var configuration = ZonewardConfiguration(zones: [ZoneConfiguration(name: "z", region: "r")])
        configuration.backups = [job]
        store = try StateStore.inMemory()
        runner = BackupRunner(store: store, configuration: configuration)
    }

    @Test func runVerifyRestore() async throws {
        let record = try await runner.run(job)
        #expect(record.state == .completed)
        #expect(record.objectPaths.count == 2)
        #expect(record.objectPaths.allSatisfy { FileManager.default.fileExists(atPath: $0) })
        #expect(record.manifest.contains("\"items\" : 2000"))
        #expect(try await runner.verify(record.id).state == .verified)
        let restored = directory.appendingPathComponent("restored.db").path
        try await runner.restore(record.id, to: restored, force: false)
        let count = try await DatabaseQueue(path: restored).read {
            try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM items")
        }
        #expect(count == 2000)
        // Never over an existing file without force.
        await #expect(throws: BackupError.self) { try await runner.restore(record.id, to: restored, force: false) }
        try await runner.restore(record.id, to: restored, force: true)
    }

    /// A verified backup's bytes (SHA-256 checked on every restore) already passed integrity_check and the
    /// row counts: a restore does not repeat them unless asked. A manifest whose row count is wrong shows which
    /// ran: an unverified record fails on it, a verified one restores, and `fullCheck` fails again.
    @Test func aVerifiedBackupRestoresWithoutRepeatingItsContentChecks() async throws {
        let record = try await runner.run(job)
        let wrong = record.manifest.replacingOccurrences(of: "\"items\" : 2000", with: "\"items\" : 1999")
        #expect(wrong != record.manifest)
        var unverified = record
        unverified.manifest = wrong
        let path = directory.appendingPathComponent("checked.db").path
        await #expect(throws: BackupError.self) { try await runner.restore(record: unverified, to: path, force: true) }
        #expect(!FileManager.default.fileExists(atPath: path))
        var verified = unverified
        verified.state = .verified
        try await runner.restore(record: verified, to: path, force: true)
        let count = try await DatabaseQueue(path: path).read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM items") }
        #expect(count == 2000)
        await #expect(throws: BackupError.self) {
            try await runner.restore(record: verified, to: path, force: true, fullCheck: true)
        }
    }

    @Test func aCorruptObjectFailsVerificationNamingTheChunk() async throws {
        let record = try await runner.run(job)
        for path in record.objectPaths {
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            bytes[bytes.count / 2] ^= 0xFF
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        }
        do {
            try await runner.verify(record.id)
            Issue.record("a corrupt backup verified")
        } catch {
            #expect("\(error)".contains("chunk") || "\(error)".contains("SHA-256"))
        }
        #expect(try store.backup(record.id)?.state == .completed)
    }

    @Test func aMissingSourceIsAClearErrorAndLeavesNoEntry() async throws {
        var broken = job
        broken.source = .sqlite(directory.appendingPathComponent("missing.db").path)
        await #expect(throws: BackupError.self) { try await runner.run(broken) }
        #expect(try store.backups().isEmpty)
    }

    @Test func anOrphanedRunNeverBlocksTheNext() async throws {
        let old = Date().addingTimeInterval(-120)
        try store.beginBackup(BackupRecord(id: "app-dead", job: "app", startedAt: old), at: old)
        let record = try await runner.run(job)
        #expect(record.state == .completed)
        #expect(try store.backup("app-dead")?.state == .failed)
    }

    @Test func pruneKeepsWhatTheRulesSayAndDeletesTheRest() async throws {
        var pruned = job
        pruned.retention = ["keepLast": 1]
        let first = try await runner.run(pruned)
        _ = try await runner.verify(first.id)
        _ = try await runner.run(pruned)
        let newest = try await runner.run(pruned)
        let decisions = try runner.pruneDecisions(pruned)
        #expect(decisions.filter { $0.keptBy.isEmpty }.count == 1)
        let removed = try await runner.prune(pruned)
        #expect(removed.count == 1)
        #expect(
            removed.allSatisfy { record in record.objectPaths.allSatisfy { !FileManager.default.fileExists(atPath: $0) }
            }
        )
        // The newest (last 1) and the newest verified stay.
        #expect(Set(try store.backups().map(\.id)) == [first.id, newest.id])
    }

    @Test func noRulesKeepEverything() async throws {
        _ = try await runner.run(job)
        _ = try await runner.run(job)
        #expect(try await runner.prune(job).isEmpty)
    }

    @Test func theTargetsAloneListAndRestoreABackup() async throws {
        let record = try await runner.run(job)
        let second = try await runner.run(job)
        // A runner whose catalog lost everything (a new, empty database).
        let bare = BackupRunner(store: try StateStore.inMemory(), configuration: runner.configuration)
        var found = try await bare.targetBackups(of: job)
        #expect(found.map(\.manifest.id) == [second.id, record.id], "newest first, even within one second")
        found.removeFirst()
        #expect(Set(found[0].objects.map(\.description)) == Set(record.objectPaths))
        #expect(found[0].record.sha256 == record.sha256)
        // Leftovers are not backups: a partial object, a manifest without its object.
        let folder = directory.appendingPathComponent("a").appendingPathComponent("app")
        try Data("x".utf8).write(to: folder.appendingPathComponent("app-x.zwb.partial"))
        try Data(record.manifest.utf8).write(to: folder.appendingPathComponent("app-orphan.json"))
        #expect(try await bare.targetBackups(of: job).count == 2)
        let restored = directory.appendingPathComponent("from-target.db").path
        try await bare.restore(record: found[0].record, to: restored, force: false)
        let count = try await DatabaseQueue(path: restored).read {
            try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM items")
        }
        #expect(count == 2000)
    }

    @Test func runRecordsThroughItsCatalogSink() async throws {
        let sink = RecordingSink()
        var recorded = runner
        recorded.catalog = sink
        let record = try await recorded.run(job)
        #expect(
            sink.calls == [
                "begin \(record.id)", "heartbeat \(record.id)", "heartbeat \(record.id)",
                "heartbeat \(record.id)", "heartbeat \(record.id)", "complete \(record.id)",
            ]
        )
        #expect(try store.backups().isEmpty, "nothing written to the store when another sink is given")
        var broken = job
        broken.targets = [.filesystem("/proc/zoneward-cannot-write-here")]
        await #expect(throws: (any Error).self) { try await recorded.run(broken) }
        #expect(sink.calls.last?.hasPrefix("fail ") == true)
    }
}

/// A catalog sink that remembers the calls it got.
final class RecordingSink: BackupCatalogSink, @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [String] = []

    var calls: [String] { lock.withLock { recorded } }

    private func note(_ call: String) { lock.withLock { recorded.append(call) } }

    func begin(_ record: BackupRecord, at time: Date) async throws { note("begin \(record.id)") }
    func heartbeat(_ id: String, at time: Date) async throws { note("heartbeat \(id)") }
    func complete(_ record: BackupRecord, at time: Date) async throws { note("complete \(record.id)") }
    func fail(_ record: BackupRecord, at time: Date) async throws { note("fail \(record.id)") }
}
