import Foundation
import Hummingbird
import ZonewardAPI
import ZonewardModel
import ZonewardState

/// The backup catalog over the API, so a backup run (a CronJob) records its runs in the controller's
/// state database without sharing its volume: `GET /v1/backups` (read scope), and the runner's writes
/// `POST /v1/backups` (begin), `…/ID/heartbeat`, `…/ID/complete`, `…/ID/fail` (backup scope).
extension ControllerAPI {
    /// The most records `GET /v1/backups` lists (`limit`).
    static let maxBackupLimit = 1000
    /// The longest error message `…/fail` records; longer ones are cut.
    static let maxBackupError = 4096

    static func addBackupRoutes(to router: Router<ControllerRequestContext>, for controller: ControllerService) {
        router.get("/v1/backups") { request, _ in
            let query = request.uri.queryParameters
            let limit = try integer(query.get("limit"), field: "limit", in: 1...maxBackupLimit) ?? 100
            let job = try query.get("job").map { try backupName($0, field: "job") }
            return try json(try controller.store.backups(job: job, limit: limit))
        }
        router.get("/v1/backups/:id") { _, context in
            try json(try controller.backupRecord(try backupId(context)))
        }
        router.post("/v1/backups") { request, context in
            try await controller.beginBackup(try await decode(BackupBegin.self, request, context))
        }
        router.post("/v1/backups/:id/heartbeat") { _, context in
            let record = try controller.backupRecord(try backupId(context))
            try requireRunning(record)
            _ = try controller.gate.term()
            try controller.store.heartbeat(record.id, at: Date())
            return Response(status: .noContent)
        }
        router.post("/v1/backups/:id/complete") { request, context in
            let id = try backupId(context)
            let completion = try await decode(BackupCompletion.self, request, context)
            return try json(try await controller.completeBackup(id, completion))
        }
        router.post("/v1/backups/:id/verified") { _, context in
            try json(try await controller.markVerified(try backupId(context)))
        }
        router.post("/v1/backups/:id/fail") { request, context in
            let id = try backupId(context)
            let failure = try await decode(BackupFailure.self, request, context)
            return try json(try await controller.failBackup(id, failure))
        }
    }

    /// A backup id or job name: 1 to 200 letters, digits, `-`, `_`, `.` and `:`, or a 400 naming `field`.
    static func backupName(_ text: String, field: String) throws -> String {
        guard (1...200).contains(text.count),
            text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.:".contains($0)) })
        else {
            throw APIError(
                .badRequest,
                "\(field): expected 1 to 200 letters, digits, '-', '_', '.' or ':', got \"\(text.prefix(64))\""
            )
        }
        return text
    }

    static func backupId(_ context: ControllerRequestContext) throws -> String {
        try backupName(context.parameters.get("id") ?? "", field: "id")
    }

    /// A run still `running`, or a 409 saying what it is now.
    static func requireRunning(_ record: BackupRecord) throws {
        guard record.state == .running else {
            throw APIError(
                .conflict,
                "id: backup \(record.id) is \(record.state.rawValue), not running\(record.error.map { " (\($0))" } ?? "")"
            )
        }
    }
}

extension ControllerService {
    /// A backup of the catalog, or 404.
    func backupRecord(_ id: String) throws -> BackupRecord {
        guard let record = try store.backup(id) else { throw APIError(.notFound, "id: no backup \(id)") }
        return record
    }

    /// Records a run as started (201), after checking its id and that its job is configured; 409 when a
    /// live run of the job or a backup of that id exists.
    func beginBackup(_ begin: BackupBegin) async throws -> Response {
        let id = try ControllerAPI.backupName(begin.id, field: "id")
        let job = try ControllerAPI.backupName(begin.job, field: "job")
        guard settings.configuration.backupJob(named: job) != nil else {
            let known = settings.configuration.backups.map(\.name).joined(separator: ", ")
            throw APIError(
                .badRequest,
                "job: unknown backup job \"\(job)\" (known: \(known.isEmpty ? "none configured" : known))"
            )
        }
        guard try store.backup(id) == nil else { throw APIError(.conflict, "id: backup \(id) exists already") }
        let now = Date()
        let startedAt = begin.startedAt ?? now
        guard abs(startedAt.timeIntervalSince(now)) <= 86_400 else {
            throw APIError(.badRequest, "startedAt: expected a time within a day of the controller's clock")
        }
        let record = BackupRecord(id: id, job: job, startedAt: startedAt)
        _ = try gate.term()
        let orphaned = try store.beginBackup(record, at: now)
        try await durable()
        return try ControllerAPI.json(BackupStarted(backup: record, orphaned: orphaned), status: .created)
    }

    /// Records a run as completed. A run marked failed (orphaned: its heartbeats stopped for a while) may
    /// still complete, as it may in the database directly; a completed or verified one may not change.
    func completeBackup(_ id: String, _ completion: BackupCompletion) async throws -> BackupRecord {
        var record = try backupRecord(id)
        try requireUnfinished(record)
        guard completion.plainBytes >= 0 else { throw APIError(.badRequest, "plainBytes: expected 0 or more") }
        guard completion.storedBytes >= 0 else { throw APIError(.badRequest, "storedBytes: expected 0 or more") }
        guard completion.sha256.count == 64, completion.sha256.allSatisfy(\.isHexDigit) else {
            throw APIError(.badRequest, "sha256: expected 64 hexadecimal digits")
        }
        guard
            let objects = try? JSONDecoder().decode([String].self, from: Data(completion.objects.utf8)),
            !objects.isEmpty
        else {
            throw APIError(.badRequest, "objects: expected a JSON list of the stored objects, as a string")
        }
        guard
            (try? JSONSerialization.jsonObject(with: Data(completion.manifest.utf8))) is [String: Any]
        else {
            throw APIError(.badRequest, "manifest: expected the manifest, a JSON object, as a string")
        }
        record.state = .completed
        record.finishedAt = Date()
        record.error = nil
        record.plainBytes = completion.plainBytes
        record.storedBytes = completion.storedBytes
        record.sha256 = completion.sha256.lowercased()
        record.keyId = completion.keyId
        record.objects = completion.objects
        record.manifest = completion.manifest
        _ = try gate.term()
        try store.updateBackup(record, at: Date())
        try await durable()
        return record
    }

    /// Records that a completed backup passed verification (restored to a scratch file and checked).
    func markVerified(_ id: String) async throws -> BackupRecord {
        var record = try backupRecord(id)
        guard record.state == .completed || record.state == .verified else {
            throw APIError(.conflict, "id: backup \(record.id) is \(record.state.rawValue), not completed")
        }
        record.state = .verified
        _ = try gate.term()
        try store.updateBackup(record, at: Date())
        try await durable()
        return record
    }

    /// Records a run as failed, with its error.
    func failBackup(_ id: String, _ failure: BackupFailure) async throws -> BackupRecord {
        var record = try backupRecord(id)
        try requireUnfinished(record)
        let error = failure.error.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !error.isEmpty else { throw APIError(.badRequest, "error: expected why the backup failed") }
        record.state = .failed
        record.finishedAt = Date()
        record.error = String(error.prefix(ControllerAPI.maxBackupError))
        _ = try gate.term()
        try store.updateBackup(record, at: Date())
        try await durable()
        return record
    }

    /// `running`, or `failed` (orphaned); a 409 for `completed` and `verified`.
    private func requireUnfinished(_ record: BackupRecord) throws {
        guard record.state == .running || record.state == .failed else {
            throw APIError(.conflict, "id: backup \(record.id) is \(record.state.rawValue) already")
        }
    }
}
