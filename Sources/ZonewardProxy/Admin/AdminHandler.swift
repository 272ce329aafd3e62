import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import ZonePlanner

/// Serves the admin listener: `/` (the status page, HTML), `/metrics` (Prometheus text), `/admin/plan` (JSON),
/// `/healthz`, `/readyz`.
final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let table: RoutingTable
    private let readiness: Readiness
    /// The probes listener: `/healthz`, `/readyz` and `/metrics` only.
    private let probesOnly: Bool
    private var path = "/"
    private var keepAlive = true

    init(table: RoutingTable, readiness: Readiness, probesOnly: Bool = false) {
        self.table = table
        self.readiness = readiness
        self.probesOnly = probesOnly
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            path = head.uri
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            let (status, contentType, body) = respond(to: path)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: contentType)
            headers.add(name: "Content-Length", value: String(body.utf8.count))
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                promise: nil
            )
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
            let done = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
            if !keepAlive {
                let channel = context.channel
                done.futureResult.whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }

    private func respond(to uri: String) -> (HTTPResponseStatus, String, String) {
        let components = URLComponents(string: uri)
        switch components?.path ?? uri {
        case "/" where !probesOnly:
            let status = ProxyStatus(
                snapshot: table.snapshot,
                discovery: table.discoveryStatus,
                demandMeasuredAt: table.demandMeasuredAt,
                metricsText: table.metrics.registry.emitToString(),
                now: Date()
            )
            return (.ok, "text/html; charset=utf-8", StatusPage.render(status))
        case "/metrics":
            return (.ok, "text/plain; version=0.0.4; charset=utf-8", table.metrics.registry.emitToString())
        case "/admin/plan" where !probesOnly:
            let service = components?.queryItems?.first { $0.name == "service" }?.value
            do {
                return (
                    .ok, "application/json",
                    try PlanDocument.render(
                        table.snapshot,
                        service: service,
                        discovery: table.discoveryStatus,
                        demandMeasuredAt: table.demandMeasuredAt
                    )
                )
            } catch {
                return (.notFound, "text/plain; charset=utf-8", "\(error)\n")
            }
        case "/healthz":
            return (.ok, "text/plain; charset=utf-8", "ok\n")
        case "/readyz":
            return readiness.isReady
                ? (.ok, "text/plain; charset=utf-8", "ready\n")
                : (.serviceUnavailable, "text/plain; charset=utf-8", "not ready\n")
        default:
            return (
                .notFound, "text/plain; charset=utf-8",
                probesOnly
                    ? "not found; try /healthz, /readyz, /metrics\n"
                    : "not found; try / (status page), /metrics, /admin/plan, /admin/plan?service=NAME, /healthz, /readyz\n"
            )
        }
    }
}

@available(*, unavailable)
extension AdminHandler: Sendable {}

/// Whether the proxy is ready for traffic: listeners bound and not shutting down.
public final class Readiness: Sendable {
    private let ready = Atomic<Bool>(false)

    public init() {}

    public var isReady: Bool { ready.load(ordering: .relaxed) }

    func set(_ value: Bool) {
        ready.store(value, ordering: .relaxed)
    }
}

/// The JSON of `/admin/plan`: per service, the shape of `zoneward plan --format json` plus endpoint health.
enum PlanDocument {
    struct EndpointStatus: Encodable {
        var address: String
        var zone: String
        var weight: Double
        var healthy: Bool
        var ejected: Bool
        var eligible: Bool
        var outstanding: Int
    }

    struct ServicePlan: Encodable {
        var routes: [String: [String: Double]]
        var load: [String: Double]
        var bound: [String: Double]
        var objective: Double
        var crossZoneFraction: Double
        var crossRegionFraction: Double
        var maxLoadFactor: Double
        var state: String
        var envoy: PlanReport.Baseline
        var sourceZone: String
        var endpoints: [EndpointStatus]
        /// Where discovered endpoints stand; absent for a service with only declared endpoints.
        var discovery: DiscoveryStatus?
        /// The demand the plan was made for, per zone: rate and source (measured, configured, equal).
        var demand: [String: ZoneDemand]
        /// When the measured demand was last updated; absent while nothing was measured.
        var demandMeasuredAt: Date?
    }

    struct Document: Encodable {
        var version: Int
        var sourceZone: String
        var drainedZones: [String]
        var services: [String: ServicePlan]
    }

    struct UnknownService: Error, CustomStringConvertible {
        var name: String
        var known: [String]
        var description: String { "unknown service \"\(name)\" (known: \(known.joined(separator: ", ")))" }
    }

    static func render(
        _ snapshot: RoutingSnapshot,
        service: String?,
        discovery: [String: DiscoveryStatus] = [:],
        demandMeasuredAt: Date? = nil
    ) throws -> String {
        var services: [String: ServicePlan] = [:]
        for routes in snapshot.services {
            let report = PlanReport(plan: routes.plan, envoy: routes.envoy)
            services[routes.service.name] = ServicePlan(
                routes: report.routes,
                load: report.load,
                bound: report.bound,
                objective: report.objective,
                crossZoneFraction: report.crossZoneFraction,
                crossRegionFraction: report.crossRegionFraction,
                maxLoadFactor: report.maxLoadFactor,
                state: routes.condition.rawValue,
                envoy: report.envoy,
                sourceZone: snapshot.sourceZone,
                endpoints: routes.allEndpoints.map { endpoint in
                    EndpointStatus(
                        address: endpoint.address.description,
                        zone: endpoint.zone,
                        weight: endpoint.weight,
                        healthy: !snapshot.unhealthy.contains(endpoint.key),
                        ejected: snapshot.ejected.contains(endpoint.key),
                        eligible: routes.eligibleKeys.contains(endpoint.key),
                        outstanding: endpoint.outstandingRequests
                    )
                },
                discovery: discovery[routes.service.name],
                demand: routes.demand,
                demandMeasuredAt: routes.demand.values.contains { $0.source == .measured } ? demandMeasuredAt : nil
            )
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let data: Data
        if let service {
            guard let plan = services[service] else {
                throw UnknownService(name: service, known: services.keys.sorted())
            }
            data = try encoder.encode(plan)
        } else {
            data = try encoder.encode(
                Document(
                    version: snapshot.version,
                    sourceZone: snapshot.sourceZone,
                    drainedZones: snapshot.drainedZones.sorted(),
                    services: services
                )
            )
        }
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
