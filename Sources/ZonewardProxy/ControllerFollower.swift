import Foundation
import ZonewardState

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Fetches routing snapshots from the controller's `/v1/snapshot` by long poll.
struct ControllerFollower: Sendable {
    let baseURL: String
    let token: String

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The long-poll URL: answered once the controller has a snapshot after `cursor`, or at once by a
    /// controller of another boot.
    func url(after cursor: SnapshotCursor, wait: Duration) -> URL? {
        let base = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        return URL(string: "\(base)/v1/snapshot?\(cursor.query)&wait=\(TimeSpanText.seconds(wait))")
    }

    func snapshot(after cursor: SnapshotCursor, wait: Duration) async throws -> ControlSnapshot {
        guard let url = url(after: cursor, wait: wait) else {
            throw Failure(description: "not a URL: \(baseURL)")
        }
        var request = URLRequest(url: url, timeoutInterval: wait.seconds + 10)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200 else { throw Failure(description: "GET /v1/snapshot answered \(status)") }
        return try JSONDecoder().decode(ControlSnapshot.self, from: data)
    }
}

enum TimeSpanText {
    static func seconds(_ duration: Duration) -> String {
        "\(duration.components.seconds)s"
    }
}
