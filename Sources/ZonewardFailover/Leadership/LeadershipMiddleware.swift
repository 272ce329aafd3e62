import Foundation
import HTTPTypes
import Hummingbird
import ZonewardState

/// Sends writes to the leader and marks reads answered from a follower's warm copy.
///
/// A write (any method but GET and HEAD) reaching a follower is answered `307 Temporary Redirect` to the same
/// path and query at the leader's URL, so a client repeats it there with its method and body; with no leader
/// known it gets 503 and `Retry-After`. A read is answered here; from a follower it carries
/// `X-Zoneward-State-Age` (seconds since this replica last confirmed its copy is the newest) and
/// `X-Zoneward-Leader` (the leader's URL, when known).
struct LeadershipMiddleware: RouterMiddleware {
    typealias Context = ControllerRequestContext
    let controller: ControllerService

    // Both names are valid tokens, so the fallbacks are never used.
    static let stateAgeHeader = HTTPField.Name("X-Zoneward-State-Age") ?? .via
    static let leaderHeader = HTTPField.Name("X-Zoneward-Leader") ?? .via

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let gate = controller.gate
        if gate.isSingle || request.uri.path == "/healthz" || request.uri.path == "/metrics" {
            return try await next(request, context)
        }
        let isRead = request.method == .get || request.method == .head
        if gate.isLeader {
            return try await next(request, context)
        }
        let leader = gate.leader.flatMap { $0.id == gate.me.id ? nil : $0 }
        if isRead {
            var response = try await next(request, context)
            if let age = controller.stateAge {
                response.headers[Self.stateAgeHeader] = String(format: "%.1f", age)
            }
            if let leader { response.headers[Self.leaderHeader] = leader.url }
            return response
        }
        guard let leader, !leader.url.isEmpty else {
            var response = ControllerAPI.errorResponse(
                .serviceUnavailable,
                "no controller leads right now (an election is under way); nothing was changed, try again"
            )
            response.headers[.retryAfter] = "1"
            if request.hasBody { response.headers[.connection] = "close" }
            return response
        }
        let target = leader.url + request.uri.description
        var response = ControllerAPI.errorResponse(
            .temporaryRedirect,
            "this controller follows; send writes to the leader at \(leader.url)"
        )
        response.headers[.location] = target
        response.headers[Self.leaderHeader] = leader.url
        if request.hasBody { response.headers[.connection] = "close" }
        return response
    }
}

/// A change was recorded but its copy could not be made durable: it is not acknowledged.
struct StateShippingError: Error, CustomStringConvertible {
    var underlying: any Error
    var description: String {
        "the change could not be made durable on the state targets (\(underlying)); it is not acknowledged, "
            + "try again"
    }
}

/// `GET /v1/leadership`: who this replica is, whether it leads, and with which term.
public struct LeadershipReport: Codable, Sendable, Equatable {
    /// This replica.
    public var me: LeaderRecord
    /// `leader`, `follower` or `single` (no election).
    public var role: String
    /// The term it leads with, while it may act.
    public var term: Int64?
    /// The leader as known.
    public var leader: LeaderRecord?
    /// Seconds since a follower last confirmed its warm copy is the newest.
    public var stateAge: Double?
    /// The newest shipped copy this replica holds.
    public var stateCopy: ShippedState?
    /// Wall-clock times (RFC 3339) this replica last started and stopped acting as leader.
    public var actingSince: Date?
    public var stoppedActingAt: Date?
    /// The same in milliseconds since 1970, for drills that compare replicas.
    public var actingSinceMillis: Int64?
    public var stoppedActingAtMillis: Int64?

    static func addRoute(to router: Router<ControllerRequestContext>, controller: ControllerService) {
        router.get("/v1/leadership") { _, _ in
            try ControllerAPI.json(controller.leadershipReport())
        }
    }
}

extension ControllerService {
    func leadershipReport() -> LeadershipReport {
        let term = try? gate.term()
        let role = gate.isSingle ? "single" : (term != nil ? "leader" : "follower")
        let (copy, times) = warm.withLock { ($0.held, ($0.actingSince, $0.stoppedActingAt)) }
        return LeadershipReport(
            me: gate.me,
            role: role,
            term: term,
            leader: gate.leader,
            stateAge: stateAge,
            stateCopy: copy,
            actingSince: times.0,
            stoppedActingAt: times.1,
            actingSinceMillis: times.0.map { Int64($0.timeIntervalSince1970 * 1000) },
            stoppedActingAtMillis: times.1.map { Int64($0.timeIntervalSince1970 * 1000) }
        )
    }
}
