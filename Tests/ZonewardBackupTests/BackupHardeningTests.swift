import Foundation
import GRDB
import Testing
import ZonewardModel
import ZonewardState

@testable import ZonewardBackup

/// Plaintext never lingers, keys stay private, nonces never repeat, names cannot confuse paths.
@Suite struct BackupHardeningTests {
    let directory: URL
    let stagingRoot: URL
    let keyFile: String
    let source: String

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("zoneward-hardening-\(UUID())")
        stagingRoot = directory.appendingPathComponent("tmp")
        try FileManager.default.createDirectory(at: stagingRoot, withIntermediateDirectories: true)
        keyFile = directory.appendingPathComponent("backup.key").path
        try Data(Data((0..<32).map { UInt8($0) }).base64EncodedString().utf8).write(to: URL(fileURLWithPath: keyFile))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyFile)
        source = directory.appendingPathComponent("app.db").path
        let database = try DatabaseQueue(path: source)
        try database.write { db in
            try db.execute(sql: "CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT)")
            for index in 0..<500 {
                try db.execute(sql: "INSERT INTO items (body) VALUES (?)", arguments: ["item \(index)"])
            }
        }
        try database.close()
    }

    func runner(_ jobs: [BackupJobConfiguration]) throws -> BackupRunner {
        var configuration = ZonewardConfiguration(zones: [ZoneConfiguration(name: "z", region: "r")])
        configuration.backups = jobs
        return BackupRunner(store: try StateStore.inMemory(), configuration: configuration, stagingRoot: stagingRoot)
    }

    func job(_ source: BackupJobConfiguration.Source, target: String = "backups") -> BackupJobConfiguration {
        BackupJobConfiguration(
            name: "app",
            source: source,
            schedule: "17 * * * *",
            targets: [.filesystem(directory.appendingPathComponent(target).path)],
            keyFile: keyFile
        )
    }

    func mode(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions]) as? NSNumber)?.intValue ?? -1
    }

    func stagingEntries() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: stagingRoot.path)) ?? []).sorted()
    }

    // MARK: - Staging

    @Test func theSnapshotLivesInAPrivateDirectoryThatIsRemovedAfterwards() async throws {
        let seen = Observations()
        let runner = try runner([job(.sqlite(source))])
        _ = try await runner.run(job(.sqlite(source))) { _ in
            guard !seen.recorded else { return }
            let root = stagingRoot.path
            for name in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
                let folder = "\(root)/\(name)"
                seen.record(folder: mode(folder), snapshot: mode("\(folder)/snapshot"))
            }
        }
        #expect(seen.modes == [[0o700, 0o600]])
        #expect(stagingEntries().isEmpty)
    }

    @Test func stagingIsRemovedWhenTheRunFails() async throws {
        // tar refuses a regular file as a directory: the run fails after the staging directory was made.
        let runner = try runner([job(.directory(source))])
        await #expect(throws: BackupError.self) { try await runner.run(job(.directory(source))) }
        #expect(stagingEntries().isEmpty)
    }

    @Test func aKilledRunsLeftoversAreRemovedAtTheNextStartButALiveRunsAreNot() async throws {
        // A killed run: its directory is there, its lock file is not held by anyone.
        let dead = stagingRoot.appendingPathComponent("zoneward-staging-backup-dead")
        try FileManager.default.createDirectory(at: dead, withIntermediateDirectories: false)
        try Data("plaintext".utf8).write(to: dead.appendingPathComponent("snapshot"))
        #expect(FileManager.default.createFile(atPath: dead.appendingPathComponent(".lock").path, contents: nil))
        let live = try StagingDirectory.create(in: stagingRoot, purpose: "verify")
        defer { live.remove() }
        #expect(!FileManager.default.fileExists(atPath: dead.path))
        _ = try await runner([job(.sqlite(source))]).run(job(.sqlite(source)))
        #expect(stagingEntries() == [live.url.lastPathComponent])
        #expect(mode(live.path) == 0o700)
        #expect(mode(try live.file("f")) == 0o600)
    }

    @Test func whatIsInFlightCanBeRemovedAtOnceBeforeASignalExits() throws {
        let first = try StagingDirectory.create(in: stagingRoot, purpose: "backup")
        let second = try StagingDirectory.create(in: stagingRoot, purpose: "verify")
        _ = try first.file("snapshot")
        // Only this test's root: other tests run beside it in this process.
        InFlight.removeAll(under: stagingRoot)
        #expect(stagingEntries().isEmpty)
        first.remove()
        second.remove()
    }

    @Test func restoredCopiesAreOwnerOnly() async throws {
        let runner = try runner([job(.sqlite(source))])
        let record = try await runner.run(job(.sqlite(source)))
        let restored = directory.appendingPathComponent("restored.db").path
        try await runner.restore(record.id, to: restored, force: false)
        #expect(mode(restored) == 0o600)
        #expect(stagingEntries().isEmpty)
    }

    // MARK: - Child processes

    @Test func aChildThatOutlivesItsTimeoutIsStoppedAndNamed() async throws {
        let started = ContinuousClock.now
        do {
            _ = try await ProcessRunner.run(["sleep", "120"], timeout: .milliseconds(300))
            Issue.record("sleep 120 finished within 300ms")
        } catch {
            #expect("\(error)".hasPrefix("sleep did not finish within 300ms and was stopped"))
        }
        // Far less than the 120 s of the sleep, with room for tests hogging the cooperative threads.
        #expect(ContinuousClock.now - started < .seconds(60))
        let (status, output) = try await ProcessRunner.run(["echo", "hi"], timeout: .seconds(30))
        #expect(status == 0 && output == "hi\n")
    }

    @Test func theJobTimeoutIsReadFromTheConfiguration() throws {
        let configuration = try ZonewardConfiguration.parse(
            yaml: """
                zones: [{name: z, region: r}]
                backups:
                  - {name: a, source: {sqlite: /x}, schedule: "17 * * * *", targets: [{filesystem: /b}],
                     encryption: {keyFile: /k}, timeout: 90s}
                  - {name: b, source: {sqlite: /x}, schedule: "17 * * * *", targets: [{filesystem: /b}],
                     encryption: {keyFile: /k}}
                """
        )
        #expect(configuration.backups.map(\.timeout) == [.seconds(90), .seconds(3600)])
    }

    // MARK: - Keys and nonces

    @Test func aKeyFileOthersCanReadIsRefusedNamingTheFileAndItsMode() throws {
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: keyFile)
        #expect(
            throws: BackupError.key(
                "the key file \(keyFile) has mode 644: group or others may read it; chmod 600 \(keyFile)"
            )
        ) { try BackupKey.load(file: keyFile) }
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: keyFile)
        #expect(throws: BackupError.self) { try BackupKey.load(file: keyFile) }
        try FileManager.default.setAttributes([.posixPermissions: 0o400], ofItemAtPath: keyFile)
        _ = try BackupKey.load(file: keyFile)
        // Through a symlink (how Kubernetes mounts a secret), the file's own mode counts, not the link's.
        let link = directory.appendingPathComponent("linked.key").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: keyFile)
        _ = try BackupKey.load(file: link)
    }

    @Test func theNonceCounterRefusesToWrap() throws {
        var sealer = ChunkSealer(key: BackupKey(bytes: Array(repeating: 7, count: 32)), startingAt: UInt64(UInt32.max))
        _ = try sealer.seal([1, 2, 3], final: false)
        #expect(throws: BackupError.tooManyChunks) { try sealer.seal([4, 5, 6], final: true) }
    }

    // MARK: - Object and manifest names

    @Test func onlyTheFinalExtensionNamesTheManifest() {
        let file = StoredObject(recorded: "/srv/x.zwb.d/app/app-1.zwb")
        #expect(file == .file(path: "/srv/x.zwb.d/app/app-1.zwb"))
        #expect(file.manifest == .file(path: "/srv/x.zwb.d/app/app-1.json"))
        let object = StoredObject(recorded: "s3://bucket/p.zwb/app/app-1.zwb")
        #expect(object == .s3(bucket: "bucket", key: "p.zwb/app/app-1.zwb"))
        #expect(object.manifest.description == "s3://bucket/p.zwb/app/app-1.json")
    }

    @Test func aTargetDirectoryNamedZwbHoldsObjectAndManifestSideBySide() async throws {
        let job = job(.sqlite(source), target: "vault.zwb")
        let runner = try runner([job])
        let record = try await runner.run(job)
        let object = try #require(record.objectPaths.first)
        #expect(object.hasSuffix(".zwb"))
        #expect(FileManager.default.fileExists(atPath: String(object.dropLast(4)) + ".json"))
        #expect(try await runner.verify(record.id).state == .verified)
        await runner.removeObjects([StoredObject(recorded: object)], job: job)
        let folder = directory.appendingPathComponent("vault.zwb/app").path
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).isEmpty)
    }
}

/// What the progress callback saw of the staging directory, from the pipeline's thread.
private final class Observations: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [[Int]] = []

    var recorded: Bool { lock.withLock { !seen.isEmpty } }
    var modes: [[Int]] { lock.withLock { seen } }

    func record(folder: Int, snapshot: Int) {
        lock.withLock { seen.append([folder, snapshot]) }
    }
}
