import Foundation

/// One backup in the catalog. It is `completed` only once every target's object is written and its
/// checksum confirmed, and `verified` once a test restore passed.
public struct BackupRecord: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        case running, completed, verified, failed
    }

    public var id: String
    public var job: String
    public var state: State
    public var startedAt: Date
    public var finishedAt: Date?
    public var heartbeatAt: Date
    public var plainBytes: Int64?
    public var storedBytes: Int64?
    public var sha256: String?
    public var keyId: String?
    /// JSON list of stored object paths, one per target.
    public var objects: String
    /// The manifest JSON.
    public var manifest: String
    public var error: String?

    public init(id: String, job: String, startedAt: Date) {
        self.id = id
        self.job = job
        self.state = .running
        self.startedAt = startedAt
        self.heartbeatAt = startedAt
        self.objects = "[]"
        self.manifest = "{}"
    }

    public var objectPaths: [String] {
        (try? JSONDecoder().decode([String].self, from: Data(objects.utf8))) ?? []
    }
}
