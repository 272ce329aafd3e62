import NIOCore
import NIOHTTP2
import NIOPosix
import Synchronization

/// How many streams one upstream HTTP/2 connection carries and may carry. Pure, for the pool's decisions.
struct H2StreamSlots: Equatable {
    /// Streams open (or being opened) on the connection.
    var active = 0
    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS; 100 (RFC 9113's recommended minimum) until it says.
    var maxConcurrent = 100
    /// The peer sent GOAWAY: no new stream goes here; it closes when the last one ends.
    var draining = false
    var closed = false

    var hasCapacity: Bool { !draining && !closed && active < maxConcurrent }
    /// Draining and empty: close it.
    var isDrained: Bool { draining && active == 0 }
}

/// One HTTP/2 connection to an endpoint, shared by streams of many clients on one event loop.
final class H2UpstreamConnection {
    let endpoint: UpstreamEndpoint
    let channel: any Channel
    /// Relays its streams' frames (weak: the handler, in the channel's pipeline, holds the connection).
    weak var handler: H2UpstreamConnectionHandler?
    var slots = H2StreamSlots()
    /// When the connection last carried no stream (for closing idle ones).
    var idleSince: NIODeadline?
    /// The last stream a GOAWAY from the peer said it may process; streams above it were not processed.
    var goAwayLastStreamID: HTTP2StreamID?
    /// Completed by the peer's first SETTINGS (its limits are known then), failed if it closes before.
    let ready: EventLoopPromise<Void>
    private(set) var isReady = false

    init(endpoint: UpstreamEndpoint, channel: any Channel) {
        self.endpoint = endpoint
        self.channel = channel
        self.ready = channel.eventLoop.makePromise()
    }

    /// A new stream on this connection for `owner`, on a slot reserved (`H2UpstreamPool.reserve`), given back
    /// when the stream is over; nil when the connection is closed (the caller gives the slot back).
    func openStream(owner: H2StreamProxy) -> H2UpstreamStream? {
        handler?.open(owner: owner)
    }

    func becameReady() {
        guard !isReady else { return }
        isReady = true
        ready.succeed(())
    }

    func failIfNotReady(_ error: any Error) {
        guard !isReady else { return }
        isReady = true
        ready.fail(error)
    }
}

@available(*, unavailable)
extension H2UpstreamConnection: Sendable {}

/// Upstream HTTP/2 connections per endpoint, for one event loop (a stream's client and upstream channels
/// share it, so relaying frames never hops threads). Streams share connections up to the peer's
/// SETTINGS_MAX_CONCURRENT_STREAMS; a full connection makes the pool open another; a connection whose peer
/// sent GOAWAY takes no new stream and closes when its last one ends.
final class H2UpstreamPool {
    enum Failure: Error, CustomStringConvertible {
        case exhausted(String)
        case closed

        var description: String {
            switch self {
            case .exhausted(let key): return "\(key): every HTTP/2 connection allowed is full"
            case .closed: return "the upstream HTTP/2 connection closed before the stream opened"
            }
        }
    }

    typealias Completion = (Result<H2UpstreamConnection, any Error>) -> Void

    /// The last SETTINGS_MAX_CONCURRENT_STREAMS each endpoint sent: how many waiting streams a connection
    /// being opened to it will take.
    private var knownLimits: [String: Int] = [:]

    /// A connection being opened, and the streams waiting for it.
    private final class Pending {
        var waiters: [Completion] = []
    }

    let eventLoop: any EventLoop
    let timeouts: ProxyTimeouts
    private var connections: [String: [H2UpstreamConnection]] = [:]
    private var pending: [String: [Pending]] = [:]
    private var sweeper: RepeatedTask?
    /// Streams and retries over the last 10 seconds, for the retry budget (as the HTTP/1.1 pool's).
    private var budget = RetryBudget()
    /// Connections with no stream for this long are closed.
    let idleTimeout: TimeAmount
    /// The streams of this loop that owe a response, watched for `upstreamRead`.
    let silence: StreamSilenceWatch

    /// Opens a connected channel to an endpoint (TCP; embedded channels in tests).
    typealias Connector = (UpstreamEndpoint, any EventLoop) -> EventLoopFuture<any Channel>
    private let connector: Connector

    init(
        eventLoop: any EventLoop,
        timeouts: ProxyTimeouts,
        idleTimeout: TimeAmount = .seconds(60),
        connector: @escaping Connector = H2UpstreamPool.connectTCP
    ) {
        self.eventLoop = eventLoop
        self.timeouts = timeouts
        self.idleTimeout = idleTimeout
        self.connector = connector
        self.silence = StreamSilenceWatch(eventLoop: eventLoop)
    }

    static func connectTCP(_ endpoint: UpstreamEndpoint, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        let bootstrap = endpoint.bootstrap(on: eventLoop)
            // Nothing is read until `configure` has added the HTTP/2 handlers: an h2c endpoint sends its
            // SETTINGS at once, and bytes read before then would be lost.
            .channelOption(.autoRead, value: false)
        return endpoint.connect(with: bootstrap)
    }

    /// Open connections to `endpoint` (tests and `/metrics` use it).
    func connectionCount(_ endpoint: UpstreamEndpoint) -> Int { connections[endpoint.key]?.count ?? 0 }

    /// A connection to `endpoint` with a free slot, reserved for one new stream, when there is one now
    /// (else `reserve` waits for one). As for `reserve`, `streamEnded` gives the slot back.
    func reserveAvailable(_ endpoint: UpstreamEndpoint) -> H2UpstreamConnection? {
        startSweeping()
        guard let connection = connections[endpoint.key]?.first(where: { $0.slots.hasCapacity }) else { return nil }
        take(connection)
        return connection
    }

    /// Calls `completion` on this loop with a connection that has a slot reserved for one new stream; the
    /// caller opens the stream on it and calls `streamEnded` once when that stream is over (or never opened).
    func reserve(_ endpoint: UpstreamEndpoint, _ completion: @escaping Completion) {
        if let connection = reserveAvailable(endpoint) {
            completion(.success(connection))
            return
        }
        // A connection on its way takes as many waiting streams as the endpoint allowed last time (100 at
        // first) before another one is opened.
        let expected = max(1, knownLimits[endpoint.key] ?? 100)
        if let waiting = pending[endpoint.key]?.first(where: { $0.waiters.count < expected }) {
            waiting.waiters.append(completion)
            return
        }
        let open = (connections[endpoint.key]?.count ?? 0) + (pending[endpoint.key]?.count ?? 0)
        guard open < timeouts.maxConnectionsPerEndpoint else {
            completion(.failure(Failure.exhausted(endpoint.key)))
            return
        }
        let waiting = Pending()
        waiting.waiters.append(completion)
        pending[endpoint.key, default: []].append(waiting)
        connect(endpoint) { result in
            self.pending[endpoint.key]?.removeAll { $0 === waiting }
            switch result {
            case .success(let connection):
                self.connections[endpoint.key, default: []].append(connection)
                for waiter in waiting.waiters {
                    if connection.slots.hasCapacity {
                        self.take(connection)
                        waiter(.success(connection))
                    } else if connection.slots.maxConcurrent == 0 || connection.slots.draining {
                        // An endpoint that allows no stream (or says GOAWAY at once): not another connection.
                        waiter(.failure(Failure.exhausted(endpoint.key)))
                    } else {
                        self.reserve(endpoint, waiter)
                    }
                }
            case .failure(let error):
                for waiter in waiting.waiters { waiter(.failure(error)) }
            }
        }
    }

    private func take(_ connection: H2UpstreamConnection) {
        connection.slots.active += 1
        connection.idleSince = nil
    }

    func countRequest() {
        budget.countRequest(at: .now())
    }

    /// Whether a retry fits the budget; counts it when it does.
    func mayRetry() -> Bool {
        budget.mayRetry(at: .now(), share: timeouts.retryBudget)
    }

    /// A stream reserved on `connection` is over.
    func streamEnded(on connection: H2UpstreamConnection) {
        connection.slots.active = max(0, connection.slots.active - 1)
        if connection.slots.active == 0 { connection.idleSince = .now() }
        if connection.slots.isDrained { connection.channel.close(promise: nil) }
    }

    /// The peer changed SETTINGS_MAX_CONCURRENT_STREAMS.
    func maxConcurrentStreamsChanged(_ connection: H2UpstreamConnection, to value: Int) {
        connection.slots.maxConcurrent = max(0, value)
        knownLimits[connection.endpoint.key] = max(0, value)
    }

    /// The peer sent GOAWAY: new streams go elsewhere; the connection closes when its streams end.
    func goAwayReceived(_ connection: H2UpstreamConnection, lastStreamID: HTTP2StreamID) {
        connection.goAwayLastStreamID = min(connection.goAwayLastStreamID ?? lastStreamID, lastStreamID)
        connection.slots.draining = true
        if connection.slots.isDrained { connection.channel.close(promise: nil) }
    }

    /// Something went wrong on the connection: it takes no new stream and closes when its streams end.
    func stopNewStreams(on connection: H2UpstreamConnection) {
        connection.slots.draining = true
        if connection.slots.isDrained { connection.channel.close(promise: nil) }
    }

    /// The connection closed: forget it.
    func connectionClosed(_ connection: H2UpstreamConnection) {
        connection.slots.closed = true
        connections[connection.endpoint.key]?.removeAll { $0 === connection }
        if connections[connection.endpoint.key]?.isEmpty == true { connections[connection.endpoint.key] = nil }
    }

    /// Closes every connection that carries no stream (graceful shutdown).
    func closeIdle() {
        for connection in connections.values.joined() where connection.slots.active == 0 {
            connection.channel.close(promise: nil)
        }
    }

    /// Every half `idleTimeout` (30 s): idle connections are closed, and a connection carrying streams that
    /// has been silent since the last sweep is sent a PING; silent for another sweep, it is closed, so its
    /// streams end (gRPC UNAVAILABLE, 502 otherwise) instead of waiting on a peer that is gone.
    private func startSweeping() {
        guard sweeper == nil else { return }
        let period = TimeAmount.nanoseconds(max(idleTimeout.nanoseconds / 2, 1_000_000))
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        sweeper = eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in
            bound.value.closeIdle(olderThan: bound.value.idleTimeout)
        }
    }

    private func closeIdle(olderThan age: TimeAmount) {
        let now = NIODeadline.now()
        for connection in connections.values.joined() {
            if let since = connection.idleSince, now - since >= age {
                connection.channel.close(promise: nil)
            } else if connection.slots.active > 0 {
                connection.handler?.keepAlive()
            }
        }
    }

    /// Opens an HTTP/2 connection (prior knowledge) to `endpoint`; calls back on this loop once the peer's
    /// SETTINGS arrived (its stream limit is known before any stream is opened), within the connect timeout.
    private func connect(_ endpoint: UpstreamEndpoint, _ completion: @escaping Completion) {
        connector(endpoint, eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .failure(let error):
                completion(.failure(error))
            case .success(let channel):
                let connection: H2UpstreamConnection
                do {
                    connection = try self.configure(channel, endpoint: endpoint)
                } catch {
                    channel.close(promise: nil)
                    completion(.failure(error))
                    return
                }
                let timeout = channel.eventLoop.scheduleTask(in: TimeAmount(endpoint.timeouts.connect)) {
                    channel.close(promise: nil)
                }
                connection.ready.futureResult.assumeIsolated().whenComplete { result in
                    timeout.cancel()
                    switch result {
                    case .success: completion(.success(connection))
                    case .failure(let error): completion(.failure(error))
                    }
                }
            }
        }
    }

    private func configure(_ channel: any Channel, endpoint: UpstreamEndpoint) throws -> H2UpstreamConnection {
        let sync = channel.pipeline.syncOperations
        if let tls = endpoint.tls {
            // `h2` offered by ALPN, verified as the HTTP/1.1 path verifies it.
            try sync.addHandler(tls.makeHandler(host: endpoint.address.host, h2: true))
        }
        var connectionConfiguration = NIOHTTP2Handler.ConnectionConfiguration()
        connectionConfiguration.initialSettings = [
            HTTP2Setting(parameter: .enablePush, value: 0),
            HTTP2Setting(parameter: .maxHeaderListSize, value: H2Limits.maxHeaderListSize),
            HTTP2Setting(parameter: .initialWindowSize, value: H2Limits.streamWindow),
        ]
        connectionConfiguration.targetWindowSize = H2Limits.connectionWindow
        connectionConfiguration.maximumRecentlyResetStreams = H2Limits.recentlyResetStreams
        // Each header block is validated once, not twice: requests were validated as the client's streams
        // handler received them; responses, and their DATA against content-length, are checked by
        // `H2UpstreamConnectionHandler` (`H2Headers.isValidFromUpstream`, `H2Headers.DeclaredLength`).
        connectionConfiguration.headerBlockValidation = .disabled
        connectionConfiguration.contentLengthValidation = .disabled
        var streamConfiguration = NIOHTTP2Handler.StreamConfiguration()
        streamConfiguration.targetWindowSize = H2Limits.streamWindow
        try sync.addHandler(FlushCoalescer())
        // No stream multiplexer: `H2UpstreamConnectionHandler` relays each stream's frames itself.
        try sync.addHandler(
            NIOHTTP2Handler(
                mode: .client,
                connectionConfiguration: connectionConfiguration,
                streamConfiguration: streamConfiguration
            )
        )
        let connection = H2UpstreamConnection(endpoint: endpoint, channel: channel)
        do {
            let handler = H2UpstreamConnectionHandler(connection: connection, pool: self)
            connection.handler = handler
            try sync.addHandler(handler)
            // The connector opened the connection without reading (see connectTCP): read from now on.
            try channel.syncOptions?.setOption(.autoRead, value: true)
        } catch {
            connection.failIfNotReady(error)
            throw error
        }
        return connection
    }
}

@available(*, unavailable)
extension H2UpstreamPool: Sendable {}

typealias H2UpstreamPools = PerLoopPools<H2UpstreamPool>

extension PerLoopPools where Pool == H2UpstreamPool {
    /// Closes connections that carry no stream, on every loop, with `closeIdle()`.
    convenience init(timeouts: ProxyTimeouts) {
        self.init(make: { H2UpstreamPool(eventLoop: $0, timeouts: timeouts) }, closeIdle: { $0.closeIdle() })
    }
}
