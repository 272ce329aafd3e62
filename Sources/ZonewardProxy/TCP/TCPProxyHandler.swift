import NIOCore
import NIOPosix
import ZonewardModel

/// The first handler of an accepted TCP connection: picks an endpoint by the zone plan, connects on the
/// same event loop (retrying another endpoint on a connect failure), then glues the two channels together.
final class TCPProxyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let serviceName: String
    private let table: RoutingTable
    private let timeouts: TimeoutConfiguration
    private let maxRetries: Int
    private let registry: TCPConnectionRegistry
    private var random = BalancerRandom(seed: UInt64.random(in: 1...UInt64.max))
    private var tried: [UpstreamEndpoint] = []

    init(service: ServiceConfiguration, table: RoutingTable, maxRetries: Int, registry: TCPConnectionRegistry) {
        self.serviceName = service.name
        self.table = table
        self.timeouts = service.timeouts
        self.maxRetries = maxRetries
        self.registry = registry
    }

    func channelActive(context: ChannelHandlerContext) {
        // Demand of a TCP service: new connections.
        table.snapshot.routes(for: serviceName)?.demandCounter.count.wrappingAdd(1, ordering: .relaxed)
        connect(context: context)
        context.fireChannelActive()
    }

    private func connect(context: ChannelHandlerContext) {
        guard let routes = table.snapshot.routes(for: serviceName),
            let endpoint = routes.pick(&random, excluding: tried)
        else {
            if let routes = table.snapshot.routes(for: serviceName), routes.condition == .unavailable {
                routes.metrics.noCapacityRequests.increment()
            }
            table.snapshot.routes(for: serviceName)?.metrics.recordRequest(
                destination: -1,
                status: 503,
                sent: 0,
                received: 0
            )
            context.close(promise: nil)
            return
        }
        tried.append(endpoint)
        endpoint.outstanding.wrappingAdd(1, ordering: .relaxed)
        let bootstrap = ClientBootstrap(group: context.eventLoop)
            .connectTimeout(TimeAmount(timeouts.connect))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.allowRemoteHalfClosure, value: true)
        let connected = endpoint.connect(with: bootstrap)
        connected.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let upstream):
                self.glue(context: context, upstream: upstream, endpoint: endpoint, routes: routes)
            case .failure(let error):
                endpoint.outstanding.wrappingAdd(-1, ordering: .relaxed)
                self.table.recordResult(endpoint, success: false, detail: "connect failed: \(error)")
                if self.tried.count <= self.maxRetries {
                    routes.metrics.retries.increment()
                    self.connect(context: context)
                } else {
                    let zone = routes.zoneIndex[endpoint.zone] ?? -1
                    routes.metrics.recordRequest(destination: zone, status: 502, sent: 0, received: 0)
                    context.close(promise: nil)
                }
            }
        }
    }

    private func glue(
        context: ChannelHandlerContext,
        upstream: any Channel,
        endpoint: UpstreamEndpoint,
        routes: ServiceRoutes
    ) {
        let (clientSide, upstreamSide) = GlueHandler.matchedPair(idleTimeout: timeouts.tcpIdle)
        do {
            try context.pipeline.syncOperations.addHandler(clientSide)
            try upstream.pipeline.syncOperations.addHandler(upstreamSide)
        } catch {
            upstream.close(promise: nil)
            context.close(promise: nil)
            return
        }
        table.recordResult(endpoint, success: true, detail: "")
        if let region = table.snapshot.configuration.zone(named: endpoint.zone)?.region {
            registry.add(service: serviceName, region: region, client: context.channel, upstream: upstream)
        }
        let zone = routes.zoneIndex[endpoint.zone] ?? -1
        // Count the connection and its bytes when it ends.
        context.channel.closeFuture.assumeIsolated().whenComplete { _ in
            endpoint.outstanding.wrappingAdd(-1, ordering: .relaxed)
            routes.metrics.recordRequest(
                destination: zone,
                status: 200,
                sent: clientSide.bytesReceived,
                received: upstreamSide.bytesReceived
            )
        }
        context.pipeline.syncOperations.removeHandler(self, promise: nil)
        // Reads were held while connecting; start them now.
        context.channel.setOption(.autoRead, value: true).whenComplete { _ in }
        context.read()
    }
}

@available(*, unavailable)
extension TCPProxyHandler: Sendable {}
