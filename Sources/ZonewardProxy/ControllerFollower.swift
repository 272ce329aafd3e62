import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import ZonewardState

/// Talks to the controller: long-polls `/v1/snapshot` and posts demand reports to `/v1/reports`.
///
/// On AsyncHTTPClient rather than URLSession: on Linux, cancelling a task while a URLSession request of
/// it is completing can deadlock inside FoundationNetworking (seen here: a proxy that never finished its
/// graceful shutdown), and a proxy cancels these loops at every shutdown.
struct ControllerFollower: Sendable {
    let baseURL: String
    let token: String
    /// Nil only in tests that build URLs.
    var client: HTTPClient?

    init(baseURL: String, token: String, client: HTTPClient? = nil) {
        self.baseURL = baseURL
        self.token = token
        self.client = client
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private var base: String { baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL }

    /// The long-poll URL: answered once the controller has a snapshot after `cursor`, or at once by a
    /// controller of another boot.
    func url(after cursor: SnapshotCursor, wait: Duration) -> URL? {
        URL(string: "\(base)/v1/snapshot?\(cursor.query)&wait=\(TimeSpanText.seconds(wait))")
    }

    func snapshot(after cursor: SnapshotCursor, wait: Duration) async throws -> ControlSnapshot {
        guard let url = url(after: cursor, wait: wait), let client else {
            throw Failure(description: "not a URL: \(baseURL)")
        }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        let response = try await client.execute(request, timeout: TimeAmount(wait + .seconds(10)))
        let body = try await response.body.collect(upTo: 16 * 1024 * 1024)
        guard response.status == .ok else {
            throw Failure(description: "GET /v1/snapshot answered \(response.status.code)")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(ControlSnapshot.self, from: body)
    }

    /// Sends this proxy's demand report (`POST /v1/reports`).
    func report(_ report: DemandReport) async throws {
        guard let client else { throw Failure(description: "no HTTP client") }
        var request = HTTPClientRequest(url: "\(base)/v1/reports")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(report)))
        let response = try await client.execute(request, timeout: .seconds(5))
        _ = try await response.body.collect(upTo: 64 * 1024)
        guard (200..<300).contains(Int(response.status.code)) else {
            throw Failure(description: "POST /v1/reports answered \(response.status.code)")
        }
    }
}

enum TimeSpanText {
    static func seconds(_ duration: Duration) -> String {
        "\(duration.components.seconds)s"
    }
}
