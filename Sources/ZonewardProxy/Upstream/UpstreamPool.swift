import NIOCore
import NIOPosix

/// A pooled keep-alive connection to one endpoint: the HTTP/1.1 path's `UpstreamConnection`, and the
/// bridge's `H1BridgeUpstream` (HTTP/2 clients of `http1` services).
protocol PooledConnection: ChannelHandler {
    var endpoint: UpstreamEndpoint { get }
    var isUsable: Bool { get }
    var pool: KeepAlivePool<Self>? { get set }
    func watchIdleness(period: TimeAmount)
    func close()
}

/// The HTTP/1.1 path's pool.
typealias UpstreamPool = KeepAlivePool<UpstreamConnection>

/// Idle keep-alive connections to endpoints, for one event loop. Confined to that loop: a request's
/// client and upstream connections share it, so relaying bytes never hops threads.
final class KeepAlivePool<Connection: PooledConnection> {
    enum Failure: Error, CustomStringConvertible {
        case exhausted(String)

        var description: String {
            switch self {
            case .exhausted(let key): return "\(key): every connection allowed is busy"
            }
        }
    }

    let eventLoop: any EventLoop
    let timeouts: ProxyTimeouts
    /// Keyed by the endpoint object, which a reload keeps while the endpoint stays (its counters live in
    /// it): hashing an ObjectIdentifier costs a fraction of hashing the endpoint's `service/host:port` key,
    /// and the request path does it twice per request.
    private var idle: [ObjectIdentifier: [Connection]] = [:]
    private var open: [ObjectIdentifier: Int] = [:]
    /// Requests and retries over the last 10 seconds, for the retry budget.
    private var budget = RetryBudget()

    /// Opens a channel to an endpoint with a `Connection` in its pipeline.
    typealias Connector = (UpstreamEndpoint, any EventLoop) -> EventLoopFuture<any Channel>

    private let connector: Connector

    /// - Parameter connector: how connections are opened: real sockets (each kind's `connect`), embedded
    ///   channels in tests.
    init(eventLoop: any EventLoop, timeouts: ProxyTimeouts, connector: @escaping Connector) {
        self.eventLoop = eventLoop
        self.timeouts = timeouts
        self.connector = connector
    }

    /// Calls `completion` on this event loop with an idle connection to `endpoint`, or a new one.
    func acquire(_ endpoint: UpstreamEndpoint, _ completion: @escaping (Result<Connection, any Error>) -> Void) {
        if let connection = idleConnection(to: endpoint) {
            completion(.success(connection))
            return
        }
        let key = ObjectIdentifier(endpoint)
        guard open[key, default: 0] < timeouts.maxConnectionsPerEndpoint else {
            completion(.failure(Failure.exhausted(endpoint.key)))
            return
        }
        open[key, default: 0] += 1
        connector(endpoint, eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                do {
                    let connection = try channel.pipeline.syncOperations.handler(type: Connection.self)
                    connection.pool = self
                    connection.watchIdleness(period: TimeAmount(endpoint.timeouts.upstreamRead / 2))
                    completion(.success(connection))
                } catch {
                    self.open[key, default: 1] -= 1
                    channel.close(promise: nil)
                    completion(.failure(error))
                }
            case .failure(let error):
                self.open[key, default: 1] -= 1
                completion(.failure(error))
            }
        }
    }

    /// An idle pooled connection to `endpoint`, taken out of the pool, or nil when there is none.
    func idleConnection(to endpoint: UpstreamEndpoint) -> Connection? {
        let key = ObjectIdentifier(endpoint)
        while let connection = idle[key]?.popLast() {
            if connection.isUsable { return connection }
        }
        return nil
    }

    /// Returns a connection whose response ended cleanly, for the next request.
    func release(_ connection: Connection) {
        guard connection.isUsable else { return }
        idle[ObjectIdentifier(connection.endpoint), default: []].append(connection)
    }

    /// A connection closed: forget it.
    func closed(_ connection: Connection) {
        let key = ObjectIdentifier(connection.endpoint)
        open[key, default: 1] -= 1
        idle[key]?.removeAll { $0 === connection }
    }

    /// Closes every idle connection (graceful shutdown).
    func closeIdle() {
        let connections = idle.values.joined()
        idle = [:]
        for connection in connections { connection.close() }
    }

    /// Counts a request.
    func countRequest() {
        budget.countRequest(at: .now())
    }

    /// Whether a retry fits the budget; counts it when it does.
    func mayRetry() -> Bool {
        budget.mayRetry(at: .now(), share: timeouts.retryBudget)
    }
}

@available(*, unavailable)
extension KeepAlivePool: Sendable {}

extension KeepAlivePool where Connection == UpstreamConnection {
    /// A pool that connects over TCP (and TLS when the service asks for it).
    convenience init(eventLoop: any EventLoop, timeouts: ProxyTimeouts) {
        self.init(eventLoop: eventLoop, timeouts: timeouts, connector: Self.connect)
    }

    /// Connects over TCP (and TLS when the service asks for it).
    static func connect(_ endpoint: UpstreamEndpoint, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        let bootstrap = endpoint.bootstrap(on: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls = endpoint.tls {
                        try channel.pipeline.syncOperations.addHandler(tls.makeHandler(host: endpoint.address.host))
                    }
                    try channel.pipeline.syncOperations.addHandler(UpstreamConnection(endpoint: endpoint))
                }
            }
        return endpoint.connect(with: bootstrap)
    }
}

/// The retry budget over a sliding window: retries may be `share` of the requests of the last 10 seconds,
/// and at least 3. A window that slides second by second has no reset: a failure just after a boundary
/// gets the same budget as one just before (a fixed window that resets every 10 s did not).
struct RetryBudget {
    /// Per-second buckets of the last 10 seconds, indexed by second modulo 10.
    private var requests = [Int](repeating: 0, count: 10)
    private var retries = [Int](repeating: 0, count: 10)
    private var second: Int64 = 0

    static let minimumRetries = 3

    mutating func countRequest(at now: NIODeadline) {
        advance(to: now)
        requests[Int(second % 10)] += 1
    }

    mutating func mayRetry(at now: NIODeadline, share: Double) -> Bool {
        advance(to: now)
        let allowed = max(Double(Self.minimumRetries), share * Double(requests.reduce(0, +)))
        guard Double(retries.reduce(0, +) + 1) <= allowed else { return false }
        retries[Int(second % 10)] += 1
        return true
    }

    /// Clears the buckets of the seconds that passed since the last call.
    private mutating func advance(to now: NIODeadline) {
        let current = now.uptimeNanoseconds.dividedReportingOverflow(by: 1_000_000_000).partialValue
        let target = Int64(clamping: current)
        guard target > second else { return }
        let passed = min(target - second, 10)
        for step in 1...passed {
            let index = Int((second + step) % 10)
            requests[index] = 0
            retries[index] = 0
        }
        second = target
    }
}
