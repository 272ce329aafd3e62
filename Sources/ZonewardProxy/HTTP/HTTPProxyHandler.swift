import NIOCore
import ZonewardModel

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// The client side of the HTTP/1.1 proxy, one per client connection: frames each request on the
/// `ByteBuffer` it arrives in, picks an endpoint by the zone plan, relays the head (rewritten), the body
/// and the response as bytes with backpressure both ways, and keeps both sides alive between requests.
final class HTTPProxyHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// One request in flight: its decisions in `machine`, its resources and counters beside it. A class: the
    /// request path mutates it often and must not copy it each time.
    private final class Exchange {
        let generation: Int
        let request: RequestHead
        /// The forwarded head, kept so a retry can resend it.
        let head: ByteBuffer
        var body: BodyTracker
        let routes: ServiceRoutes
        var machine: ExchangeStateMachine
        var endpoint: UpstreamEndpoint?
        /// The index of `endpoint`'s zone in the routes, as the metrics count it (-1: none).
        var zone = -1
        /// Endpoints tried before the current one (empty unless retrying).
        var tried: [UpstreamEndpoint] = []
        var upstream: UpstreamConnection?
        var sent = 0
        var received = 0
        var sentAt = NIODeadline.now()

        init(
            generation: Int,
            request: RequestHead,
            head: ByteBuffer,
            body: BodyTracker,
            routes: ServiceRoutes,
            maxRetries: Int
        ) {
            self.generation = generation
            self.request = request
            self.head = head
            self.body = body
            self.routes = routes
            self.machine = ExchangeStateMachine(
                request: .init(isIdempotent: request.isIdempotent, keepAlive: request.keepAlive),
                maxRetries: maxRetries
            )
        }
    }

    private let serviceName: String
    private let table: RoutingTable
    private let pool: UpstreamPool
    private let scheme: String
    private let forwardedFor: ForwardedForConfiguration
    private var context: ChannelHandlerContext?
    private var forwarding = ForwardingInfo(clientAddress: "unknown", scheme: "http")
    private var scratch = HeaderSummary()
    /// The service's routes and the table version they came from: re-read only when the table changes.
    private var cachedRoutes: ServiceRoutes?
    private var cachedVersion = -1
    private var inbound: ByteBuffer?
    private var scanFrom = 0
    private var exchange: Exchange?
    private var generation = 0
    private var pendingRead = false
    /// Set by graceful shutdown: finish the request in flight, then close.
    private var quiescing = false
    private var closed = false
    private var random: BalancerRandom
    private var timer: ClientTimer
    private var tick: RepeatedTask?

    init(service: ServiceConfiguration, table: RoutingTable, pool: UpstreamPool, scheme: String) {
        self.serviceName = service.name
        self.table = table
        self.pool = pool
        self.scheme = scheme
        self.forwardedFor = service.forwardedFor
        self.timer = ClientTimer(timeouts: service.timeouts, acceptedAt: .now())
        self.random = BalancerRandom(seed: UInt64.random(in: 1...UInt64.max))
    }

    var clientIsWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let peer = context.channel.remoteAddress?.ipAddress ?? "unknown"
        forwarding = ForwardingInfo(clientAddress: peer, scheme: scheme, trustsPeer: forwardedFor.trusts(peer: peer))
        // The loop's clock, not the wall clock: tests drive it with an embedded loop.
        timer = ClientTimer(timeouts: timer.timeouts, acceptedAt: context.eventLoop.now)
        if context.channel.isActive { startTimer(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        tick?.cancel()
        tick = nil
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        startTimer(context: context)
        context.fireChannelActive()
    }

    /// One coarse timer per connection enforces every client timeout (see `ClientTimer`).
    private func startTimer(context: ChannelHandlerContext) {
        guard tick == nil else { return }
        let period = timer.period
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        tick = loop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in
            bound.value.checkTimeouts(at: loop.now)
        }
    }

    /// What the connection waits for now, for the timer.
    private var phase: ClientTimer.Phase {
        guard let current = exchange else { return .awaitingRequest }
        if !current.body.isComplete, let upstream = current.upstream, upstream.isWritable {
            return .awaitingBody
        }
        return .busy
    }

    /// True while a request in flight waits on its client (body bytes withheld, or the response not taken):
    /// the endpoint's silence then is not the endpoint's failure.
    var isWaitingOnClient: Bool {
        guard let current = exchange else { return false }
        return (!current.body.isComplete && (current.upstream?.isWritable ?? false)) || !clientIsWritable
    }

    func checkTimeouts(at now: NIODeadline) {
        guard !closed else { return }
        switch timer.tick(at: now, phase: phase) {
        case .keep:
            return
        case .requestHeadTimeout(let bytesSeen):
            table.metrics.clientTimeouts.requestHead.increment()
            if bytesSeen {
                respondLocally(status: 408, cause: "request-head-timeout", close: true)
            } else {
                closeClient()
            }
        case .bodyTimeout:
            table.metrics.clientTimeouts.clientBody.increment()
            // The client's stall: the upstream connection is dropped but the endpoint is not blamed.
            abandonUpstream()
            respondLocally(status: 408, cause: "request-body-timeout", close: true)
        case .notReading:
            table.metrics.clientTimeouts.clientWrite.increment()
            abandonUpstream()
            // Not after the pending writes (they never drain): reset now, so neither NIO nor the kernel keeps
            // megabytes of unsent response for a client that will not take them.
            closed = true
            if let context {
                let channel = context.channel
                if let socket = channel as? any SocketOptionProvider {
                    socket.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in
                        channel.close(promise: nil)
                    }
                } else {
                    context.close(promise: nil)
                }
            }
        case .idle:
            closeClient()
        }
    }

    /// Drops the exchange's upstream connection without counting a failure against its endpoint.
    private func abandonUpstream() {
        guard let current = exchange else { return }
        current.upstream?.close()
        current.upstream = nil
        if let endpoint = current.endpoint {
            endpoint.outstanding.wrappingAdd(-1, ordering: .relaxed)
            current.endpoint = nil
            current.tried.append(endpoint)
        }
    }

    // MARK: Client → proxy

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        timer.touch()
        if inbound == nil || inbound?.readableBytes == 0 {
            inbound = buffer
        } else {
            inbound?.writeBuffer(&buffer)
        }
        processInbound()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        exchange?.upstream?.flush()
    }

    private func processInbound() {
        guard !closed else { return }
        if exchange != nil {
            forwardRequestBody()
            return
        }
        guard var buffer = inbound, buffer.readableBytes > 0 else { return }
        // RFC 9112 §2.2: ignore empty lines before a request line.
        while buffer.readableBytes >= 2, buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A {
            buffer.moveReaderIndex(forwardBy: 2)
            scanFrom = 0
        }
        guard let length = HTTPHeadParser.headLength(in: buffer, scanFrom: scanFrom) else {
            inbound = buffer
            // The head's deadline runs from its first byte, however slowly the rest trickles in.
            if buffer.readableBytes > 0 { timer.headBegan() }
            if buffer.readableBytes > HTTPHeadParser.maxHeadBytes {
                respondLocally(status: 431, cause: "request-head-too-large", close: true)
            } else {
                scanFrom = max(0, buffer.readableBytes - 3)
            }
            return
        }
        guard let headBytes = buffer.readSlice(length: length), let context else { return }
        inbound = buffer
        scanFrom = 0
        timer.headEnded()
        var forwarded = context.channel.allocator.buffer(capacity: length + 160)
        let request: RequestHead
        do {
            request = try HTTPHeadParser.parseRequest(
                headBytes,
                forwarding: forwarding,
                into: &forwarded,
                scratch: &scratch
            )
        } catch {
            respondLocally(status: error.status, cause: "invalid-request", close: true)
            return
        }
        guard request.method != .connect else {
            respondLocally(status: 405, cause: "connect-not-supported", close: true)
            return
        }
        let version = table.version
        if version != cachedVersion {
            cachedRoutes = table.snapshot.routes(for: serviceName)
            cachedVersion = version
        }
        guard let routes = cachedRoutes else {
            respondLocally(status: 503, cause: "service-not-configured", close: true)
            return
        }
        if routes.condition == .unavailable {
            // Nothing where routing allows: never widen to a drained zone or a fenced region.
            routes.metrics.noCapacityRequests.increment()
            respondLocally(status: 503, cause: "no-capacity", close: !BodyTracker(request.framing).isComplete)
            return
        }
        generation += 1
        pool.countRequest()
        routes.demandCounter.count.wrappingAdd(1, ordering: .relaxed)
        if routes.condition == .panic { routes.metrics.panicRequests.increment() }
        exchange = Exchange(
            generation: generation,
            request: request,
            head: forwarded,
            body: BodyTracker(request.framing),
            routes: routes,
            maxRetries: pool.timeouts.maxRetries
        )
        dispatch()
    }

    /// Picks an endpoint (not one already tried) and gets a connection to it.
    private func dispatch() {
        guard let current = exchange else { return }
        guard let (endpoint, zone) = current.routes.pickWithZone(&random, excluding: current.tried) else {
            exchange = current
            if let failure = current.machine.lastFailure {
                respondToFailure(failure, close: !current.body.isComplete)
            } else {
                respondLocally(status: 503, cause: "no-healthy-endpoint", close: !current.body.isComplete)
            }
            return
        }
        current.endpoint = endpoint
        current.zone = zone
        endpoint.outstanding.wrappingAdd(1, ordering: .relaxed)
        exchange = current
        let generation = current.generation
        // A pooled connection, the common case, without the callback `acquire` takes (a closure context
        // allocated and released per request).
        if let connection = pool.idleConnection(to: endpoint) {
            connected(.success(connection), generation: generation)
            return
        }
        pool.acquire(endpoint) { result in
            self.connected(result, generation: generation)
        }
    }

    private func connected(_ result: Result<UpstreamConnection, any Error>, generation: Int) {
        guard let current = exchange, current.generation == generation, !closed else {
            if case .success(let connection) = result { pool.release(connection) }
            return
        }
        switch result {
        case .success(let connection):
            current.upstream = connection
            current.machine.connected()
            current.sentAt = .now()
            current.sent += current.head.readableBytes
            exchange = current
            timer.restartActivityClock()
            connection.begin(current.head, request: current.request, for: self)
            forwardRequestBody()
            connection.flush()
            resumeReading()
        case .failure(let error):
            let exhausted = error is UpstreamPool.Failure
            upstreamFailed(exhausted ? .poolExhausted : .connectFailed("\(error)"), receivedAnything: false)
        }
    }

    /// Relays the request body bytes that have arrived, up to the end of the body.
    private func forwardRequestBody() {
        guard let current = exchange, let upstream = current.upstream, !current.body.isComplete,
            var buffer = inbound, buffer.readableBytes > 0
        else { return }
        do {
            let taken = try buffer.withUnsafeReadableBytes { try current.body.consume($0) }
            if taken > 0, let slice = buffer.readSlice(length: taken) {
                upstream.write(slice)
                current.machine.bodySent(taken)
                current.sent += taken
            }
            inbound = buffer
            exchange = current
        } catch {
            // The client's bad framing: drop the upstream, release the endpoint without blaming it.
            exchange = current
            abandonUpstream()
            respondLocally(status: 400, cause: "invalid-chunked-body", close: true)
        }
    }

    // MARK: Upstream → client

    func responseHead(_ bytes: ByteBuffer, response: ResponseHead, closeClient: Bool) {
        guard let current = exchange, let context else { return }
        current.machine.responseHead(status: response.status, interim: response.isInterim, closesClient: closeClient)
        current.received += bytes.readableBytes
        if !response.isInterim {
            let latencies = current.routes.metrics.latency
            if current.endpoint != nil, current.zone >= 0, current.zone < latencies.count {
                latencies[current.zone].recordNanoseconds((NIODeadline.now() - current.sentAt).nanoseconds)
            }
        }
        exchange = current
        context.write(wrapOutboundOut(bytes), promise: nil)
    }

    func responseBody(_ bytes: ByteBuffer) {
        exchange?.received += bytes.readableBytes
        context?.write(wrapOutboundOut(bytes), promise: nil)
    }

    /// The endpoint accepted a WebSocket handshake: relay its 101, then the two connections become a byte
    /// tunnel both ways (the upstream connection never returns to the pool).
    func switchToTunnel(upstream: UpstreamConnection, head: ByteBuffer, leftover: ByteBuffer) {
        guard let current = exchange, let context else {
            upstream.close()
            return
        }
        exchange = nil
        closed = true
        tick?.cancel()
        tick = nil
        current.machine.switchedProtocols()
        current.received += head.readableBytes
        record(current, status: 101, success: true)
        context.write(wrapOutboundOut(head), promise: nil)
        context.flush()
        let (clientSide, upstreamSide) = GlueHandler.matchedPair(idleTimeout: timer.timeouts.tcpIdle)
        do {
            let pipeline = context.pipeline.syncOperations
            try pipeline.addHandler(clientSide, position: .after(self))
            try upstream.becomeTunnel(upstreamSide, leftover: leftover)
            // Bytes the client sent after its handshake (frames sent early) go up the tunnel.
            if let early = inbound, early.readableBytes > 0 {
                inbound = nil
                context.fireChannelRead(wrapInboundOut(early))
                context.fireChannelReadComplete()
            }
            let channel = context.channel
            pipeline.removeHandler(context: context, promise: nil)
            channel.read()
        } catch {
            upstream.close()
            context.close(promise: nil)
        }
    }

    func flushClient() {
        context?.flush()
    }

    func upstreamBecameWritable() {
        resumeReading()
    }

    /// The response ended cleanly.
    func responseEnded(upstream: UpstreamConnection, reusable: Bool) {
        guard let current = exchange else { return }
        let status = current.machine.status
        let ending = current.machine.responseEnded(
            upstreamReusable: reusable,
            bodyComplete: current.body.isComplete,
            quiescing: quiescing
        )
        record(current, status: status, success: status < 500)
        if ending.reuseUpstream {
            pool.release(upstream)
        } else {
            upstream.close()
        }
        exchange = nil
        timer.restartActivityClock()
        if ending.closeClient {
            closeClient()
            return
        }
        context?.flush()
        processInbound()
        resumeReading()
    }

    /// The upstream could not complete the request. Before any response byte, an idempotent request (or
    /// any request that never reached the endpoint) is retried on another endpoint within the budget.
    func upstreamFailed(_ failure: UpstreamFailure, receivedAnything: Bool) {
        guard let current = exchange else { return }
        let status = current.machine.status
        let endpoint = current.endpoint
        if let endpoint {
            endpoint.outstanding.wrappingAdd(-1, ordering: .relaxed)
            table.recordResult(endpoint, success: false, detail: "\(failure)")
            current.tried.append(endpoint)
        }
        current.upstream = nil
        let action = current.machine.upstreamFailed(failure) { pool.mayRetry() }
        switch action {
        case .closeClient:
            // Counted against the zone it was served from (the endpoint was released above).
            current.routes.metrics.recordRequest(
                destination: endpoint == nil ? -1 : current.zone,
                status: status,
                sent: current.sent,
                received: current.received
            )
            current.endpoint = nil
            exchange = nil
            closeClient()
        case .retry:
            current.endpoint = nil
            current.sent = 0
            exchange = current
            current.routes.metrics.retries.increment()
            dispatch()
        case .respond(let failure):
            current.endpoint = nil
            exchange = current
            respondToFailure(failure, close: !current.body.isComplete)
        }
    }

    private func respondToFailure(_ failure: UpstreamFailure, close: Bool) {
        let (status, cause): (Int, String)
        switch failure {
        case .connectFailed: (status, cause) = (502, "upstream-connect-failed")
        case .poolExhausted: (status, cause) = (503, "upstream-pool-exhausted")
        case .resetBeforeResponse, .resetMidResponse: (status, cause) = (502, "upstream-reset")
        case .invalidResponse: (status, cause) = (502, "upstream-invalid-response")
        case .timeout: (status, cause) = (504, "upstream-timeout")
        }
        respondLocally(status: status, cause: cause, close: close)
    }

    /// Counts a finished exchange and releases its endpoint.
    /// - Parameter success: the endpoint's outcome for outlier detection; nil when the endpoint is not to
    ///   blame either way (the client ended the exchange).
    private func record(_ current: Exchange, status: Int, success: Bool?) {
        let zone = current.endpoint == nil ? -1 : current.zone
        current.routes.metrics.recordRequest(
            destination: zone,
            status: status,
            sent: current.sent,
            received: current.received
        )
        if let endpoint = current.endpoint {
            endpoint.outstanding.wrappingAdd(-1, ordering: .relaxed)
            current.endpoint = nil
            if let success { table.recordResult(endpoint, success: success, detail: "HTTP \(status)") }
        }
    }

    /// Answers the client from the proxy itself: a short text body and `X-Zoneward-Error` naming the cause.
    private func respondLocally(status: Int, cause: String, close: Bool) {
        guard let context else { return }
        let current = exchange
        exchange = nil
        if let current, current.machine.localError() == .closeClient {
            // Part of a response is out: a second status line would splice two messages. Close instead.
            let started = current.machine.status
            record(current, status: started == 0 ? status : started, success: nil)
            closeClient()
            return
        }
        if let endpoint = current?.endpoint {
            // Never leak the endpoint's outstanding count, whatever ended the exchange.
            endpoint.outstanding.wrappingAdd(-1, ordering: .relaxed)
            current?.endpoint = nil
        }
        let reason = Self.reasons[status] ?? "Error"
        let body = "\(status) \(reason): \(cause)\n"
        let keepAlive = !close && (current?.request.keepAlive ?? false) && !quiescing
        var response = context.channel.allocator.buffer(capacity: 160 + body.utf8.count)
        response.writeString("HTTP/1.1 \(status) \(reason)\r\nContent-Type: text/plain; charset=utf-8\r\n")
        response.writeString("Content-Length: \(body.utf8.count)\r\nX-Zoneward-Error: \(cause)\r\n")
        if !keepAlive { response.writeStaticString("Connection: close\r\n") }
        response.writeStaticString("\r\n")
        if current?.request.isHead != true { response.writeString(body) }
        if let current {
            let zone = current.tried.last.flatMap { current.routes.zoneIndex[$0.zone] } ?? -1
            current.routes.metrics.recordRequest(destination: zone, status: status, sent: 0, received: 0)
        } else {
            table.snapshot.routes(for: serviceName)?.metrics.recordRequest(
                destination: -1,
                status: status,
                sent: 0,
                received: 0
            )
        }
        context.writeAndFlush(wrapOutboundOut(response), promise: nil)
        if keepAlive {
            processInbound()
            resumeReading()
        } else {
            closeClient()
        }
    }

    private static let reasons = [
        400: "Bad Request", 405: "Method Not Allowed", 408: "Request Timeout", 431: "Request Header Fields Too Large",
        501: "Not Implemented",
        502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
    ]

    private func closeClient() {
        guard !closed, let context else { return }
        closed = true
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).assumeIsolated()
            .whenComplete { _ in context.close(promise: nil) }
    }

    // MARK: Lifecycle

    func channelInactive(context: ChannelHandlerContext) {
        tick?.cancel()
        tick = nil
        closed = true
        if let current = exchange {
            exchange = nil
            if let upstream = current.upstream {
                // Mid-exchange: the connection's state is unknown, so it never returns to the pool.
                upstream.close()
            }
            if let endpoint = current.endpoint { endpoint.outstanding.wrappingAdd(-1, ordering: .relaxed) }
        }
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        timer.writabilityChanged(writable: writable)
        if writable { exchange?.upstream?.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            quiescing = true
            if exchange == nil { closeClient() }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: Backpressure

    func read(context: ChannelHandlerContext) {
        if let current = exchange {
            let upstreamReady = current.upstream?.isWritable ?? false
            let backlog = inbound?.readableBytes ?? 0
            if !upstreamReady || (current.body.isComplete && backlog > 65_536) {
                pendingRead = true
                return
            }
        }
        context.read()
    }

    private func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        read(context: context)
    }
}

@available(*, unavailable)
extension HTTPProxyHandler: Sendable {}

extension UpstreamFailure: Equatable {
    static func == (lhs: UpstreamFailure, rhs: UpstreamFailure) -> Bool {
        switch (lhs, rhs) {
        case (.connectFailed, .connectFailed), (.resetBeforeResponse, .resetBeforeResponse),
            (.resetMidResponse, .resetMidResponse), (.invalidResponse, .invalidResponse), (.timeout, .timeout),
            (.poolExhausted, .poolExhausted):
            return true
        default:
            return false
        }
    }
}
