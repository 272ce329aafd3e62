import Foundation

extension ControllerClient {
    /// `POST /v1/backups/ID/verified`: a completed backup was restored to a scratch file and checked.
    public func markBackupVerified(_ id: String) async throws(ControllerClientError) -> BackupRecord {
        try decode(
            BackupRecord.self,
            try await write("/v1/backups/\(Self.escape(id))/verified", body: [String: String]())
        )
    }
}
