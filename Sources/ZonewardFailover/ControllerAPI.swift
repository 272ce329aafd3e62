import Foundation
import Hummingbird
import NIOCore
import ZonewardAPI
import ZonewardModel
import ZonewardState

/// A refusal the API answers with its status and `{"error": message}`; the message names the field.
struct APIError: Error, Sendable {
    var status: HTTPResponse.Status
    var message: String

    init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }
}

/// The request context of the controller's API: request bodies are limited to `ControllerAPI.maxBodyBytes`.
public struct ControllerRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    public var maxUploadSize: Int { ControllerAPI.maxBodyBytes }
}

/// The controller's HTTP API on Hummingbird: routes, bearer-token check on the request head, body limit,
/// JSON with RFC 3339 UTC timestamps, and errors as `{"error": "..."}`.
public enum ControllerAPI {
    /// The largest request body accepted, in bytes.
    public static let maxBodyBytes = 64 * 1024
    /// The longest long poll of `GET /v1/snapshot` (`wait`).
    public static let maxWait: Duration = .seconds(60)
    /// The longest drain `POST /v1/drains` accepts (`duration`).
    public static let maxDrain: Duration = .seconds(30 * 86_400)
    /// The most operations `GET /v1/operations` lists (`limit`).
    public static let maxLimit = 1000

    /// The router of `controller`'s API.
    static func router(for controller: ControllerService) -> Router<ControllerRequestContext> {
        let router = Router(context: ControllerRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        router.add(
            middleware: BearerTokenMiddleware(
                token: controller.settings.token,
                scoped: controller.settings.scopedTokens,
                open: ["/healthz", "/metrics"]
            )
        )
        router.add(middleware: BodyLimitMiddleware(limit: maxBodyBytes))
        router.add(middleware: LeadershipMiddleware(controller: controller))
        router.get("/healthz") { _, _ in
            text("ok\n", contentType: "text/plain")
        }
        router.get("/metrics") { _, _ in
            text(
                (controller.settings.metrics?() ?? "") + controller.controllerMetrics(),
                contentType: "text/plain; version=0.0.4; charset=utf-8"
            )
        }
        LeadershipReport.addRoute(to: router, controller: controller)
        // The status page: read scope like /v1/status; a follower answers it from its warm copy.
        router.get("/") { _, _ in
            let status = try ControllerStatus.build(
                configuration: controller.settings.configuration,
                store: controller.store,
                leadership: controller.leadershipReport(),
                now: Date()
            )
            return text(ControllerStatusPage.render(status), contentType: "text/html; charset=utf-8")
        }
        router.get("/v1/status") { _, _ in
            try json(
                StatusReport.build(
                    configuration: controller.settings.configuration,
                    store: controller.store,
                    now: Date()
                )
            )
        }
        router.get("/v1/snapshot") { request, _ in
            let query = request.uri.queryParameters
            let after = try integer(query.get("after"), field: "after", in: 0...Int.max) ?? 0
            let boot = try query.get("boot").map { try bootId($0) }
            let wait = try query.get("wait").map { try boundedDuration($0, field: "wait", maximum: maxWait) } ?? .zero
            return try json(await controller.broadcaster.snapshot(after: after, boot: boot, wait: wait))
        }
        router.post("/v1/failover") { request, context in
            try await controller.failover(try await decode(FailoverRequest.self, request, context))
        }
        router.get("/v1/operations") { request, _ in
            let limit = try integer(request.uri.queryParameters.get("limit"), field: "limit", in: 1...maxLimit) ?? 20
            return try json(try controller.store.operations(limit: limit))
        }
        router.get("/v1/operations/:id") { _, context in
            let id = try operationId(context)
            return try json(try controller.report(id))
        }
        router.post("/v1/operations/:id/resume") { _, context in
            let id = try operationId(context)
            let report = try controller.report(id)
            _ = try controller.gate.term()
            controller.launch(id)
            return try json(report, status: .accepted)
        }
        router.post("/v1/drains") { request, context in
            try await controller.drain(try await decode(DrainRequest.self, request, context))
        }
        router.post("/v1/reports") { request, context in
            let report = try await decode(DemandReport.self, request, context)
            try controller.record(report)
            return Response(status: .noContent)
        }
        addBackupRoutes(to: router, for: controller)
        addDrillRoutes(to: router, for: controller)
        return router
    }

    /// The JSON encoder of every answer: sorted keys, dates as RFC 3339 UTC strings.
    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        var buffer = ByteBuffer(data: try encoder.encode(value))
        buffer.writeString("\n")
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: buffer))
    }

    static func text(_ body: String, contentType: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status,
            headers: [.contentType: contentType],
            body: .init(byteBuffer: ByteBuffer(string: body))
        )
    }

    static func errorResponse(_ status: HTTPResponse.Status, _ message: String) -> Response {
        (try? json(["error": message], status: status)) ?? Response(status: status)
    }

    /// Collects at most `maxBodyBytes` of the body and decodes it; 413 when larger, 400 naming the problem.
    static func decode<T: Decodable>(
        _ type: T.Type,
        _ request: Request,
        _ context: ControllerRequestContext
    ) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: context.maxUploadSize)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "body: larger than \(maxBodyBytes) bytes")
        }
        do {
            return try requestDecoder.decode(T.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            throw APIError(.badRequest, "body: invalid JSON: \(describe(error))")
        }
    }

    /// The JSON decoder of request bodies: dates as RFC 3339 strings, like the answers.
    static var requestDecoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? "" : "\(path): "
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(path(context))missing field \"\(key.stringValue)\""
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return "\(path(context))\(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    /// A boot id as `/v1/snapshot` gives it: up to 64 letters, digits and dashes.
    static func bootId(_ text: String) throws -> String {
        guard (1...64).contains(text.count),
            text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") })
        else {
            throw APIError(.badRequest, "boot: expected the boot id of an earlier snapshot, got \"\(text.prefix(64))\"")
        }
        return text
    }

    static func operationId(_ context: ControllerRequestContext) throws -> Int64 {
        guard let text = context.parameters.get("id"), let id = Int64(text), id > 0 else {
            throw APIError(
                .badRequest,
                "id: expected an operation number, got \"\(context.parameters.get("id") ?? "")\""
            )
        }
        return id
    }

    /// An optional integer query parameter within `range`, or a 400 naming it.
    static func integer(_ text: String?, field: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw APIError(
                .badRequest,
                "\(field): expected an integer from \(range.lowerBound) to \(range.upperBound), got \"\(text.prefix(64))\""
            )
        }
        return value
    }

    /// Parses a duration such as `30s`, `1h30m` or `250ms` without overflowing: the total must be positive or
    /// zero and at most `maximum`, else a 400 naming `field`. No `TimeSpan` arithmetic is done on the input.
    static func boundedDuration(_ text: String, field: String, maximum: Duration) throws -> Duration {
        let invalid = APIError(
            .badRequest,
            "\(field): expected a duration such as 30s, 15m or 1h30m, at most \(TimeSpan.format(maximum)), "
                + "got \"\(text.prefix(64))\""
        )
        let units: [Substring: Double] = ["ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400]
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        guard !rest.isEmpty, rest.count <= 64 else { throw invalid }
        var seconds = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { ("0"..."9").contains($0) || $0 == "." }
            guard !number.isEmpty, let value = Double(number), value.isFinite else { throw invalid }
            rest = rest.dropFirst(number.count)
            let unitText = rest.prefix { $0.isLetter }
            guard let unit = units[unitText] else { throw invalid }
            rest = rest.dropFirst(unitText.count)
            seconds += value * unit
            guard seconds.isFinite, seconds <= maximum.seconds else { throw invalid }
        }
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }
}

/// Turns every error into `{"error": "..."}` with its status, so no input can end the process.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = ControllerRequestContext

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return ControllerAPI.errorResponse(error.status, error.message)
        } catch let error as HTTPResponseError where error.status == .notFound {
            return ControllerAPI.errorResponse(.notFound, "no such endpoint: \(request.method) \(request.uri.path)")
        } catch is NIOTooManyBytesError {
            return ControllerAPI.errorResponse(
                .contentTooLarge,
                "body: larger than \(ControllerAPI.maxBodyBytes) bytes"
            )
        } catch let error as HTTPResponseError {
            return ControllerAPI.errorResponse(error.status, "\(error.status.reasonPhrase)")
        } catch let error as NotLeaderError {
            var response = ControllerAPI.errorResponse(
                .serviceUnavailable,
                "\(error); nothing was changed here, try again (or the leader)"
            )
            response.headers[.retryAfter] = "1"
            return response
        } catch let error as StateShippingError {
            var response = ControllerAPI.errorResponse(.serviceUnavailable, "\(error)")
            response.headers[.retryAfter] = "1"
            return response
        } catch StateError.invalidArgument(let message), StateError.conflict(let message) {
            return ControllerAPI.errorResponse(.conflict, message)
        } catch let error as StateError {
            return ControllerAPI.errorResponse(.internalServerError, "\(error)")
        } catch {
            return ControllerAPI.errorResponse(.internalServerError, "\(error)")
        }
    }
}

/// Checks `Authorization: Bearer TOKEN` on the request head, before any byte of the body is read. A refused
/// request that announced a body is answered `Connection: close`, so its client stops sending it.
struct BearerTokenMiddleware: RouterMiddleware {
    typealias Context = ControllerRequestContext
    /// The token that may do everything.
    let token: String
    /// Tokens that may do part.
    var scoped: [TokenScope: String] = [:]
    /// Paths served without a token.
    let open: Set<String>

    /// What a request needs: reports need `report`; backup catalog writes need `backup`; other writes need
    /// `operate`; reads need `read`.
    static func scope(of request: Request) -> TokenScope {
        if request.method == .get || request.method == .head { return .read }
        if request.uri.path == "/v1/reports" { return .report }
        if request.uri.path == "/v1/backups" || request.uri.path.hasPrefix("/v1/backups/") { return .backup }
        return .operate
    }

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if open.contains(request.uri.path) { return try await next(request, context) }
        let needed = Self.scope(of: request)
        let presented = request.headers[.authorization].flatMap {
            $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil
        }
        if let presented, !constantTimeEqual(presented, token),
            scoped.values.contains(where: { constantTimeEqual(presented, $0) }), !allows(presented, needed)
        {
            var response = ControllerAPI.errorResponse(
                .forbidden,
                "this token may not \(needed.action); use a token with that scope"
            )
            if request.hasBody { response.headers[.connection] = "close" }
            return response
        }
        guard let presented, allows(presented, needed) else {
            var response = ControllerAPI.errorResponse(.unauthorized, "missing or wrong bearer token")
            response.headers[.wwwAuthenticate] = "Bearer"
            if request.hasBody { response.headers[.connection] = "close" }
            return response
        }
        return try await next(request, context)
    }

    /// Whether `presented` may make a request that needs `needed`: the full token always; a scoped one when
    /// its scope covers the need (`report` and `operate` include `read`).
    func allows(_ presented: String, _ needed: TokenScope) -> Bool {
        if constantTimeEqual(presented, token) { return true }
        var granted = false
        for (scope, value) in scoped where constantTimeEqual(presented, value) {
            granted = granted || scope == needed || needed == .read
        }
        return granted
    }
}

/// What a controller token may do.
public enum TokenScope: String, Sendable, CaseIterable {
    /// Snapshots, status, operations: what dashboards and followers need.
    case read
    /// `read`, and demand reports: what a proxy needs (a compromised node cannot fail anything over).
    case report
    /// `read`, and failovers, drains and resumes: what an operator needs.
    case operate
    /// `read`, and the backup catalog's writes (begin, heartbeat, complete, fail): what a backup run needs
    /// (it cannot fail anything over or drain).
    case backup

    /// What the scope allows beyond reading, for refusals.
    var action: String {
        switch self {
        case .read: "read"
        case .report: "report demand"
        case .operate: "operate"
        case .backup: "write the backup catalog"
        }
    }
}

/// Refuses a request whose declared `Content-Length` is over the limit before reading its body; bodies
/// without one are cut off at the limit when collected.
struct BodyLimitMiddleware: RouterMiddleware {
    typealias Context = ControllerRequestContext
    let limit: Int

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if let declared = request.headers[.contentLength], (Int(declared) ?? .max) > limit {
            var response = ControllerAPI.errorResponse(.contentTooLarge, "body: larger than \(limit) bytes")
            response.headers[.connection] = "close"
            return response
        }
        return try await next(request, context)
    }
}

extension Request {
    /// Whether the head announces a body still to come.
    var hasBody: Bool {
        if let length = headers[.contentLength] { return length != "0" }
        return headers[.transferEncoding] != nil
    }
}

extension ControllerService {
    /// The API as a Hummingbird application bound to `settings.listen`; `onServerRunning` gets its channel.
    func makeApplication(
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        Application(
            router: ControllerAPI.router(for: self),
            configuration: .init(
                address: .hostname(settings.listen.host, port: settings.listen.port),
                serverName: nil,
                reuseAddress: true
            ),
            onServerRunning: onServerRunning,
            eventLoopGroupProvider: .shared(group),
            logger: logger
        )
    }

    /// An operation with its steps, or 404.
    func report(_ id: Int64) throws -> OperationReport {
        guard let operation = try store.operation(id) else { throw APIError(.notFound, "id: no operation \(id)") }
        return OperationReport(operation: operation, steps: try store.steps(of: id))
    }

    /// Records one proxy's demand report, after checking it names a known zone and sane rates.
    func record(_ report: DemandReport) throws {
        guard settings.configuration.zone(named: report.zone) != nil else {
            let known = settings.configuration.zones.map(\.name).joined(separator: ", ")
            throw APIError(.badRequest, "zone: unknown zone \"\(report.zone.prefix(64))\" (known: \(known))")
        }
        guard (1...253).contains(report.proxy.count) else {
            throw APIError(.badRequest, "proxy: expected the proxy's name (1 to 253 characters)")
        }
        for (service, rate) in report.services where !(rate.isFinite && rate >= 0 && rate <= 1e9) {
            throw APIError(.badRequest, "services.\(service.prefix(64)): expected a rate from 0 to 1e9, got \(rate)")
        }
        demand.record(report, at: Date())
    }

    /// Drains a zone for a bounded time.
    func drain(_ request: DrainRequest) async throws -> Response {
        guard settings.configuration.zone(named: request.zone) != nil else {
            let known = settings.configuration.zones.map(\.name).joined(separator: ", ")
            throw APIError(.badRequest, "zone: unknown zone \"\(request.zone.prefix(64))\" (known: \(known))")
        }
        let length = try ControllerAPI.boundedDuration(
            request.duration,
            field: "duration",
            maximum: ControllerAPI.maxDrain
        )
        guard length > .zero else {
            throw APIError(.badRequest, "duration: expected a positive duration such as 30m")
        }
        let now = Date()
        _ = try gate.term()
        let drain = try store.drainZone(
            request.zone,
            until: now.addingTimeInterval(length.seconds),
            reason: request.reason,
            actor: request.actor ?? "api",
            at: now
        )
        try await durable()
        return try ControllerAPI.json(drain, status: .created)
    }

    /// Plans a change of primary; unless it is a dry run or a guard refuses, starts it.
    func failover(_ request: FailoverRequest) async throws -> Response {
        guard let service = settings.configuration.service(named: request.service), service.failover != nil else {
            let names = settings.configuration.services.filter { $0.failover != nil }.map(\.name)
            throw APIError(
                .badRequest,
                "service: \"\(request.service.prefix(64))\" has no failover (known: \(names.joined(separator: ", ")))"
            )
        }
        guard service.regions.contains(request.to) else {
            throw APIError(
                .badRequest,
                "to: \"\(request.to.prefix(64))\" is not a region of \(service.name) "
                    + "(known: \(service.regions.joined(separator: ", ")))"
            )
        }
        let plan = try await coordinator.plan(service: service, to: request.to, force: request.force ?? false)
        if plan.refused { return try ControllerAPI.json(plan, status: .conflict) }
        if request.dryRun ?? false { return try ControllerAPI.json(plan) }
        let (active, epoch) = try coordinator.activeRegion(of: service)
        _ = try gate.term()
        let operation = try store.planOperation(
            service: service.name,
            kind: plan.kind == "failover" ? .failover : .switchover,
            from: active,
            to: request.to,
            epochBefore: epoch,
            forced: request.force ?? false,
            actor: request.actor ?? "api",
            reason: request.reason ?? "requested through the API",
            at: Date()
        )
        guard let id = operation.id else { throw APIError(.internalServerError, "operation without id") }
        try await durable()
        launch(id)
        var started = plan
        started.operation = id
        return try ControllerAPI.json(started, status: .accepted)
    }
}

/// Compares secrets without leaking where they differ through timing.
func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8)
    let y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var difference: UInt8 = 0
    for index in x.indices { difference |= x[index] ^ y[index] }
    return difference == 0
}
