import Foundation
import ZonewardModel
import ZonewardState

/// A backup found on a job's targets by the manifest stored beside its object: what `backup list` and
/// `backup restore` use when the catalog (the state database) has no entry for it, e.g. once the database
/// file is lost.
public struct TargetBackup: Sendable, Equatable {
    public var manifest: BackupManifest
    /// The manifest as stored.
    public var manifestJSON: String
    /// Every stored object of it whose manifest sits beside it, one per target that holds it.
    public var objects: [StoredObject]

    /// When the manifest says the backup was taken; the distant past when it cannot be read.
    public var createdAt: Date {
        manifest.created ?? .distantPast
    }

    /// The catalog entry this backup would have: completed, with its objects and manifest.
    public var record: BackupRecord {
        var record = BackupRecord(id: manifest.id, job: manifest.job, startedAt: createdAt)
        record.state = .completed
        record.plainBytes = manifest.plainBytes
        record.storedBytes = manifest.storedBytes
        record.sha256 = manifest.sha256
        record.keyId = manifest.keyId
        let paths = objects.map(\.description)
        record.objects = String(decoding: (try? JSONEncoder().encode(paths)) ?? Data("[]".utf8), as: UTF8.self)
        record.manifest = manifestJSON
        return record
    }
}

extension BackupRunner {
    /// The backups of `job` on its targets, newest first: every `<id>.json` manifest in `<target>/<job>/`
    /// (a directory's listing, or ListObjectsV2 on S3) whose `<id>.zwb` object sits beside it, merged by id
    /// across targets. Targets that do not answer are skipped; when none answers this throws, naming each.
    public func targetBackups(of job: BackupJobConfiguration) async throws -> [TargetBackup] {
        var found: [String: TargetBackup] = [:]
        var failures: [String] = []
        let staging = try StagingDirectory.create(in: stagingRoot, purpose: "list")
        defer { staging.remove() }
        for target in job.targets {
            do {
                for (object, data) in try await Self.manifests(of: job, on: target, staging: staging) {
                    guard let manifest = try? JSONDecoder().decode(BackupManifest.self, from: data),
                        manifest.job == job.name
                    else { continue }
                    if found[manifest.id] == nil {
                        found[manifest.id] = TargetBackup(
                            manifest: manifest,
                            manifestJSON: String(decoding: data, as: UTF8.self),
                            objects: []
                        )
                    }
                    // A copy whose manifest disagrees (another checksum) is not the same backup.
                    if found[manifest.id]?.manifest.sha256 == manifest.sha256 {
                        found[manifest.id]?.objects.append(object)
                    }
                }
            } catch {
                failures.append("\(Self.describe(target, job: job.name)): \(error)")
            }
        }
        if failures.count == job.targets.count && !job.targets.isEmpty {
            throw BackupError.io(
                "no target of backup job \(job.name) could be listed: " + failures.joined(separator: "; ")
            )
        }
        return found.values.sorted { ($0.createdAt, $0.manifest.id) > ($1.createdAt, $1.manifest.id) }
    }

    /// The complete objects of one target (object and manifest both present) with their manifests' bytes.
    static func manifests(
        of job: BackupJobConfiguration,
        on target: BackupJobConfiguration.Target,
        staging: StagingDirectory
    ) async throws -> [(StoredObject, Data)] {
        var result: [(StoredObject, Data)] = []
        switch target {
        case .filesystem(let directory):
            let folder = URL(fileURLWithPath: directory).appendingPathComponent(job.name)
            guard FileManager.default.fileExists(atPath: folder.path) else { return [] }
            let names = Set(try FileManager.default.contentsOfDirectory(atPath: folder.path))
            for name in names.sorted() where name.hasSuffix(StoredObject.manifestExtension) {
                let base = String(name.dropLast(StoredObject.manifestExtension.count))
                guard names.contains(base + StoredObject.objectExtension),
                    let data = FileManager.default.contents(atPath: folder.appendingPathComponent(name).path)
                else { continue }
                result.append(
                    (.file(path: folder.appendingPathComponent(base + StoredObject.objectExtension).path), data)
                )
            }
        case .s3(let s3):
            let client = try client(for: s3)
            let objectKey = key(s3, job: job.name, id: "")
            let prefix = String(objectKey.dropLast(StoredObject.objectExtension.count))
            let keys = Set(
                try await client.list(prefix: prefix).map(\.key).filter { !$0.dropFirst(prefix.count).contains("/") }
            )
            let download = staging.url.appendingPathComponent("manifest.json").path
            for key in keys.sorted() where key.hasSuffix(StoredObject.manifestExtension) {
                let base = String(key.dropLast(StoredObject.manifestExtension.count))
                guard keys.contains(base + StoredObject.objectExtension) else { continue }
                try await client.get(key: key, to: download)
                result.append(
                    (
                        .s3(bucket: s3.bucket, key: base + StoredObject.objectExtension),
                        try Data(contentsOf: URL(fileURLWithPath: download))
                    )
                )
            }
        }
        return result
    }

    static func describe(_ target: BackupJobConfiguration.Target, job: String) -> String {
        switch target {
        case .filesystem(let directory): URL(fileURLWithPath: directory).appendingPathComponent(job).path
        case .s3(let s3):
            "s3://\(s3.bucket)/\(String(key(s3, job: job, id: "").dropLast(StoredObject.objectExtension.count)))"
        }
    }
}
