import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import ZonewardModel

/// One upstream endpoint's live state, shared by every event loop for as long as it is configured.
///
/// Outstanding requests drive power-of-two-choices; consecutive failures drive outlier ejection.
/// Both are atomics so the request path never takes a lock for them.
public final class UpstreamEndpoint: Sendable {
    /// `service/host:port`: stable across reloads, so counters survive a config change.
    public let key: String
    public let service: String
    public let address: HostPort
    /// Resolved once when the address is an IP literal; nil means resolve by name at connect time.
    let socketAddress: SocketAddress?
    public let zone: String
    public let weight: Double
    let outstanding = Atomic<Int>(0)
    let consecutiveFailures = Atomic<Int>(0)
    /// TLS to this endpoint, when the service asks for it.
    let tls: UpstreamTLS?
    /// The service's timeouts (connect, upstream read) for connections to this endpoint.
    let timeouts: TimeoutConfiguration

    init(
        service: String,
        configuration: EndpointConfiguration,
        tls: UpstreamTLS? = nil,
        timeouts: TimeoutConfiguration = .init()
    ) {
        self.key = "\(service)/\(configuration.address)"
        self.service = service
        self.tls = tls
        self.timeouts = timeouts
        self.address = configuration.address
        self.socketAddress = try? SocketAddress(ipAddress: configuration.address.host, port: configuration.address.port)
        self.zone = configuration.zone
        self.weight = configuration.weight
    }

    public var outstandingRequests: Int { outstanding.load(ordering: .relaxed) }

    /// A client bootstrap for a connection to this endpoint: its connect timeout, and TCP_NODELAY (a proxy
    /// writes whole messages).
    func bootstrap(on eventLoop: any EventLoop) -> ClientBootstrap {
        ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(timeouts.connect))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
    }

    /// Connects with `bootstrap`: to the address resolved at load time, or by name.
    func connect(with bootstrap: ClientBootstrap) -> EventLoopFuture<any Channel> {
        if let socketAddress { return bootstrap.connect(to: socketAddress) }
        return bootstrap.connect(host: address.host, port: address.port)
    }
}

/// A client TLS context and the name to verify, shared by a service's endpoints.
struct UpstreamTLS: Sendable {
    let context: NIOSSLContext
    /// The same, offering only `h2` by ALPN (gRPC health checks).
    let h2Context: NIOSSLContext
    let serverName: String?
    /// What the context was made from, to tell whether a reload changed it.
    let configuration: UpstreamTLSConfiguration

    /// The TLS handler for a new connection to `host`.
    func makeHandler(host: String, h2: Bool = false) throws -> NIOSSLClientHandler {
        // SNI carries names, not addresses: an IP endpoint is verified against its IP SANs instead.
        let name = serverName ?? (Self.isIPAddress(host) ? nil : host)
        return try NIOSSLClientHandler(context: h2 ? h2Context : context, serverHostname: name)
    }

    static func make(_ configuration: UpstreamTLSConfiguration) throws -> UpstreamTLS {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(configuration.caFile)
        var h2 = tls
        h2.applicationProtocols = ["h2"]
        return UpstreamTLS(
            context: try NIOSSLContext(configuration: tls),
            h2Context: try NIOSSLContext(configuration: h2),
            serverName: configuration.serverName,
            configuration: configuration
        )
    }

    private static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}

/// A fast, non-cryptographic generator for load-balancing choices (xorshift*), one per connection.
struct BalancerRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed
    }

    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }

    /// A uniform double in [0, 1).
    mutating func unit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }
}
