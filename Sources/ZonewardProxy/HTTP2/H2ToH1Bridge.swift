import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import ZonewardModel

/// HTTP/1.1 keep-alive connections (`H1BridgeUpstream`) for HTTP/2 client streams bridged to `http1`
/// endpoints, for one event loop. Apart from the HTTP/1.1 path's pool (whose connections are tied to its
/// byte-level handler), with the same limit per endpoint and the same retry budget rules.
typealias H1BridgePool = KeepAlivePool<H1BridgeUpstream>

extension KeepAlivePool where Connection == H1BridgeUpstream {
    convenience init(eventLoop: any EventLoop, timeouts: ProxyTimeouts) {
        self.init(eventLoop: eventLoop, timeouts: timeouts, connector: Self.connectTCP)
    }

    /// TCP (and TLS when the service asks for it) and an `H1BridgeUpstream`.
    static func connectTCP(_ endpoint: UpstreamEndpoint, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        let bootstrap = endpoint.bootstrap(on: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls = endpoint.tls { try sync.addHandler(tls.makeHandler(host: endpoint.address.host)) }
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

/// One HTTP/1.1 connection to an endpoint: writes one exchange at a time for an `H2ToH1Stream`
/// (`H1RequestWriter`), reads its response with the proxy's strict parser (`H1ResponseReader`), reads only
/// while that stream is writable, and times out an endpoint that goes quiet (`upstreamRead`) as the
/// HTTP/1.1 path does.
final class H1BridgeUpstream: ChannelDuplexHandler, PooledConnection {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    let endpoint: UpstreamEndpoint
    var pool: H1BridgePool?
    private var context: ChannelHandlerContext?
    private var owner: H2ToH1Stream?
    private var pendingRead = false
    private var receivedAnything = false
    private var keepAlive = true
    private var unflushed = false
    private let idle = IdleWatch()
    private var reader = H1ResponseReader()
    /// The request's body goes as chunks (its head says `Transfer-Encoding: chunked`).
    private var chunkedRequest = false
    /// The connection is closing for an error: a body that ends with the close is cut short, not complete.
    private var closedByError = false

    /// A chunk up to this size goes out in one buffer with its size line and CRLF (copied); a larger one as
    /// it is, between them.
    static let chunkCopyLimit = 4096

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
        reader.begin(isHeadRequest: head.method == .HEAD)
        write(.head(head))
    }

    func write(_ part: HTTPClientRequestPart) {
        guard let context else { return }
        idle.touch()
        switch part {
        case .head(let head):
            chunkedRequest = H1RequestWriter.isChunked(head)
            var buffer = context.channel.allocator.buffer(capacity: 512)
            H1RequestWriter.head(head, into: &buffer)
            send(.byteBuffer(buffer), context)
        case .body(let data):
            // An empty chunk would end the body.
            guard data.readableBytes > 0 else { return }
            guard chunkedRequest else {
                send(data, context)
                return
            }
            var line = context.channel.allocator.buffer(capacity: 16)
            H1RequestWriter.chunkStart(data.readableBytes, into: &line)
            if case .byteBuffer(var bytes) = data, bytes.readableBytes <= Self.chunkCopyLimit {
                line.writeBuffer(&bytes)
                line.writeStaticString(H1RequestWriter.chunkEnd)
                send(.byteBuffer(line), context)
            } else {
                send(.byteBuffer(line), context)
                send(data, context)
                send(.byteBuffer(ByteBuffer(staticString: H1RequestWriter.chunkEnd)), context)
            }
        case .end(let trailers):
            guard chunkedRequest else { return }
            var buffer = context.channel.allocator.buffer(capacity: 64)
            H1RequestWriter.lastChunk(trailers: trailers, into: &buffer)
            send(.byteBuffer(buffer), context)
        }
    }

    private func send(_ data: IOData, _ context: ChannelHandlerContext) {
        unflushed = true
        context.write(wrapOutboundOut(data), promise: nil)
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
        reader.append(unwrapInboundIn(data))
        guard owner != nil else {
            // A response nobody asked for: this connection cannot be trusted.
            context.close(promise: nil)
            return
        }
        while let owner {
            let event: H1ResponseReader.Event?
            do {
                event = try reader.next()
            } catch {
                fail(.invalidResponse)
                return
            }
            guard let event else { return }
            switch event {
            case .head(let status, let block, let keepAlive):
                // Nothing is upgraded on this path: a 101 is a broken endpoint.
                guard status != 101 else {
                    fail(.invalidResponse)
                    return
                }
                // Interim heads (100, 103) are dropped, as NIO's client codec dropped them: the exchange has
                // not answered yet (a failure now is still retried or answered 502).
                guard status >= 200 else { continue }
                receivedAnything = true
                self.keepAlive = keepAlive
                owner.responseHead(status: status, block: block)
            case .body(let bytes):
                owner.responseBody(bytes)
            case .end(let trailers):
                self.owner = nil
                // Bytes after the response were asked for by nobody: the connection is not reused.
                let reusable = keepAlive && context.channel.isActive && !reader.hasUnreadBytes
                owner.responseEnded(upstream: self, reusable: reusable, trailers: trailers)
            }
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
            if !closedByError, case .end(let trailers) = reader.connectionClosed() {
                // A body without a length ends with the connection: with its orderly close, not an error (a
                // reset, a TLS failure), which leaves the body cut short.
                owner.responseEnded(upstream: self, reusable: false, trailers: trailers)
            } else {
                owner.upstreamFailed(receivedAnything ? .resetMidResponse : .resetBeforeResponse)
            }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closedByError = true
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

    /// - Parameter block: the head's fields as an HTTP/2 block; nil when one is not fit for HTTP/2 (the
    ///   strict parser took the head, but HTTP/2 refuses it): the response is invalid.
    func responseHead(status code: Int, block: HPACKHeaders?) {
        guard let side, !finished else { return }
        guard let block else {
            let connection = upstream
            upstreamFailed(.invalidResponse)
            connection?.close()
            return
        }
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

    func responseEnded(upstream connection: H1BridgeUpstream, reusable: Bool, trailers: H1ResponseReader.Trailers) {
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
        switch trailers {
        case .none:
            side.write(.data(.init(data: .byteBuffer(last), endStream: true)))
        case .fields(let block):
            if last.readableBytes > 0 { side.write(.data(.init(data: .byteBuffer(last)))) }
            side.write(.headers(.init(headers: block, endStream: true)))
        case .unfit:
            if last.readableBytes > 0 { side.write(.data(.init(data: .byteBuffer(last)))) }
            side.write(.rstStream(.internalError))
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
