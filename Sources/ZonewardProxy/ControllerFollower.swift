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

    func snapshot(after version: Int, wait: Duration) async throws -> ControlSnapshot {
        let base = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        guard let url = URL(string: "\(base)/v1/snapshot?after=\(version)&wait=\(TimeSpanText.seconds(wait))") else {
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
