import NIOCore
import NIOPosix

/// Idle keep-alive connections to endpoints, for one event loop. Confined to that loop: a request's
/// client and upstream connections share it, so relaying bytes never hops threads.
final class UpstreamPool {
    enum Failure: Error {
        case exhausted(UpstreamEndpoint)
    }

    let eventLoop: any EventLoop
    let timeouts: ProxyTimeouts
    private var idle: [String: [UpstreamConnection]] = [:]
    private var open: [String: Int] = [:]
    /// Requests and retries in the current window, for the retry budget.
    private var windowStart = NIODeadline.now()
    private var windowRequests = 0
    private var windowRetries = 0

    init(eventLoop: any EventLoop, timeouts: ProxyTimeouts) {
        self.eventLoop = eventLoop
        self.timeouts = timeouts
    }

    /// Calls `completion` on this event loop with an idle connection to `endpoint`, or a new one.
    func acquire(_ endpoint: UpstreamEndpoint, _ completion: @escaping (Result<UpstreamConnection, any Error>) -> Void)
    {
        while let connection = idle[endpoint.key]?.popLast() {
            if connection.isUsable {
                completion(.success(connection))
                return
            }
        }
        guard open[endpoint.key, default: 0] < timeouts.maxConnectionsPerEndpoint else {
            completion(.failure(Failure.exhausted(endpoint)))
            return
        }
        open[endpoint.key, default: 0] += 1
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(timeouts.connect))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls = endpoint.tls {
                        try channel.pipeline.syncOperations.addHandler(tls.makeHandler(host: endpoint.address.host))
                    }
                    try channel.pipeline.syncOperations.addHandler(UpstreamConnection(endpoint: endpoint))
                }
            }
        let connected = endpoint.connect(with: bootstrap)
        connected.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                do {
                    let connection = try channel.pipeline.syncOperations.handler(type: UpstreamConnection.self)
                    connection.pool = self
                    connection.watchIdleness(period: TimeAmount(self.timeouts.upstreamRead / 2))
                    completion(.success(connection))
                } catch {
                    self.open[endpoint.key, default: 1] -= 1
                    channel.close(promise: nil)
                    completion(.failure(error))
                }
            case .failure(let error):
                self.open[endpoint.key, default: 1] -= 1
                completion(.failure(error))
            }
        }
    }

    /// Returns a connection whose response ended cleanly, for the next request.
    func release(_ connection: UpstreamConnection) {
        guard connection.isUsable else { return }
        idle[connection.endpoint.key, default: []].append(connection)
    }

    /// A connection closed: forget it.
    func closed(_ connection: UpstreamConnection) {
        open[connection.endpoint.key, default: 1] -= 1
        idle[connection.endpoint.key]?.removeAll { $0 === connection }
    }

    /// Closes every idle connection (graceful shutdown).
    func closeIdle() {
        let connections = idle.values.joined()
        idle = [:]
        for connection in connections { connection.close() }
    }

    /// Counts a request; returns whether a retry fits the budget.
    func countRequest() {
        rollWindow()
        windowRequests += 1
    }

    func mayRetry() -> Bool {
        rollWindow()
        guard Double(windowRetries + 1) <= max(3, timeouts.retryBudget * Double(windowRequests)) else { return false }
        windowRetries += 1
        return true
    }

    private func rollWindow() {
        let now = NIODeadline.now()
        if now - windowStart > .seconds(10) {
            windowStart = now
            windowRequests = 0
            windowRetries = 0
        }
    }
}

@available(*, unavailable)
extension UpstreamPool: Sendable {}
