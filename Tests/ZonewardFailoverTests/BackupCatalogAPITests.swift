import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import ZonewardModel
import ZonewardState

@testable import ZonewardFailover

/// A controller with one backup job, `state`, and a token of each scope.
func makeBackupController() throws -> ControllerService {
    let base = try makeController()
    var settings = base.settings
    settings.configuration.backups = [
        BackupJobConfiguration(
            name: "state",
            source: .sqlite("/nonexistent/state.db"),
            schedule: "17 * * * *",
            targets: [.filesystem("/nonexistent/backups")],
            keyFile: "/nonexistent/key"
        )
    ]
    settings.scopedTokens = [.read: "reader", .report: "proxy", .operate: "operator", .backup: "backup"]
    return ControllerService(settings: settings, store: base.store, group: base.group, logger: base.logger)
}

@Sendable func bearer(_ token: String) -> HTTPFields { [.authorization: "Bearer \(token)"] }

let sha = String(repeating: "ab", count: 32)
let completion =
    #"{"plainBytes": 10, "storedBytes": 8, "sha256": "\#(sha)", "keyId": "k1", "#
    + #""objects": "[\"/b/state/x.zwb\"]", "manifest": "{\"id\": \"x\"}"}"#

@Suite struct BackupCatalogAPITests {
    /// Begin, heartbeat, complete: the catalog shows the run as the runner recorded it.
    @Test func aRunIsRecordedThroughTheAPI() async throws {
        let controller = try makeBackupController()
        let app = controller.makeApplication()
        let startedAt = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down) - 60)
        try await app.test(.router) { client in
            let begin = jsonBody(
                #"{"id": "state-1", "job": "state", "startedAt": "\#(startedAt.formatted(.iso8601))"}"#
            )
            try await client.execute(uri: "/v1/backups", method: .post, headers: bearer("backup"), body: begin) {
                #expect($0.status == .created)
                let started = try JSONDecoder.api.decode(BackupStarted.self, from: Data($0.body.readableBytesView))
                #expect(started.backup.id == "state-1")
                #expect(started.backup.state == .running)
                #expect(started.orphaned.isEmpty)
            }
            try await client.execute(uri: "/v1/backups/state-1/heartbeat", method: .post, headers: bearer("backup")) {
                #expect($0.status == .noContent)
            }
            try await client.execute(
                uri: "/v1/backups/state-1/complete",
                method: .post,
                headers: bearer("backup"),
                body: jsonBody(completion)
            ) {
                #expect($0.status == .ok)
            }
            try await client.execute(uri: "/v1/backups?job=state", method: .get, headers: bearer("reader")) {
                #expect($0.status == .ok)
                let records = try JSONDecoder.api.decode([BackupRecord].self, from: Data($0.body.readableBytesView))
                #expect(records.map(\.id) == ["state-1"])
            }
            // A completed run no longer beats, completes or fails.
            try await client.execute(uri: "/v1/backups/state-1/heartbeat", method: .post, headers: bearer("backup")) {
                #expect($0.status == .conflict)
                #expect(errorMessage($0).hasPrefix("id: backup state-1 is completed"))
            }
            try await client.execute(
                uri: "/v1/backups/state-1/fail",
                method: .post,
                headers: bearer("backup"),
                body: jsonBody(#"{"error": "late"}"#)
            ) {
                #expect($0.status == .conflict)
            }
        }
        let record = try #require(try controller.store.backup("state-1"))
        #expect(record.state == .completed)
        #expect(record.sha256 == sha)
        #expect(record.objectPaths == ["/b/state/x.zwb"])
        #expect(record.manifest == #"{"id": "x"}"#)
        #expect(record.startedAt == startedAt)
        #expect(record.finishedAt != nil)
    }

    @Test func aFailedRunKeepsItsError() async throws {
        let controller = try makeBackupController()
        try await controller.makeApplication().test(.router) { client in
            let begin = jsonBody(#"{"id": "state-2", "job": "state"}"#)
            try await client.execute(uri: "/v1/backups", method: .post, headers: authorized, body: begin) {
                #expect($0.status == .created)
            }
            // One live run per job.
            let again = jsonBody(#"{"id": "state-3", "job": "state"}"#)
            try await client.execute(uri: "/v1/backups", method: .post, headers: authorized, body: again) {
                #expect($0.status == .conflict)
                #expect(errorMessage($0).contains("already running"))
            }
            try await client.execute(
                uri: "/v1/backups/state-2/fail",
                method: .post,
                headers: bearer("backup"),
                body: jsonBody(#"{"error": "disk full"}"#)
            ) {
                #expect($0.status == .ok)
            }
        }
        let record = try #require(try controller.store.backup("state-2"))
        #expect(record.state == .failed)
        #expect(record.error == "disk full")
    }

    @Test func badInputIsRefusedNamingTheField() async throws {
        let app = try makeBackupController().makeApplication()
        try await app.test(.router) { client in
            try await client.execute(
                uri: "/v1/backups",
                method: .post,
                headers: authorized,
                body: jsonBody(#"{"id": "state-9", "job": "state"}"#)
            ) { #expect($0.status == .created) }
            for (uri, text, field) in [
                ("/v1/backups", #"{"id": "a b", "job": "state"}"#, "id:"),
                ("/v1/backups", #"{"id": "x", "job": "nosuch"}"#, "job:"),
                ("/v1/backups", #"{"id": "x"}"#, "body:"),
                ("/v1/backups", #"{"id": "x", "job": "state", "startedAt": "yesterday"}"#, "body:"),
                ("/v1/backups", #"{"id": "x", "job": "state", "startedAt": "2001-01-01T00:00:00Z"}"#, "startedAt:"),
                ("/v1/backups/state-9/complete", completion.replacingOccurrences(of: sha, with: "zz"), "sha256:"),
                (
                    "/v1/backups/state-9/complete",
                    completion.replacingOccurrences(of: #""[\"/b/state/x.zwb\"]""#, with: #""x""#), "objects:"
                ),
                (
                    "/v1/backups/state-9/complete",
                    completion.replacingOccurrences(of: #""{\"id\": \"x\"}""#, with: #""[]""#), "manifest:"
                ),
                ("/v1/backups/state-9/complete", #"{"plainBytes": 1}"#, "body:"),
                ("/v1/backups/state-9/fail", #"{"error": " "}"#, "error:"),
            ] {
                try await client.execute(uri: uri, method: .post, headers: authorized, body: jsonBody(text)) {
                    #expect($0.status == .badRequest, "\(uri) \(text)")
                    #expect(errorMessage($0).hasPrefix(field), "\(text): \(errorMessage($0))")
                }
            }
            for uri in ["/v1/backups?limit=0", "/v1/backups?job=a%20b"] {
                try await client.execute(uri: uri, method: .get, headers: authorized) {
                    #expect($0.status == .badRequest, "\(uri)")
                }
            }
        }
    }

    @Test func anUnknownIdIsNotFound() async throws {
        let app = try makeBackupController().makeApplication()
        try await app.test(.router) { client in
            try await client.execute(uri: "/v1/backups/nosuch", method: .get, headers: authorized) {
                #expect($0.status == .notFound)
                #expect(errorMessage($0) == "id: no backup nosuch")
            }
            for (path, body) in [
                ("heartbeat", "{}"), ("complete", completion), ("fail", #"{"error": "x"}"#),
            ] {
                try await client.execute(
                    uri: "/v1/backups/nosuch/\(path)",
                    method: .post,
                    headers: authorized,
                    body: jsonBody(body)
                ) {
                    #expect($0.status == .notFound, "\(path)")
                    #expect(errorMessage($0) == "id: no backup nosuch", "\(path)")
                }
            }
        }
    }

    /// A backup token reads and writes the catalog, and cannot fail anything over or drain; no other scoped
    /// token writes the catalog.
    @Test func theBackupScopeWritesTheCatalogOnly() async throws {
        let app = try makeBackupController().makeApplication()
        let drain = jsonBody(#"{"zone": "za", "duration": "1m", "reason": "test"}"#)
        let failover = jsonBody(#"{"service": "orders", "to": "rb", "dryRun": true}"#)
        try await app.test(.router) { client in
            try await client.execute(uri: "/v1/backups", method: .get, headers: bearer("backup")) {
                #expect($0.status == .ok)
            }
            try await client.execute(uri: "/v1/status", method: .get, headers: bearer("backup")) {
                #expect($0.status == .ok)
            }
            for (uri, body) in [("/v1/drains", drain), ("/v1/failover", failover)] {
                try await client.execute(uri: uri, method: .post, headers: bearer("backup"), body: body) {
                    #expect($0.status == .forbidden, "\(uri)")
                    #expect(errorMessage($0).contains("may not operate"))
                }
            }
            for token in ["reader", "proxy", "operator"] {
                try await client.execute(
                    uri: "/v1/backups",
                    method: .post,
                    headers: bearer(token),
                    body: jsonBody(#"{"id": "state-5", "job": "state"}"#)
                ) {
                    #expect($0.status == .forbidden, "\(token)")
                    #expect(errorMessage($0).contains("may not write the backup catalog"))
                }
            }
            try await client.execute(
                uri: "/v1/backups",
                method: .post,
                headers: bearer("backup"),
                body: jsonBody(#"{"id": "state-5", "job": "state"}"#)
            ) { #expect($0.status == .created) }
        }
    }
}

extension JSONDecoder {
    /// Decodes the API's answers: dates as RFC 3339 strings.
    static var api: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
