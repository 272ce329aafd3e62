import Foundation
import GRDB
import Testing
import ZonewardBackup
import ZonewardModel
import ZonewardState

@Suite struct RestoreDrillTests {
    let directory: URL
    let job: BackupJobConfiguration
    let configuration: ZonewardConfiguration

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("zoneward-drill-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let source = directory.appendingPathComponent("app.db").path
        let database = try DatabaseQueue(path: source)
        try database.write { db in
            try db.execute(sql: "CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT)")
            for index in 0..<500 {
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
            targets: [.filesystem(directory.appendingPathComponent("target").path)],
            keyFile: keyFile
        )
        var configuration = ZonewardConfiguration(zones: [ZoneConfiguration(name: "z", region: "r")])
        configuration.backups = [job]
        self.configuration = configuration
    }

    /// A runner whose scratch directories go under `staging`, to see that the drill removes its copy.
    func runner(store: StateStore) throws -> BackupRunner {
        var runner = BackupRunner(store: store, configuration: configuration)
        runner.stagingRoot = directory.appendingPathComponent("staging")
        try FileManager.default.createDirectory(at: runner.stagingRoot, withIntermediateDirectories: true)
        return runner
    }

    func leftovers(_ runner: BackupRunner) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: runner.stagingRoot.path).filter { $0.contains("drill") }
    }

    @Test func restoresTheNewestBackupChecksItAndMeasuresRTOAndRPO() async throws {
        let runner = try runner(store: try StateStore.inMemory())
        let record = try await runner.run(job)
        let drillTime = record.startedAt.addingTimeInterval(3600)
        let drill = await runner.restoreDrill(job, actor: "alice", now: { drillTime })
        #expect(drill.success, "\(drill.error ?? "")")
        #expect(drill.kind == .restore)
        #expect(drill.target == "app")
        #expect(drill.rtoSeconds.count == 1)
        #expect((drill.rtoSeconds.first ?? -1) > 0)
        // RPO: the drill's time minus the backup's snapshot (the manifest's createdAt, to the millisecond).
        let rpo = try #require(drill.rpoSeconds)
        #expect(abs(rpo - 3600) < 1)
        #expect(drill.detail.contains("restored \(record.id) (from the catalog)"))
        #expect(drill.detail.contains("integrity_check ok, 1 tables"))
        #expect(try leftovers(runner).isEmpty)
    }

    @Test func findsTheBackupOnTheTargetsWithoutACatalog() async throws {
        let record = try await runner(store: try StateStore.inMemory()).run(job)
        let fresh = try runner(store: try StateStore.inMemory())
        let drill = await fresh.restoreDrill(job, actor: "alice")
        #expect(drill.success, "\(drill.error ?? "")")
        #expect(drill.detail.contains("restored \(record.id) (from the targets)"))
    }

    @Test func aDrillWithNothingToRestoreFails() async throws {
        let empty = try runner(store: try StateStore.inMemory())
        let drill = await empty.restoreDrill(job, actor: "alice")
        #expect(!drill.success)
        #expect(drill.rtoSeconds.isEmpty)
        #expect(drill.error?.contains("no completed backup of app") == true)
    }

    @Test func aCorruptedBackupFailsTheDrillAndLeavesNothingBehind() async throws {
        let runner = try runner(store: try StateStore.inMemory())
        let record = try await runner.run(job)
        let object = try #require(record.objectPaths.first)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: object))
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: object))
        let drill = await runner.restoreDrill(job, actor: "alice")
        #expect(!drill.success)
        #expect(drill.error != nil)
        #expect(try leftovers(runner).isEmpty)
    }
}
