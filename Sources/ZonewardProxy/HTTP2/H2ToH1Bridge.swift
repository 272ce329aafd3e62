import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import ZonewardModel

/// HTTP/1.1 keep-alive connections (NIO's client codec) for HTTP/2 client streams bridged to `http1`
/// endpoints, for one event loop. Apart from the HTTP/1.1 path's pool (whose connections are tied to its
/// byte-level handler), with the same limit per endpoint and the same retry budget rules.
typealias H1BridgePool = KeepAlivePool<H1BridgeUpstream>

extension KeepAlivePool where Connection == H1BridgeUpstream {
    convenience init(eventLoop: any EventLoop, timeouts: ProxyTimeouts) {
        self.init(eventLoop: eventLoop, timeouts: timeouts, connector: Self.connectTCP)
    }

    /// TCP (and TLS when the service asks for it), NIO's HTTP/1.1 client codec, and an `H1BridgeUpstream`.
    static func connectTCP(_ endpoint: UpstreamEndpoint, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        let bootstrap = endpoint.bootstrap(on: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls = endpoint.tls { try sync.addHandler(tls.makeHandler(host: endpoint.address.host)) }
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(H1BridgeUpstream(endpoint: endpoint))
                }
            }
        return endpoint.connect(with: bootstrap)
    }
}

typealias H1BridgePools = PerLoopPools<H1BridgePool>

extension PerLoopPools where Pool == H1BridgePool {
    convenience init(timeouts: ProxyTimeouts) {
        self.init(make: { H1BridgePool(eventLoop: $0, timeouts: timeouts) }, closeIdle: { $0.closeIdle() })
    }
}

/// One HTTP/1.1 connection to an endpoint, below NIO's client codec: relays one exchange at a time for an
/// `H2ToH1Stream`, reads only while that stream is writable, and times out an endpoint that goes
/// quiet (`upstreamRead`) as the HTTP/1.1 path does.
final class H1BridgeUpstream: ChannelDuplexHandler, PooledConnection {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    let endpoint: UpstreamEndpoint
    var pool: H1BridgePool?
    private var context: ChannelHandlerContext?
    private var owner: H2ToH1Stream?
    private var pendingRead = false
    private var receivedAnything = false
    private var keepAlive = true
    private var unflushed = false
    private let idle = IdleWatch()

    init(endpoint: UpstreamEndpoint) {
        self.endpoint = endpoint
    }

    var isUsable: Bool { context?.channel.isActive ?? false }
    var isWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idle.stop()
        self.context = nil
    }

    func watchIdleness(period: TimeAmount) {
        guard let context else { return }
        idle.start(on: context.eventLoop, period: period) { [self] in
            if let owner {
                // The client's stall (body withheld, response not taken) is not the endpoint's silence.
                if owner.isWaitingOnClient || pendingRead { return }
                fail(.timeout)
            } else {
                self.context?.close(promise: nil)
            }
        }
    }

    func begin(_ head: HTTPRequestHead, for owner: H2ToH1Stream) {
        self.owner = owner
        receivedAnything = false
        keepAlive = true
        write(.head(head))
    }

    func write(_ part: HTTPClientRequestPart) {
        idle.touch()
        unflushed = true
        context?.write(wrapOutboundOut(part), promise: nil)
    }

    func flush() {
        guard unflushed else { return }
        unflushed = false
        context?.flush()
    }

    func close() {
        owner = nil
        context?.close(promise: nil)
    }

    func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    private func fail(_ failure: UpstreamFailure) {
        guard let owner else { return }
        self.owner = nil
        context?.close(promise: nil)
        owner.upstreamFailed(failure)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        idle.touch()
        guard let owner else {
            // A response nobody asked for: this connection cannot be trusted.
            context.close(promise: nil)
            return
        }
        receivedAnything = true
        switch unwrapInboundIn(data) {
        case .head(let head):
            // Nothing is upgraded on this path: a 101 is a broken endpoint.
            guard head.status.code != 101 else {
                fail(.invalidResponse)
                return
            }
            if head.status.code >= 200 { keepAlive = head.isKeepAlive }
            owner.responseHead(head)
        case .body(let bytes):
            owner.responseBody(bytes)
        case .end(let trailers):
            self.owner = nil
            owner.responseEnded(upstream: self, reusable: keepAlive && context.channel.isActive, trailers: trailers)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        owner?.flushClient()
    }

    func channelInactive(context: ChannelHandlerContext) {
        idle.stop()
        pool?.closed(self)
        pool = nil
        if let owner {
            self.owner = nil
            owner.upstreamFailed(receivedAnything ? .resetMidResponse : .resetBeforeResponse)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError {
            fail(.invalidResponse)
        }
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { owner?.upstreamBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        // Backpressure: a response is read only as fast as the client's stream takes it.
        if let owner, !owner.clientIsWritable {
            pendingRead = true
            return
        }
        context.read()
    }
}

@available(*, unavailable)
extension H1BridgeUpstream: Sendable {}

/// A client connection whose HTTP/2 streams go to HTTP/1.1 endpoints.
typealias H1BridgeClient = ClientConnection<H1BridgePool>

/// One HTTP/2 client stream to an `http1` service (the owner `H2ClientStreamsHandler` gives it: no child
/// channel, no HTTP/2-to-HTTP/1 codec): the request becomes one HTTP/1.1 exchange with an endpoint picked by
/// the zone plan and power of two choices, on a pooled connection. Retries, outstanding counts, metrics per
/// zone pair and outlier results follow the HTTP/1.1 path's `ExchangeStateMachine`. Bodies stream both
/// ways, each side read only while the other can take more.
final class H2ToH1Stream: H2ClientStreamOwner {
    private let client: H1BridgeClient
    /// The client's stream; nil once it closed.
    private var side: (any H2ClientSide)?
    private var requestStarted = false
    /// A HEAD request: a local answer carries no body.
    private var isHead = false
    private var head: HTTPRequestHead?
    private var machine: ExchangeStateMachine?
    private var routes: ServiceRoutes?
    private var endpoint: UpstreamEndpoint?
    private var zone = -1
    private var tried: [UpstreamEndpoint] = []
    private var upstream: H1BridgeUpstream?
    private var connecting = false
    /// Request parts not sent yet (they arrive while connecting: at most one read's worth).
    private var pending: [HTTPClientRequestPart] = []
    /// The latest response body bytes, held until the endpoint's next part or the end of its read shows
    /// whether they end the response: the last DATA frame then carries END_STREAM, instead of an empty DATA
    /// frame after it (a frame less per stream through NIOHTTP2).
    private var heldBody: ByteBuffer?
    /// Parts sent while no body byte went out (an `end`), resent on a retry.
    private var replay: [HTTPClientRequestPart] = []
    private var requestEnded = false
    private var finished = false
    private var sent = 0
    private var received = 0
    private var sentAt = NIODeadline.now()

    init(client: H1BridgeClient, side: any H2ClientSide) {
        self.client = client
        self.side = side
    }

    var clientIsWritable: Bool { side?.isWritable ?? false }

    /// The exchange waits on the client: its body withheld while the endpoint could take it, or the
    /// response not taken.
    var isWaitingOnClient: Bool {
        (!requestEnded && (upstream?.isWritable ?? false)) || !clientIsWritable
    }

    // MARK: Client → endpoint

    func receive(_ payload: HTTP2Frame.FramePayload) {
        switch payload {
        case .headers(let headers) where !requestStarted:
            requestStarted = true
            requestEnded = headers.endStream
            isHead = headers.headers.first(name: ":method") == "HEAD"
            switch BridgeHeaders.requestFromHTTP2(headers.headers, endStream: headers.endStream) {
            case .success(let request): start(request)
            case .failure(let refusal):
                respondLocally(status: refusal == .connect ? 405 : 400, cause: refusal.rawValue)
                return
            }
            if headers.endStream { requestPart(.end(nil)) }
        case .headers(let trailers):
            requestEnded = true
            requestPart(.end(BridgeHeaders.trailersFromHTTP2(trailers.headers)))
        case .data(let data):
            if case .byteBuffer(let bytes) = data.data, bytes.readableBytes > 0 {
                requestPart(.body(.byteBuffer(bytes)))
            }
            if data.endStream {
                requestEnded = true
                requestPart(.end(nil))
            }
        case .rstStream:
            clientGone()
        default:
            break
        }
    }

    func clientReadComplete() {
        upstream?.flush()
    }

    private func requestPart(_ part: HTTPClientRequestPart) {
        guard !finished else { return }
        if let upstream, !connecting {
            send(part, on: upstream)
        } else {
            pending.append(part)
        }
    }

    private func send(_ part: HTTPClientRequestPart, on upstream: H1BridgeUpstream) {
        if case .body(.byteBuffer(let bytes)) = part {
            machine?.bodySent(bytes.readableBytes)
            sent += bytes.readableBytes
        }
        if machine?.bodyBytesSent == 0 { replay.append(part) } else { replay = [] }
        upstream.write(part)
    }

    private func start(_ request: HTTPRequestHead) {
        guard let routes = client.routes else {
            respondLocally(status: 503, cause: "service-not-configured")
            return
        }
        self.routes = routes
        if routes.condition == .unavailable {
            routes.metrics.noCapacityRequests.increment()
            respondLocally(status: 503, cause: "no-capacity")
            return
        }
        routes.demandCounter.count.wrappingAdd(1, ordering: .relaxed)
        if routes.condition == .panic { routes.metrics.panicRequests.increment() }
        client.pool.countRequest()
        head = BridgeHeaders.requestForHTTP1(request, forwarding: client.forwarding)
        let idempotent: Bool
        switch request.method {
        case .GET, .HEAD, .OPTIONS, .TRACE, .PUT, .DELETE: idempotent = true
        default: idempotent = false
        }
        machine = ExchangeStateMachine(
            request: .init(isIdempotent: idempotent, keepAlive: true),
            maxRetries: client.maxRetries
        )
        dispatch()
    }

    /// Picks an endpoint (not one already tried) and gets a connection to it.
    private func dispatch() {
        guard let routes, let machine, side != nil else { return }
        guard let (endpoint, zone) = routes.pickWithZone(&client.random, excluding: tried) else {
            if let failure = machine.lastFailure {
                respondToFailure(failure)
            } else {
                respondLocally(status: 503, cause: "no-healthy-endpoint")
            }
            return
        }
        self.endpoint = endpoint
        self.zone = zone
        endpoint.outstanding.wrappingAdd(1, ordering: .relaxed)
        connecting = true
        let pool = client.pool
        pool.acquire(endpoint) { result in
            guard self.connecting, self.endpoint === endpoint, !self.finished, self.side != nil else {
                if case .success(let connection) = result { pool.release(connection) }
                return
            }
            self.connecting = false
            switch result {
            case .success(let connection):
                self.connected(connection)
            case .failure(let error):
                let exhausted = error is H1BridgePool.Failure
                self.upstreamFailed(exhausted ? .poolExhausted : .connectFailed("\(error)"))
            }
        }
    }

    private func connected(_ connection: H1BridgeUpstream) {
        guard let head else { return }
        upstream = connection
        machine?.connected()
        sentAt = .now()
        connection.begin(head, for: self)
        let parts = pending
        pending = []
        for part in parts { send(part, on: connection) }
        connection.flush()
        resumeReading()
    }

    // MARK: Endpoint → client

    func responseHead(_ response: HTTPResponseHead) {
        guard let side, !finished else { return }
        guard let block = BridgeHeaders.responseBlock(response) else {
            // Nothing NIO's HTTP/1.1 decoder would refuse, but not fit for HTTP/2: the response is invalid.
            let connection = upstream
            upstreamFailed(.invalidResponse)
            connection?.close()
            return
        }
        let code = Int(response.status.code)
        let interim = code < 200
        machine?.responseHead(status: code, interim: interim, closesClient: false)
        replay = []
        if !interim, let routes, endpoint != nil, zone >= 0, zone < routes.metrics.latency.count {
            routes.metrics.latency[zone].recordNanoseconds((NIODeadline.now() - sentAt).nanoseconds)
        }
        side.write(.headers(.init(headers: block)))
    }

    func responseBody(_ bytes: ByteBuffer) {
        guard let side, !finished else { return }
        received += bytes.readableBytes
        if let held = heldBody { side.write(.data(.init(data: .byteBuffer(held)))) }
        heldBody = bytes
    }

    /// The endpoint's read is over: what was relayed (and the body bytes held) goes to the client.
    func flushClient() {
        guard let side else { return }
        if let held = heldBody {
            heldBody = nil
            side.write(.data(.init(data: .byteBuffer(held))))
        }
        side.flush()
    }

    func upstreamBecameWritable() {
        resumeReading()
    }

    func responseEnded(upstream connection: H1BridgeUpstream, reusable: Bool, trailers: HTTPHeaders?) {
        upstream = nil
        guard var machine, let side, !finished else {
            connection.close()
            return
        }
        let status = machine.status
        let ending = machine.responseEnded(upstreamReusable: reusable, bodyComplete: requestEnded, quiescing: false)
        self.machine = machine
        record(status: status, success: status < 500)
        if ending.reuseUpstream {
            client.pool.release(connection)
        } else {
            connection.close()
        }
        finished = true
        // Written through `side`, held here: the stream's last frame may close it at once, and this owner is
        // then told (`clientClosed`) before the flush.
        let last = heldBody ?? ByteBuffer()
        heldBody = nil
        if let trailers, !trailers.isEmpty {
            if last.readableBytes > 0 { side.write(.data(.init(data: .byteBuffer(last)))) }
            if let block = BridgeHeaders.trailersBlock(trailers) {
                side.write(.headers(.init(headers: block, endStream: true)))
            } else {
                side.write(.rstStream(.internalError))
            }
        } else {
            side.write(.data(.init(data: .byteBuffer(last), endStream: true)))
        }
        if !requestEnded {
            // The response is complete while the client still sends: RST_STREAM(NO_ERROR) (RFC 9113 §8.1),
            // held by the streams handler until the response's DATA is on the wire.
            side.write(.rstStream(.noError))
        }
        side.flush()
    }

    /// The endpoint could not complete the exchange: retried where the HTTP/1.1 path retries, else 502/503/504
    /// before the response head, or the stream reset after it.
    func upstreamFailed(_ failure: UpstreamFailure) {
        guard var machine, !finished else { return }
        if let endpoint {
            endpoint.outstanding.wrappingAdd(-1, ordering: .relaxed)
            client.table.recordResult(endpoint, success: false, detail: "\(failure)")
            tried.append(endpoint)
        }
        upstream = nil
        let status = machine.status
        let action = machine.upstreamFailed(failure) { client.pool.mayRetry() }
        self.machine = machine
        switch action {
        case .closeClient:
            routes?.metrics.recordRequest(
                destination: endpoint == nil ? -1 : zone,
                status: status,
                sent: sent,
                received: received
            )
            endpoint = nil
            finished = true
            reset(.cancel)
        case .retry:
            endpoint = nil
            sent = 0
            pending = replay + pending
            replay = []
            routes?.metrics.retries.increment()
            dispatch()
        case .respond(let failure):
            endpoint = nil
            respondToFailure(failure)
        }
    }

    private func respondToFailure(_ failure: UpstreamFailure) {
        switch failure {
        case .connectFailed: respondLocally(status: 502, cause: "upstream-connect-failed")
        case .poolExhausted: respondLocally(status: 503, cause: "upstream-pool-exhausted")
        case .resetBeforeResponse, .resetMidResponse: respondLocally(status: 502, cause: "upstream-reset")
        case .invalidResponse: respondLocally(status: 502, cause: "upstream-invalid-response")
        case .timeout: respondLocally(status: 504, cause: "upstream-timeout")
        }
    }

    /// Counts the finished exchange per zone pair and releases its endpoint.
    private func record(status: Int, success: Bool?) {
        routes?.metrics.recordRequest(
            destination: endpoint == nil ? -1 : zone,
            status: status,
            sent: sent,
            received: received
        )
        if let endpoint {
            endpoint.outstanding.wrappingAdd(-1, ordering: .relaxed)
            self.endpoint = nil
            if let success { client.table.recordResult(endpoint, success: success, detail: "HTTP \(status)") }
        }
    }

    /// Answers from the proxy: a short text body and `x-zoneward-error` naming the cause; a stream whose
    /// response already started is reset instead.
    private func respondLocally(status: Int, cause: String) {
        guard let side, !finished else { return }
        finished = true
        pending = []
        replay = []
        if let endpoint {
            endpoint.outstanding.wrappingAdd(-1, ordering: .relaxed)
            self.endpoint = nil
        }
        if var machine, machine.localError() == .closeClient {
            self.machine = machine
            reset(.cancel)
            return
        }
        let destination = tried.last.flatMap { routes?.zoneIndex[$0.zone] } ?? -1
        (routes ?? client.routes)?.metrics.recordRequest(destination: destination, status: status, sent: 0, received: 0)
        side.writeLocalResponse(status: status, cause: cause, isHead: isHead)
        // The streams handler holds RST_STREAM(NO_ERROR) until the response's DATA is on the wire.
        if !requestEnded { side.write(.rstStream(.noError)) }
        side.flush()
        resumeReading()
    }

    /// Ends the client's stream with RST_STREAM.
    private func reset(_ code: HTTP2ErrorCode) {
        guard let side else { return }
        side.write(.rstStream(code))
        side.flush()
    }

    // MARK: Lifecycle and backpressure

    /// The client reset the stream or went away: the upstream exchange is cancelled with its connection.
    private func clientGone() {
        finished = true
        upstream?.close()
        upstream = nil
        connecting = false
        if let endpoint {
            endpoint.outstanding.wrappingAdd(-1, ordering: .relaxed)
            self.endpoint = nil
        }
    }

    func clientClosed() {
        clientGone()
        side = nil
    }

    func clientWritabilityChanged() {
        if clientIsWritable { upstream?.resumeReading() }
    }

    /// Not while the endpoint's connection is being got, nor while it cannot take more.
    var takesMore: Bool {
        finished || !(connecting || (upstream.map { !$0.isWritable } ?? false))
    }

    private func resumeReading() {
        if takesMore { side?.resumeReading() }
    }
}

@available(*, unavailable)
extension H2ToH1Stream: Sendable {}
