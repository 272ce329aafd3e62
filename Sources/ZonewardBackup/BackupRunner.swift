import Crypto
import Foundation
import GRDB
import ZonewardModel
import ZonewardState

/// The manifest stored beside each object.
public struct BackupManifest: Codable, Sendable, Equatable {
    public var id: String
    public var job: String
    public var source: String
    public var createdAt: String
    public var plainBytes: Int64
    public var storedBytes: Int64
    public var sha256: String
    public var keyId: String
    public var compression: String
    public var encryption: String
    /// For SQLite sources: rows per table in the snapshot.
    public var rowCounts: [String: Int]
    /// For directory sources: entries in the archive; for PostgreSQL: entries in the dump's table of contents.
    public var entries: Int?

    /// `createdAt` as written: ISO 8601 in UTC with milliseconds, so backups taken in the same second
    /// still order by time when found on a target.
    public static func timestamp(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// `createdAt` read back, with or without fractional seconds; nil when it is neither.
    public var created: Date? {
        (try? Date(createdAt, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
            ?? (try? Date(createdAt, strategy: .iso8601))
    }
}

extension BackupManifest {
    /// The manifest of an object the backup pipeline encoded at `created`.
    public init(
        id: String,
        job: String,
        source: String,
        created: Date,
        encoded result: PipelineResult,
        rowCounts: [String: Int],
        entries: Int?
    ) {
        self.init(
            id: id,
            job: job,
            source: source,
            createdAt: Self.timestamp(created),
            plainBytes: result.plainBytes,
            storedBytes: result.storedBytes,
            sha256: result.sha256,
            keyId: result.keyId,
            compression: result.compression,
            encryption: "AES-256-GCM, one chunk per 1 MiB block",
            rowCounts: rowCounts,
            entries: entries
        )
    }

    /// The manifest as stored beside its object: pretty, sorted JSON.
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return try encoder.encode(self)
    }
}

/// Runs, verifies and restores backups: snapshot → pipeline → every target → catalog.
public struct BackupRunner: Sendable {
    public let store: StateStore
    public let configuration: ZonewardConfiguration
    /// Where private staging directories for plaintext in flight are made (and killed runs' ones swept).
    public var stagingRoot: URL
    /// Where `run` records its progress (begin, heartbeats, completed or failed); default `store`.
    public var catalog: any BackupCatalogSink

    public init(
        store: StateStore,
        configuration: ZonewardConfiguration,
        stagingRoot: URL = FileManager.default.temporaryDirectory,
        catalog: (any BackupCatalogSink)? = nil
    ) {
        self.store = store
        self.configuration = configuration
        self.stagingRoot = stagingRoot
        self.catalog = catalog ?? store
    }

    /// Takes one backup of `job`; the catalog shows it `completed` only when every object is written whole
    /// (fsynced and its size checked, or S3's size). On failure, partial objects are removed and the record is `failed`.
    @discardableResult
    public func run(
        _ job: BackupJobConfiguration,
        progress: (@Sendable (Int64) -> Void)? = nil
    ) async throws -> BackupRecord {
        let key = try BackupKey.load(file: job.keyFile)
        switch job.source {
        case .sqlite(let path), .directory(let path):
            guard FileManager.default.fileExists(atPath: path) else {
                throw BackupError.io("source \(path) does not exist")
            }
        case .postgres:
            break
        }
        let now = Date()
        let id = "\(job.name)-\(Self.stamp(now))-\(UInt16.random(in: 0...UInt16.max))"
        var record = BackupRecord(id: id, job: job.name, startedAt: now)
        try await catalog.begin(record, at: now)
        // The lease: a heartbeat every 10 s while this process works, so a run that stops beating died.
        let heartbeat = Task { [catalog] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(10))
                try? await catalog.heartbeat(id, at: Date())
            }
        }
        defer { heartbeat.cancel() }
        removePartialObjects(of: job)
        await abortOpenUploads(of: job)
        var written: [StoredObject] = []
        // S3 uploads under way, aborted if the run fails.
        var uploads: [MultipartUploadSink] = []
        defer { for upload in uploads { InFlightUploads.remove(upload) } }
        do {
            // Plaintext lives only in a private directory, removed on every way out of this block; a killed
            // run's directory is swept by the next one.
            let staging = try StagingDirectory.create(in: stagingRoot, purpose: "backup")
            defer { staging.remove() }
            let snapshot = try staging.file("snapshot")
            var rowCounts: [String: Int] = [:]
            var countRows = false
            var entries: Int?
            let sourceDescription: String
            switch job.source {
            case .sqlite(let path):
                // A consistent copy through SQLite's online backup API, while other processes keep writing;
                // its rows are counted while it is encoded.
                try await onThread("zoneward-snapshot") { try Self.copySnapshot(sqlite: path, to: snapshot) }
                countRows = true
                sourceDescription = "sqlite:\(path)"
            case .directory(let path):
                try await Self.tool(["tar", "-C", path, "-cf", snapshot, "."], timeout: job.timeout)
                entries = try await Self.count(["tar", "-tf", snapshot], timeout: job.timeout)
                sourceDescription = "directory:\(path)"
            case .postgres(let pg):
                var environment: [String: String] = [:]
                if let variable = pg.passwordEnv, let password = ProcessInfo.processInfo.environment[variable] {
                    environment["PGPASSWORD"] = password
                }
                try await Self.tool(
                    [
                        "pg_dump", "-Fc", "-h", pg.host, "-p", String(pg.port), "-U", pg.user, "-d", pg.database,
                        "-f", snapshot,
                    ],
                    environment: environment,
                    timeout: job.timeout
                )
                entries = try await Self.count(["pg_restore", "-l", snapshot], timeout: job.timeout)
                sourceDescription = "postgres:\(pg.user)@\(pg.host):\(pg.port)/\(pg.database)"
            }
            try await catalog.heartbeat(id, at: Date())
            // Encode once, streamed to every target as it is sealed: a directory target's partial object,
            // an S3 target's multipart upload (parts sent while the pipeline goes on); one checksum.
            var sinks: [any ObjectSink] = []
            for target in job.targets {
                switch target {
                case .filesystem(let directory):
                    let folder = URL(fileURLWithPath: directory).appendingPathComponent(job.name)
                    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                    let partial = folder.appendingPathComponent("\(id).zwb.partial").path
                    written.append(.file(path: partial))
                    sinks.append(try FileObjectSink(path: partial))
                case .s3(let s3):
                    let client = try Self.client(for: s3)
                    let key = Self.key(s3, job: job.name, id: id)
                    written.append(.s3(bucket: s3.bucket, key: key))
                    // Parts are spooled beside the snapshot, in the run's private directory.
                    let upload = try MultipartUploadSink(
                        store: client,
                        key: key,
                        partSize: s3.partSize ?? client.partSize,
                        spoolDirectory: staging.url.path
                    )
                    uploads.append(upload)
                    InFlightUploads.add(upload)
                    sinks.append(upload)
                }
            }
            let fanOut = FanOutSink(sinks)
            let streaming = uploads
            async let counted = countRows ? Self.rowCountsOffPool(snapshot) : [:]
            let result = try await withTaskCancellationHandler {
                try await onThread("zoneward-encode") {
                    try BackupPipeline.encode(
                        from: snapshot,
                        into: fanOut,
                        key: key,
                        compression: job.compression,
                        progress: progress
                    )
                }
            } onCancel: {
                for upload in streaming { upload.cancel() }
            }
            if countRows { rowCounts = try await counted }
            try await catalog.heartbeat(id, at: Date())
            for (index, target) in job.targets.enumerated() {
                switch (target, written[index]) {
                case (.filesystem, .file(let partial)):
                    // The SHA-256 was taken of exactly the bytes written, and the file was fsynced; reading
                    // it back here would only read the page cache (the same bytes, not the disk's), at the
                    // cost of a second hash of the whole object (about a tenth of a zstd backup's time). The
                    // size confirms nothing was lost on the way; `verify` reads the object for real.
                    let size = try FileManager.default.attributesOfItem(atPath: partial)[.size] as? Int64
                    guard size == result.storedBytes else {
                        throw BackupError.io(
                            "\(partial) holds \(size.map(String.init) ?? "?") bytes, \(result.storedBytes) were written"
                        )
                    }
                    let object = String(partial.dropLast(".partial".count))
                    try FileManager.default.moveItem(atPath: partial, toPath: object)
                    written[index] = .file(path: object)
                case (.s3(let s3), .s3(_, let key)):
                    // S3 checked each request's payload against its signed SHA-256; the size confirms the whole.
                    guard try await Self.client(for: s3).size(key: key) == Int(result.storedBytes) else {
                        throw BackupError.io("S3 object \(key) does not have the size written")
                    }
                default:
                    throw BackupError.io("internal: target \(index) does not match its object")
                }
                try await catalog.heartbeat(id, at: Date())
            }
            let manifest = BackupManifest(
                id: id,
                job: job.name,
                source: sourceDescription,
                created: now,
                encoded: result,
                rowCounts: rowCounts,
                entries: entries
            )
            let manifestData = try manifest.encoded()
            let manifestFile = staging.url.appendingPathComponent("manifest.json")
            try manifestData.write(to: manifestFile, options: .atomic)
            for (object, target) in zip(written, job.targets) {
                switch (object.manifest, target) {
                case (.file(let path), _):
                    try manifestData.write(to: URL(fileURLWithPath: path), options: .atomic)
                case (.s3(_, let key), .s3(let s3)):
                    try await Self.client(for: s3).put(file: manifestFile.path, key: key)
                case (.s3, .filesystem):
                    throw BackupError.io("internal: an S3 object for a filesystem target")
                }
            }
            // Each object is a backup its target can list now; a signal from here on leaves them. If a
            // signal's clean-up already began, it deletes them: the run fails instead of recording them.
            for upload in uploads { try upload.keep() }
            record.state = .completed
            record.finishedAt = Date()
            record.plainBytes = result.plainBytes
            record.storedBytes = result.storedBytes
            record.sha256 = result.sha256
            record.keyId = result.keyId
            record.objects = String(decoding: try JSONEncoder().encode(written.map(\.description)), as: UTF8.self)
            record.manifest = String(decoding: manifestData, as: UTF8.self)
            try await catalog.complete(record, at: Date())
            return record
        } catch {
            for upload in uploads { await upload.abort() }
            await removeObjects(written, job: job)
            record.state = .failed
            record.finishedAt = Date()
            record.error = "\(error)"
            try? await catalog.fail(record, at: Date())
            throw error
        }
    }

    /// Downloads (reads), decrypts, checks the checksum, restores to a temporary file, runs
    /// `PRAGMA integrity_check` and compares row counts with the manifest; marks the backup `verified`.
    @discardableResult
    public func verify(_ id: String, progress: (@Sendable (Int64) -> Void)? = nil) async throws -> BackupRecord {
        guard var record = try store.backup(id) else { throw BackupError.io("no backup \(id) in the catalog") }
        guard record.state == .completed || record.state == .verified else {
            throw BackupError.io("backup \(id) is \(record.state.rawValue), not completed")
        }
        let staging = try StagingDirectory.create(in: stagingRoot, purpose: "verify")
        defer { staging.remove() }
        let restored = staging.url.appendingPathComponent("restored").path
        try await decode(record, to: restored, staging: staging, progress: progress)
        try await Self.checkRestored(restored, manifest: record.manifest, timeout: timeout(of: record))
        record.state = .verified
        try store.updateBackup(record, at: Date())
        return record
    }

    /// Restores a backup to `destination`: never over an existing file without `force`; written to a
    /// temporary file, checked, then renamed into place; stale `-wal`/`-shm` files are removed.
    public func restore(
        _ id: String,
        to destination: String,
        force: Bool,
        fullCheck: Bool = false,
        progress: (@Sendable (Int64) -> Void)? = nil
    ) async throws {
        guard let record = try store.backup(id) else { throw BackupError.io("no backup \(id) in the catalog") }
        try await restore(record: record, to: destination, force: force, fullCheck: fullCheck, progress: progress)
    }

    /// Restores the backup `record` describes (from the catalog, or made from a manifest found on a target)
    /// to `destination`, as `restore(_:to:force:progress:)` does.
    ///
    /// The restored bytes are always checked against the manifest's SHA-256. The content checks
    /// (`PRAGMA integrity_check` and row counts; entry counts for archives) run unless the catalog records the
    /// backup `verified`: a verify already ran them on bytes with this same SHA-256, and would find the same.
    /// `fullCheck` runs them anyway. (On a 512 MiB database they take longer than decrypting and
    /// decompressing it: see bench/backup-bench.sh.)
    public func restore(
        record: BackupRecord,
        to destination: String,
        force: Bool,
        fullCheck: Bool = false,
        progress: (@Sendable (Int64) -> Void)? = nil
    ) async throws {
        if FileManager.default.fileExists(atPath: destination) && !force {
            throw BackupError.io("\(destination) exists; pass --force to replace it")
        }
        let temporary = destination + ".zoneward-restore"
        try? FileManager.default.removeItem(atPath: temporary)
        InFlight.add(temporary)
        defer { InFlight.remove(temporary) }
        let staging = try StagingDirectory.create(in: stagingRoot, purpose: "restore")
        defer { staging.remove() }
        do {
            try await decode(record, to: temporary, staging: staging, progress: progress)
            if fullCheck || record.state != .verified {
                try await Self.checkRestored(temporary, manifest: record.manifest, timeout: timeout(of: record))
            } else {
                try await Self.checkOpens(temporary, manifest: record.manifest)
            }
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: destination + suffix) }
        if rename(temporary, destination) != 0 {
            throw BackupError.io(
                "cannot move the restored file into \(destination): \(String(cString: strerror(errno)))"
            )
        }
    }

    /// What `prune` would do for a job: every completed or verified backup with the rules that keep it.
    public func pruneDecisions(_ job: BackupJobConfiguration) throws -> [(record: BackupRecord, keptBy: [String])] {
        let records = try store.backups(job: job.name, limit: 100_000).filter {
            $0.state == .completed || $0.state == .verified
        }
        let policy = RetentionPolicy(
            keepLast: job.retention["keepLast"] ?? 0,
            keepDaily: job.retention["keepDaily"] ?? 0,
            keepWeekly: job.retention["keepWeekly"] ?? 0,
            keepMonthly: job.retention["keepMonthly"] ?? 0
        )
        // No rule at all keeps everything: an empty policy must not delete a whole history.
        guard policy != RetentionPolicy() else { return records.map { ($0, ["no retention rules"]) } }
        let byId = Dictionary(uniqueKeysWithValues: records.map { ($0.id, $0) })
        let items = records.map { RetentionPolicy.Item(id: $0.id, time: $0.startedAt, verified: $0.state == .verified) }
        return policy.decide(items).compactMap { decision in byId[decision.item.id].map { ($0, decision.keptBy) } }
    }

    /// Deletes the objects, manifests and catalog entries of backups no rule keeps.
    public func prune(_ job: BackupJobConfiguration) async throws -> [BackupRecord] {
        var removed: [BackupRecord] = []
        for (record, keptBy) in try pruneDecisions(job) where keptBy.isEmpty {
            await removeObjects(record.objectPaths.map(StoredObject.init(recorded:)), job: job)
            try store.forgetBackup(record.id, reason: "no retention rule keeps it", at: Date())
            removed.append(record)
        }
        return removed
    }

    /// The child-process timeout of the job that made `record`; 1h when the job is no longer configured.
    private func timeout(of record: BackupRecord) -> Duration {
        configuration.backupJob(named: record.job)?.timeout ?? .seconds(3600)
    }

    private func decode(
        _ record: BackupRecord,
        to output: String,
        staging: StagingDirectory,
        progress: (@Sendable (Int64) -> Void)? = nil
    ) async throws {
        guard let job = configuration.backupJob(named: record.job) else {
            throw BackupError.io("job \(record.job) is not in the configuration (its key file is needed)")
        }
        let key = try BackupKey.load(file: job.keyFile)
        let objects = record.objectPaths.map(StoredObject.init(recorded:))
        let expected = record.sha256
        for case .file(let path) in objects where FileManager.default.fileExists(atPath: path) {
            try await onThread("zoneward-decode") {
                try BackupPipeline.decode(
                    from: path,
                    to: output,
                    key: key,
                    expectedSHA256: expected,
                    progress: progress
                )
            }
            return
        }
        // No local copy: stream the S3 object straight into the decoder; nothing of it is stored.
        for case .s3(let bucket, let objectKey) in objects {
            guard let target = job.s3Target(bucket: bucket) else { continue }
            let reader = try await StreamedObjectReader.s3(Self.client(for: target), key: objectKey)
            defer { reader.cancel() }
            _ = try await withTaskCancellationHandler {
                try await onThread("zoneward-decode") {
                    try BackupPipeline.decode(
                        from: reader,
                        to: output,
                        key: key,
                        expectedSHA256: expected,
                        progress: progress
                    )
                }
            } onCancel: {
                reader.cancel()
            }
            return
        }
        throw BackupError.io(
            "no stored object of \(record.id) is reachable: \(record.objectPaths.joined(separator: ", "))"
        )
    }

    /// Deletes stored objects and their manifests, local or in S3.
    func removeObjects(_ objects: [StoredObject], job: BackupJobConfiguration) async {
        for object in objects {
            for stored in [object, object.manifest] {
                switch stored {
                case .file(let path):
                    try? FileManager.default.removeItem(atPath: path)
                case .s3(let bucket, let key):
                    guard let target = job.s3Target(bucket: bucket) else { continue }
                    try? await Self.client(for: target).delete(key: key)
                }
            }
        }
    }

    static func client(for target: BackupJobConfiguration.S3Target) throws -> S3Client {
        let environment = ProcessInfo.processInfo.environment
        guard let id = environment[target.accessKeyIdEnv], let secret = environment[target.secretAccessKeyEnv] else {
            throw BackupError.key("S3 credentials: set \(target.accessKeyIdEnv) and \(target.secretAccessKeyEnv)")
        }
        return S3Client(
            endpoint: target.endpoint,
            bucket: target.bucket,
            region: target.region,
            accessKeyId: id,
            secretAccessKey: secret
        )
    }

    static func key(_ target: BackupJobConfiguration.S3Target, job: String, id: String) -> String {
        let trimmed = String(target.prefix.drop { $0 == "/" })
        let prefix = trimmed.isEmpty ? "" : (trimmed.hasSuffix("/") ? trimmed : trimmed + "/")
        return "\(prefix)\(job)/\(id).zwb"
    }

    /// Removes `.partial` objects an interrupted run left behind.
    private func removePartialObjects(of job: BackupJobConfiguration) {
        for target in job.targets {
            guard case .filesystem(let directory) = target else { continue }
            let folder = URL(fileURLWithPath: directory).appendingPathComponent(job.name).path
            for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            where name.hasSuffix(".partial") {
                try? FileManager.default.removeItem(atPath: "\(folder)/\(name)")
            }
        }
    }

    /// Aborts the multipart uploads an interrupted run (killed before it could abort them) left open in the
    /// job's S3 folders. Best effort: a target that does not answer fails the upload that follows anyway.
    private func abortOpenUploads(of job: BackupJobConfiguration) async {
        for case .s3(let s3) in job.targets {
            guard let client = try? Self.client(for: s3) else { continue }
            let prefix = String(Self.key(s3, job: job.name, id: "").dropLast(StoredObject.objectExtension.count))
            for upload in (try? await client.listMultipartUploads(prefix: prefix)) ?? []
            where !upload.key.dropFirst(prefix.count).contains("/") {
                try? await client.abortMultipartUpload(key: upload.key, uploadId: upload.uploadId)
            }
        }
    }

    /// A consistent copy of a SQLite database and its rows per table.
    static func snapshot(sqlite source: String, to destination: String) throws -> [String: Int] {
        try copySnapshot(sqlite: source, to: destination)
        return try rowCounts(ofSnapshot: destination)
    }

    /// A consistent copy through SQLite's online backup API, while other processes keep writing.
    static func copySnapshot(sqlite source: String, to destination: String) throws {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        let from = try DatabaseQueue(path: source, configuration: configuration)
        // The copy is plaintext in the run's private staging directory, read once and deleted: a crash
        // discards it whole, so SQLite need not sync it (its fsyncs cost 0.34 s of a 512 MiB backup, on the
        // disk the object is written to as well).
        var scratch = Configuration()
        scratch.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = OFF") }
        let to = try DatabaseQueue(path: destination, configuration: scratch)
        try from.backup(to: to)
        try from.close()
        try to.close()
    }

    static func rowCountsOffPool(_ path: String) async throws -> [String: Int] {
        try await onThread("zoneward-count") { try rowCounts(ofSnapshot: path) }
    }

    /// The rows of every table of a snapshot, read-only (it may be read by the encoder at the same time).
    static func rowCounts(ofSnapshot path: String) throws -> [String: Int] {
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? queue.close() }
        return try queue.read { db in
            var counts: [String: Int] = [:]
            for table in try String.fetchAll(
                db,
                sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            ) {
                counts[table] =
                    try Int.fetchOne(
                        db,
                        sql: "SELECT COUNT(*) FROM \"\(table.replacingOccurrences(of: "\"", with: "\"\""))\""
                    ) ?? 0
            }
            return counts
        }
    }

    /// Runs a tool, failing with its output when it exits non-zero.
    static func tool(_ arguments: [String], environment: [String: String] = [:], timeout: Duration) async throws {
        let (status, output) = try await ProcessRunner.run(arguments, environment: environment, timeout: timeout)
        guard status == 0 else { throw BackupError.io("\(arguments[0]) exited \(status): \(output.suffix(300))") }
    }

    /// Runs a tool and counts its output lines that are not comments.
    static func count(_ arguments: [String], timeout: Duration) async throws -> Int {
        let (status, output) = try await ProcessRunner.run(arguments, timeout: timeout)
        guard status == 0 else { throw BackupError.io("\(arguments[0]) exited \(status): \(output.suffix(300))") }
        return output.split(separator: "\n").filter { !$0.hasPrefix(";") && !$0.isEmpty }.count
    }

    static func checkRestored(_ path: String, manifest json: String, timeout: Duration) async throws {
        let manifest = try JSONDecoder().decode(BackupManifest.self, from: Data(json.utf8))
        if manifest.source.hasPrefix("directory:") || manifest.source.hasPrefix("postgres:") {
            let listing = manifest.source.hasPrefix("directory:") ? ["tar", "-tf", path] : ["pg_restore", "-l", path]
            let found = try await count(listing, timeout: timeout)
            guard found == manifest.entries else {
                throw BackupError.io(
                    "the restored archive has \(found) entries; the manifest says \(manifest.entries ?? 0)"
                )
            }
            return
        }
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        try await queue.read { db in
            let result = try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? ""
            guard result == "ok" else { throw BackupError.io("integrity_check of the restored database: \(result)") }
            for (table, expected) in manifest.rowCounts {
                let actual =
                    try Int.fetchOne(
                        db,
                        sql: "SELECT COUNT(*) FROM \"\(table.replacingOccurrences(of: "\"", with: "\"\""))\""
                    ) ?? -1
                guard actual == expected else {
                    throw BackupError.io(
                        "table \(table) has \(actual) rows after restore; the manifest says \(expected)"
                    )
                }
            }
        }
    }

    /// A restored SQLite database opens and reads its schema (a verified backup's content checks are not
    /// repeated); archives need nothing more than their checksum.
    static func checkOpens(_ path: String, manifest json: String) async throws {
        let manifest = try JSONDecoder().decode(BackupManifest.self, from: Data(json.utf8))
        guard !manifest.source.hasPrefix("directory:"), !manifest.source.hasPrefix("postgres:") else { return }
        let queue = try DatabaseQueue(path: path)
        defer { try? queue.close() }
        try await queue.read { db in
            _ = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM sqlite_master")
        }
    }

    static func sha256(of path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw BackupError.io("cannot read \(path)") }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let block = try handle.read(upToCount: 1 << 20), !block.isEmpty { hasher.update(data: block) }
        return hexString(hasher.finalize())
    }

    static func stamp(_ date: Date) -> String {
        date.formatted(
            .iso8601.year().month().day().dateSeparator(.omitted).time(includingFractionalSeconds: false).timeSeparator(
                .omitted
            )
        )
        .replacingOccurrences(of: "Z", with: "")
    }
}

extension BackupJobConfiguration {
    /// The job's S3 target in `bucket`, if it has one.
    func s3Target(bucket: String) -> S3Target? {
        for case .s3(let target) in targets where target.bucket == bucket { return target }
        return nil
    }
}
