import Foundation
import GRDB
import ZonewardModel
import ZonewardState

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The controller's state shipped through a backup job's targets (filesystem and S3) with its key: each
/// copy is a consistent SQLite snapshot encoded exactly as backups are (the job's codec, AES-256-GCM framed chunks,
/// SHA-256), stored as `<job>/state/t{term:020}-s{sequence:012}.zwb` with its manifest `.json` beside it,
/// so names sort as copies do, by term then sequence.
public struct BackupStateReplica: StateReplica {
    public let job: BackupJobConfiguration
    /// How many complete copies each target keeps; the newest is never pruned.
    public let keep: Int
    /// Where private staging directories for the plaintext snapshot are made.
    public var stagingRoot: URL
    let key: BackupKey
    let locations: [Location]

    /// Where the copies live on one target.
    enum Location: Sendable, CustomStringConvertible {
        /// `<directory>/<job>/state`.
        case directory(URL)
        /// Keys `<prefix>`…, e.g. `zoneward/state/state/`.
        case s3(S3Client, prefix: String)

        var description: String {
            switch self {
            case .directory(let url): url.path
            case .s3(let client, let prefix): "s3://\(client.bucket)/\(prefix)"
            }
        }
    }

    /// Reads the job's key and the S3 credentials of its targets now, so a bad key or missing credentials
    /// fail here rather than at the first ship.
    public init(
        job: BackupJobConfiguration,
        keep: Int = 20,
        stagingRoot: URL = FileManager.default.temporaryDirectory
    ) throws {
        guard keep >= 1 else { throw BackupError.io("keep: must be at least 1, got \(keep)") }
        guard !job.targets.isEmpty else { throw BackupError.io("backup job \(job.name) has no targets") }
        self.job = job
        self.keep = keep
        self.stagingRoot = stagingRoot
        key = try BackupKey.load(file: job.keyFile)
        locations = try job.targets.map { target in
            switch target {
            case .filesystem(let directory):
                return .directory(
                    URL(fileURLWithPath: directory).appendingPathComponent(job.name).appendingPathComponent("state")
                )
            case .s3(let s3):
                let trimmed = String(s3.prefix.drop { $0 == "/" })
                let prefix = trimmed.isEmpty ? "" : (trimmed.hasSuffix("/") ? trimmed : trimmed + "/")
                return .s3(try BackupRunner.client(for: s3), prefix: "\(prefix)\(job.name)/state/")
            }
        }
    }

    // MARK: - Names

    static let maxSequence: Int64 = 999_999_999_999

    /// `t{term:020}-s{sequence:012}.zwb`.
    public static func name(term: Int64, sequence: Int64) throws -> String {
        guard term >= 0 else { throw BackupError.io("term: must not be negative, got \(term)") }
        guard (0...maxSequence).contains(sequence) else {
            throw BackupError.io("sequence: must be between 0 and \(maxSequence), got \(sequence)")
        }
        let termDigits = String(term)
        let sequenceDigits = String(sequence)
        return "t" + String(repeating: "0", count: 20 - termDigits.count) + termDigits + "-s"
            + String(repeating: "0", count: 12 - sequenceDigits.count) + sequenceDigits + StoredObject.objectExtension
    }

    /// The copy an object name stands for, or nil when the name is not one of a shipped copy.
    public static func parse(name: String) -> ShippedState? {
        let characters = Array(name.utf8)
        let suffix = Array(StoredObject.objectExtension.utf8)
        guard characters.count == 1 + 20 + 2 + 12 + suffix.count, characters[0] == UInt8(ascii: "t"),
            characters[21] == UInt8(ascii: "-"), characters[22] == UInt8(ascii: "s"),
            Array(characters[35...]) == suffix
        else { return nil }
        let digits = characters[1..<21] + characters[23..<35]
        guard digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            let term = Int64(String(decoding: characters[1..<21], as: UTF8.self)),
            let sequence = Int64(String(decoding: characters[23..<35], as: UTF8.self))
        else { return nil }
        return ShippedState(term: term, sequence: sequence, name: name)
    }

    static func manifestName(_ name: String) -> String {
        String(name.dropLast(StoredObject.objectExtension.count)) + StoredObject.manifestExtension
    }

    // MARK: - StateReplica

    public func ship(_ store: StateStore, term: Int64, sequence: Int64) async throws -> ShippedState {
        let copy = ShippedState(term: term, sequence: sequence, name: try Self.name(term: term, sequence: sequence))
        let staging = try StagingDirectory.create(in: stagingRoot, purpose: "state")
        defer { staging.remove() }
        let snapshot = staging.url.appendingPathComponent("state.db").path
        let rowCounts = try store.copy(to: snapshot)
        let object = staging.url.appendingPathComponent(copy.name).path
        let (key, compression) = (key, job.compression)
        let result = try await onThread("zoneward-encode") {
            try BackupPipeline.encode(
                from: snapshot,
                to: object,
                key: key,
                compression: compression,
                synchronize: false
            )
        }
        let manifest = BackupManifest(
            id: String(copy.name.dropLast(StoredObject.objectExtension.count)),
            job: job.name,
            source: "sqlite:\(store.path) (controller state, term \(term), #\(sequence))",
            created: Date(),
            encoded: result,
            rowCounts: rowCounts,
            entries: nil
        )
        let manifestData = try manifest.encoded()
        let manifestFile = staging.url.appendingPathComponent(Self.manifestName(copy.name)).path
        try manifestData.write(to: URL(fileURLWithPath: manifestFile))
        let objectData = try Data(contentsOf: URL(fileURLWithPath: object))
        // Every target at once; the copy counts only once each holds it, object first, then its manifest.
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for location in locations {
                    group.addTask {
                        try await Self.store(
                            copy.name,
                            object: (path: object, data: objectData),
                            manifest: (path: manifestFile, data: manifestData),
                            sha256: result.sha256,
                            at: location
                        )
                    }
                }
                try await group.waitForAll()
            }
        } catch {
            // A copy not on every target was never durable: leave none of it behind.
            for location in locations { await Self.remove(copy.name, at: location) }
            throw BackupError.io("shipping state copy \(copy.name) to job \(job.name)'s targets failed: \(error)")
        }
        for location in locations { await prune(location) }
        return copy
    }

    /// The newest complete copy on any target that answers (a target emptied or restored from an older
    /// snapshot cannot hide a newer copy another one holds); throws only when no target answers.
    public func newest() async throws -> ShippedState? {
        var failures: [String] = []
        var answered = false
        var best: ShippedState?
        for location in locations {
            do {
                let newest = try await Self.listing(location).complete.max()
                answered = true
                if let newest, best.map({ $0 < newest }) ?? true { best = newest }
            } catch {
                failures.append("\(location): \(error)")
            }
        }
        if answered { return best }
        throw BackupError.io(
            "no target of backup job \(job.name) answered a listing of its state copies: "
                + failures.joined(separator: "; ")
        )
    }

    /// Every complete copy on the first target that answers, oldest first.
    public func copies() async throws -> [ShippedState] {
        var failures: [String] = []
        for location in locations {
            do {
                return try await Self.listing(location).complete.sorted()
            } catch {
                failures.append("\(location): \(error)")
            }
        }
        throw BackupError.io(
            "no target of backup job \(job.name) answered a listing of its state copies: "
                + failures.joined(separator: "; ")
        )
    }

    public func restore(_ copy: ShippedState, into store: StateStore) async throws {
        let staging = try StagingDirectory.create(in: stagingRoot, purpose: "state-restore")
        defer { staging.remove() }
        let staged = try await fetchVerified(copy, staging: staging)
        try store.replaceContents(withDatabaseAt: staged)
    }

    /// Restores `copy` to the database file `destination` (for an operator with no controller left): never
    /// over an existing file without `force`; written to a temporary file beside it, checked, fsynced, then
    /// renamed into place; stale `-wal`/`-shm` files are removed.
    public func restore(_ copy: ShippedState, toFile destination: String, force: Bool) async throws {
        if FileManager.default.fileExists(atPath: destination) && !force {
            throw BackupError.io("\(destination) exists; pass --force to replace it")
        }
        let staging = try StagingDirectory.create(in: stagingRoot, purpose: "state-restore")
        defer { staging.remove() }
        let staged = try await fetchVerified(copy, staging: staging)
        let temporary = destination + ".zoneward-restore"
        try? FileManager.default.removeItem(atPath: temporary)
        InFlight.add(temporary)
        defer { InFlight.remove(temporary) }
        do {
            try Self.writeSynced(try Data(contentsOf: URL(fileURLWithPath: staged)), to: temporary)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: destination + suffix) }
        guard rename(temporary, destination) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: temporary)
            throw BackupError.io("cannot move the restored file into \(destination): \(reason)")
        }
        Self.syncDirectory(of: destination)
    }

    // MARK: - Reading a copy

    /// Reads `copy` from the first target that holds a good one: its manifest, then the object, decrypted
    /// with the checksum the manifest names into a private staging file, which must pass `quick_check` and
    /// match the manifest's row counts. Returns the staged file's path.
    func fetchVerified(_ copy: ShippedState, staging: StagingDirectory) async throws -> String {
        let staged = staging.url.appendingPathComponent("restored.db").path
        var failures: [String] = []
        for location in locations {
            do {
                let manifest: BackupManifest
                let objectPath: String
                switch location {
                case .directory(let folder):
                    let manifestPath = folder.appendingPathComponent(Self.manifestName(copy.name)).path
                    guard let data = FileManager.default.contents(atPath: manifestPath) else {
                        throw BackupError.io("no manifest \(manifestPath)")
                    }
                    manifest = try Self.decodeManifest(data, of: copy)
                    objectPath = folder.appendingPathComponent(copy.name).path
                case .s3(let client, let prefix):
                    let manifestPath = staging.url.appendingPathComponent("manifest.json").path
                    try await client.get(key: prefix + Self.manifestName(copy.name), to: manifestPath)
                    manifest = try Self.decodeManifest(
                        try Data(contentsOf: URL(fileURLWithPath: manifestPath)),
                        of: copy
                    )
                    objectPath = staging.url.appendingPathComponent("download.zwb").path
                    try await client.get(key: prefix + copy.name, to: objectPath)
                }
                let (key, expected) = (key, manifest.sha256)
                try await onThread("zoneward-decode") {
                    try BackupPipeline.decode(from: objectPath, to: staged, key: key, expectedSHA256: expected)
                }
                try Self.check(staged, against: manifest)
                return staged
            } catch {
                try? FileManager.default.removeItem(atPath: staged)
                failures.append("\(location): \(error)")
            }
        }
        throw BackupError.io(
            "state copy \(copy.name) of backup job \(job.name) could not be restored from any target "
                + "(the live database is unchanged): " + failures.joined(separator: "; ")
        )
    }

    static func decodeManifest(_ data: Data, of copy: ShippedState) throws -> BackupManifest {
        let manifest: BackupManifest
        do {
            manifest = try JSONDecoder().decode(BackupManifest.self, from: data)
        } catch {
            throw BackupError.io("the manifest of \(copy.name) is not a backup manifest: \(error)")
        }
        guard manifest.id + StoredObject.objectExtension == copy.name else {
            throw BackupError.io("the manifest beside \(copy.name) is the one of \(manifest.id)")
        }
        return manifest
    }

    /// `quick_check` and the manifest's row counts, on the staged plaintext opened read-only.
    static func check(_ path: String, against manifest: BackupManifest) throws {
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? queue.close() }
        try queue.read { db in
            let result = try String.fetchOne(db, sql: "PRAGMA quick_check") ?? ""
            guard result == "ok" else { throw BackupError.io("quick_check of the restored copy: \(result)") }
            let counts = try StateStore.rowCounts(db)
            guard counts == manifest.rowCounts else {
                throw BackupError.io(
                    "the restored copy's rows per table \(counts.sorted { $0.key < $1.key }) differ from the "
                        + "manifest's \(manifest.rowCounts.sorted { $0.key < $1.key })"
                )
            }
        }
    }

    // MARK: - Targets

    /// The copies at one location: complete ones (object and manifest), and names of leftovers (an object
    /// without its manifest, a manifest without its object, `.partial` files) with their age when known.
    static func listing(
        _ location: Location
    ) async throws -> (complete: [ShippedState], leftovers: [(name: String, age: TimeInterval?)]) {
        var names: [String: TimeInterval?] = [:]
        switch location {
        case .directory(let folder):
            guard FileManager.default.fileExists(atPath: folder.path) else { return ([], []) }
            for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) {
                let modified =
                    (try? FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent(name).path)[
                        .modificationDate
                    ]) as? Date
                names[name] = modified.map { Date().timeIntervalSince($0) }
            }
        case .s3(let client, let prefix):
            for object in try await client.list(prefix: prefix) {
                let name = String(object.key.dropFirst(prefix.count))
                if !name.contains("/") { names[name] = TimeInterval?.none }
            }
        }
        var complete: [ShippedState] = []
        var leftovers: [(String, TimeInterval?)] = []
        for (name, age) in names {
            if let copy = parse(name: name) {
                if names[manifestName(name)] != nil { complete.append(copy) } else { leftovers.append((name, age)) }
            } else if name.hasSuffix(StoredObject.manifestExtension) {
                let object = String(name.dropLast(StoredObject.manifestExtension.count)) + StoredObject.objectExtension
                if parse(name: object) != nil && names[object] == nil { leftovers.append((name, age)) }
            } else if name.hasSuffix(".partial") {
                leftovers.append((name, age))
            }
        }
        return (complete, leftovers)
    }

    /// Writes one copy to one location: a directory gets `.partial` files, fsynced, checksum-confirmed and
    /// renamed (the directory fsynced after); S3 gets the object, its size confirmed (each request's payload
    /// is checked against its signed SHA-256), then the manifest.
    static func store(
        _ name: String,
        object: (path: String, data: Data),
        manifest: (path: String, data: Data),
        sha256: String,
        at location: Location
    ) async throws {
        switch location {
        case .directory(let folder):
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let objectPath = folder.appendingPathComponent(name).path
            let partial = objectPath + ".partial"
            try writeSynced(object.data, to: partial)
            let onDisk = try BackupRunner.sha256(of: partial)
            guard onDisk == sha256 else {
                try? FileManager.default.removeItem(atPath: partial)
                throw BackupError.checksumMismatch(expected: sha256, actual: onDisk)
            }
            try move(partial, to: objectPath)
            let manifestPath = folder.appendingPathComponent(manifestName(name)).path
            try writeSynced(manifest.data, to: manifestPath + ".partial")
            try move(manifestPath + ".partial", to: manifestPath)
            syncDirectory(of: manifestPath)
        case .s3(let client, let prefix):
            try await client.put(file: object.path, key: prefix + name)
            guard try await client.size(key: prefix + name) == object.data.count else {
                throw BackupError.io("S3 object \(prefix + name) does not have the size written")
            }
            try await client.put(file: manifest.path, key: prefix + manifestName(name))
        }
    }

    /// Removes a copy (manifest first, so it never looks complete without its object) and its leftovers.
    static func remove(_ name: String, at location: Location) async {
        switch location {
        case .directory(let folder):
            for file in [manifestName(name), manifestName(name) + ".partial", name, name + ".partial"] {
                try? FileManager.default.removeItem(at: folder.appendingPathComponent(file))
            }
        case .s3(let client, let prefix):
            try? await client.delete(key: prefix + manifestName(name))
            try? await client.delete(key: prefix + name)
        }
    }

    /// Deletes complete copies beyond `keep`, oldest first (never the newest), and leftovers older than the
    /// newest complete copy (or, for files, older than a minute: a ship still writing is never touched).
    /// Failures are left for the next ship: the new copy is durable either way.
    func prune(_ location: Location) async {
        guard let listing = try? await Self.listing(location) else { return }
        let sorted = listing.complete.sorted()
        for copy in sorted.dropLast(keep) { await Self.remove(copy.name, at: location) }
        guard let newest = sorted.last else { return }
        for (name, age) in listing.leftovers {
            let base = name.hasSuffix(".partial") ? String(name.dropLast(".partial".count)) : name
            let objectName =
                base.hasSuffix(StoredObject.manifestExtension)
                ? String(base.dropLast(StoredObject.manifestExtension.count)) + StoredObject.objectExtension : base
            let older = Self.parse(name: objectName).map { $0 < newest } ?? false
            let stale = age.map { $0 > 60 } ?? false
            guard older || stale else { continue }
            switch location {
            case .directory(let folder): try? FileManager.default.removeItem(at: folder.appendingPathComponent(name))
            case .s3(let client, let prefix): try? await client.delete(key: prefix + name)
            }
        }
    }

    // MARK: - Durable files

    /// Creates `path` (mode 0600) holding `data`, fsynced.
    static func writeSynced(_ data: Data, to path: String) throws {
        let handle = try createPrivateFile(path)
        defer { try? handle.close() }
        try handle.write(contentsOf: data)
        try handle.synchronize()
    }

    static func move(_ source: String, to destination: String) throws {
        guard rename(source, destination) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: source)
            throw BackupError.io("cannot rename \(source) to \(destination): \(reason)")
        }
    }

    /// fsyncs the directory holding `path`, so a rename in it survives a crash.
    static func syncDirectory(of path: String) {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        fsync(descriptor)
        close(descriptor)
    }
}
