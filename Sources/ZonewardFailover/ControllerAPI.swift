import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import ZonewardModel
import ZonewardState

/// A response of the controller's API.
struct APIResponse: Sendable {
    var status: HTTPResponseStatus
    var body: String
    var contentType = "application/json"

    static func json<T: Encodable>(_ value: T, status: HTTPResponseStatus = .ok) -> APIResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return APIResponse(status: status, body: String(decoding: data, as: UTF8.self) + "\n")
    }

    static func error(_ status: HTTPResponseStatus, _ message: String) -> APIResponse {
        json(["error": message], status: status)
    }
}

/// The body of `POST /v1/failover`.
public struct FailoverRequest: Codable, Sendable {
    public var service: String
    public var to: String
    public var force: Bool?
    public var dryRun: Bool?
    public var actor: String?
    public var reason: String?

    public init(service: String, to: String, force: Bool, dryRun: Bool, actor: String, reason: String?) {
        self.service = service
        self.to = to
        self.force = force
        self.dryRun = dryRun
        self.actor = actor
        self.reason = reason
    }
}

/// The answer to `POST /v1/failover`: the guards, the steps, and the operation when one was started.
public struct FailoverPlan: Codable, Sendable {
    public var service: String
    public var kind: String
    public var from: String
    public var to: String
    public var guards: [GuardResult]
    public var steps: [String]
    public var operation: Int64?
    public var refused: Bool

    public init(
        service: String,
        kind: String,
        from: String,
        to: String,
        guards: [GuardResult],
        steps: [String],
        operation: Int64?,
        refused: Bool
    ) {
        self.service = service
        self.kind = kind
        self.from = from
        self.to = to
        self.guards = guards
        self.steps = steps
        self.operation = operation
        self.refused = refused
    }
}

/// The body of `POST /v1/drains`.
public struct DrainRequest: Codable, Sendable {
    public var zone: String
    public var duration: String
    public var reason: String
    public var actor: String?
}

/// An operation with its steps, as `GET /v1/operations/ID` returns it.
public struct OperationReport: Codable, Sendable {
    public var operation: FailoverOperation
    public var steps: [FailoverStepRecord]
}

extension ControllerService {
    func bindAPI() async throws -> any Channel {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(ControllerAPIHandler(controller: self))
                }
            }
        return try await bootstrap.bind(host: settings.listen.host, port: settings.listen.port).get()
    }

    /// Answers one request.
    func handle(method: HTTPMethod, uri: String, authorization: String?, body: Data) async -> APIResponse {
        let components = URLComponents(string: uri)
        let path = components?.path ?? uri
        let query = Dictionary(
            (components?.queryItems ?? []).map { ($0.name, $0.value ?? "") },
            uniquingKeysWith: { $1 }
        )
        if path == "/healthz" { return APIResponse(status: .ok, body: "ok\n", contentType: "text/plain") }
        if path == "/metrics" {
            return APIResponse(
                status: .ok,
                body: settings.metrics?() ?? "",
                contentType: "text/plain; version=0.0.4; charset=utf-8"
            )
        }
        guard let authorization, authorization.hasPrefix("Bearer "),
            constantTimeEqual(String(authorization.dropFirst(7)), settings.token)
        else {
            return .error(.unauthorized, "missing or wrong bearer token")
        }
        do {
            switch (method, path) {
            case (.GET, "/v1/status"):
                return .json(try StatusReport.build(configuration: settings.configuration, store: store, now: Date()))
            case (.GET, "/v1/snapshot"):
                let after = Int(query["after"] ?? "") ?? 0
                let wait = TimeSpan.parse(query["wait"] ?? "0s") ?? .zero
                return .json(await broadcaster.snapshot(after: after, wait: min(wait, .seconds(60))))
            case (.POST, "/v1/failover"):
                return try await failover(try JSONDecoder().decode(FailoverRequest.self, from: body))
            case (.GET, "/v1/operations"):
                return .json(try store.operations(limit: Int(query["limit"] ?? "") ?? 20))
            case (.POST, "/v1/drains"):
                let request = try JSONDecoder().decode(DrainRequest.self, from: body)
                guard settings.configuration.zone(named: request.zone) != nil else {
                    return .error(.badRequest, "zone: unknown zone \"\(request.zone)\"")
                }
                guard let length = TimeSpan.parse(request.duration), length > .zero else {
                    return .error(.badRequest, "duration: expected a positive duration such as 30m")
                }
                let now = Date()
                let drain = try store.drainZone(
                    request.zone,
                    until: now.addingTimeInterval(length.seconds),
                    reason: request.reason,
                    actor: request.actor ?? "api",
                    at: now
                )
                return .json(drain, status: .created)
            default:
                if path.hasPrefix("/v1/operations/"), let id = Int64(path.split(separator: "/")[2]) {
                    guard let operation = try store.operation(id) else {
                        return .error(.notFound, "no operation \(id)")
                    }
                    if method == .POST, path.hasSuffix("/resume") {
                        Task { await self.execute(id) }
                        return .json(
                            OperationReport(operation: operation, steps: try store.steps(of: id)),
                            status: .accepted
                        )
                    }
                    return .json(OperationReport(operation: operation, steps: try store.steps(of: id)))
                }
                return .error(.notFound, "no such endpoint: \(method) \(path)")
            }
        } catch let error as DecodingError {
            return .error(.badRequest, "invalid JSON body: \(error)")
        } catch {
            return .error(.internalServerError, "\(error)")
        }
    }

    /// Plans a change of primary; unless it is a dry run or a guard refuses, starts it.
    func failover(_ request: FailoverRequest) async throws -> APIResponse {
        guard let service = settings.configuration.service(named: request.service), service.failover != nil else {
            let names = settings.configuration.services.filter { $0.failover != nil }.map(\.name)
            return .error(
                .badRequest,
                "service: \"\(request.service)\" has no failover (known: \(names.joined(separator: ", ")))"
            )
        }
        let plan = try await plan(service: service, request: request)
        if plan.refused { return .json(plan, status: .conflict) }
        if request.dryRun ?? false { return .json(plan) }
        let (active, epoch) = try coordinator.activeRegion(of: service)
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
        guard let id = operation.id else { return .error(.internalServerError, "operation without id") }
        Task { await self.execute(id) }
        var started = plan
        started.operation = id
        return .json(started, status: .accepted)
    }

    func plan(service: ServiceConfiguration, request: FailoverRequest) async throws -> FailoverPlan {
        try await coordinator.plan(service: service, to: request.to, force: request.force ?? false)
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

/// Collects a request and answers it from a task, writing through the (Sendable) channel.
final class ControllerAPIHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let controller: ControllerService
    private var head: HTTPRequestHead?
    private var body = Data()

    init(controller: ControllerService) {
        self.controller = controller
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body = Data()
        case .body(let buffer):
            body.append(contentsOf: buffer.readableBytesView)
        case .end:
            guard let head else { return }
            let channel = context.channel
            let controller = self.controller
            let body = self.body
            Task {
                let response = await controller.handle(
                    method: head.method,
                    uri: head.uri,
                    authorization: head.headers.first(name: "Authorization"),
                    body: body
                )
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: response.contentType)
                headers.add(name: "Content-Length", value: String(response.body.utf8.count))
                if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
                channel.write(
                    HTTPServerResponsePart.head(
                        HTTPResponseHead(version: .http1_1, status: response.status, headers: headers)
                    ),
                    promise: nil
                )
                channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: response.body))), promise: nil)
                let done = channel.eventLoop.makePromise(of: Void.self)
                channel.writeAndFlush(HTTPServerResponsePart.end(nil), promise: done)
                if !head.isKeepAlive { done.futureResult.whenComplete { _ in channel.close(promise: nil) } }
            }
        }
    }
}

@available(*, unavailable)
extension ControllerAPIHandler: Sendable {}
