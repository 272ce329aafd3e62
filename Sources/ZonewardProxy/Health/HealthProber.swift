import Logging
import NIOCore
import NIOPosix
import Synchronization
import ZonewardModel

/// Active health checks: every endpoint, every interval, an HTTP GET of the configured path (2xx or 3xx
/// is healthy), the gRPC health protocol (SERVING is healthy) or a TCP connect, each bounded by the timeout. Results go to the routing table.
final class HealthProber: Sendable {
    private let table: RoutingTable
    private let group: any EventLoopGroup
    private let tasks = Mutex<[RepeatedTask]>([])

    init(table: RoutingTable, group: any EventLoopGroup) {
        self.table = table
        self.group = group
    }

    /// Starts checking every endpoint of `configuration`, replacing any checks already running.
    func start(_ configuration: ZonewardConfiguration) {
        stop()
        // Every endpoint the table routes to: declared and discovered.
        let byService = Dictionary(grouping: table.endpoints, by: \.service)
        var started: [RepeatedTask] = []
        for service in configuration.services {
            let check = service.healthCheck
            for endpoint in byService[service.name] ?? [] {
                let loop = group.next()
                // Spread the first checks over the interval so they don't all fire at once.
                let jitter = TimeAmount.milliseconds(Int64.random(in: 0...max(1, check.interval.milliseconds / 4)))
                let task = loop.scheduleRepeatedAsyncTask(
                    initialDelay: jitter,
                    delay: TimeAmount(check.interval)
                ) { [table] _ in
                    Self.probe(endpoint, check: check, on: loop).map { outcome in
                        table.recordHealthCheck(endpoint, success: outcome.success, detail: outcome.detail)
                    }
                }
                started.append(task)
            }
        }
        tasks.withLock { $0 = started }
    }

    func stop() {
        let running = tasks.withLock { tasks in
            defer { tasks = [] }
            return tasks
        }
        for task in running { task.cancel() }
    }

    struct Outcome: Sendable {
        var success: Bool
        var detail: String
    }

    /// One check; never fails, it reports.
    static func probe(
        _ endpoint: UpstreamEndpoint,
        check: HealthCheckConfiguration,
        on loop: any EventLoop
    ) -> EventLoopFuture<Outcome> {
        let promise = loop.makePromise(of: Outcome.self)
        let timeout = loop.scheduleTask(in: TimeAmount(check.timeout)) {
            promise.succeed(Outcome(success: false, detail: "no answer within \(TimeSpan.format(check.timeout))"))
        }
        let connected: EventLoopFuture<any Channel>
        if let service = check.grpc {
            connected = probeGRPC(endpoint, service: service, check: check, on: loop, promise: promise)
        } else {
            connected = probeHTTPOrTCP(endpoint, check: check, on: loop, promise: promise)
        }
        return promise.futureResult.always { _ in
            timeout.cancel()
            connected.whenSuccess { $0.close(promise: nil) }
        }
    }

    /// An HTTP GET of the path (over the service's upstream TLS), or a TCP connect when there is no path.
    private static func probeHTTPOrTCP(
        _ endpoint: UpstreamEndpoint,
        check: HealthCheckConfiguration,
        on loop: any EventLoop,
        promise: EventLoopPromise<Outcome>
    ) -> EventLoopFuture<any Channel> {
        let path = check.path
        let host = endpoint.address.description
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(TimeAmount(check.timeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls = endpoint.tls, path != nil {
                        try channel.pipeline.syncOperations.addHandler(tls.makeHandler(host: endpoint.address.host))
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        HealthCheckHandler(path: path, host: host, promise: promise)
                    )
                }
            }
        let connected = endpoint.connect(with: bootstrap)
        connected.whenFailure { error in promise.succeed(Outcome(success: false, detail: "connect failed: \(error)")) }
        connected.whenSuccess { channel in
            if path == nil {
                promise.succeed(Outcome(success: true, detail: "TCP connect ok"))
                channel.close(promise: nil)
            }
        }
        return connected
    }
}

/// Sends one `GET path` and reports the status line's code.
private final class HealthCheckHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let path: String?
    private let host: String
    private let promise: EventLoopPromise<HealthProber.Outcome>
    private var received = ByteBuffer()

    init(path: String?, host: String, promise: EventLoopPromise<HealthProber.Outcome>) {
        self.path = path
        self.host = host
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        guard let path else { return }
        let request =
            "GET \(path) HTTP/1.1\r\nHost: \(host)\r\nUser-Agent: zoneward-health\r\nConnection: close\r\n\r\n"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: request)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        received.writeBuffer(&buffer)
        guard received.readableBytes >= 12 else { return }
        let line = received.getString(at: received.readerIndex, length: 12) ?? ""
        let code = Int(line.dropFirst(9).prefix(3)) ?? 0
        let healthy = line.hasPrefix("HTTP/1.") && (200..<400).contains(code)
        promise.succeed(.init(success: healthy, detail: "GET \(path ?? "/") answered \(code)"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.succeed(.init(success: false, detail: "closed before answering"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.succeed(.init(success: false, detail: "\(error)"))
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension HealthCheckHandler: Sendable {}

extension Duration {
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        self = .nanoseconds(
            duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
        )
    }
}
