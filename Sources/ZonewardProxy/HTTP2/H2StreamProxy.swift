import NIOCore
import NIOHPACK
import NIOHTTP2
import Prometheus
import ZonewardModel

/// What the streams of one client connection share: the service, its routes (cached by table version),
/// the upstream pool of the connection's event loop, the forwarding facts, and a balancer's random state.
/// For HTTP/2 upstreams (`H2ClientConnection`) and the bridge to HTTP/1.1 upstreams (`H1BridgeClient`).
final class ClientConnection<Pool> {
    let serviceName: String
    let table: RoutingTable
    let pool: Pool
    let scheme: String
    let clientAddress: String
    let trustsPeer: Bool
    /// The forwarding fields for this client, built once per connection.
    let forwarding: H2Headers.Forwarding
    let maxRetries: Int
    var random = BalancerRandom(seed: UInt64.random(in: 1...UInt64.max))
    private var cachedRoutes: ServiceRoutes?
    private var cachedVersion = -1
    private var grpcCounters: [Int: Counter] = [:]

    init(
        service: ServiceConfiguration,
        table: RoutingTable,
        pool: Pool,
        scheme: String,
        clientAddress: String,
        maxRetries: Int
    ) {
        self.serviceName = service.name
        self.table = table
        self.pool = pool
        self.scheme = scheme
        self.clientAddress = clientAddress
        self.trustsPeer = service.forwardedFor.trusts(peer: clientAddress)
        self.forwarding = H2Headers.Forwarding(clientAddress: clientAddress, scheme: scheme, trusted: trustsPeer)
        self.maxRetries = maxRetries
    }

    /// `zoneward_grpc_responses_total` for one status (-1: none), looked up in the registry once per connection.
    func grpcCounter(status: Int?) -> Counter {
        let key = status ?? -1
        if let counter = grpcCounters[key] { return counter }
        let counter = H2Metrics.grpcResponses(table.metrics, service: serviceName, status: status)
        grpcCounters[key] = counter
        return counter
    }

    var routes: ServiceRoutes? {
        let version = table.version
        if version != cachedVersion {
            cachedRoutes = table.snapshot.routes(for: serviceName)
            cachedVersion = version
        }
        return cachedRoutes
    }
}

@available(*, unavailable)
extension ClientConnection: Sendable {}

/// A client connection whose streams go to HTTP/2 endpoints.
typealias H2ClientConnection = ClientConnection<H2UpstreamPool>

/// One client stream: routes it by the zone plan and power of two choices like an HTTP/1.1 request, opens a
/// stream on a pooled upstream HTTP/2 connection, and relays HEADERS, DATA and trailers both ways. Neither
/// side has a channel of its own (see `H2ClientStreamsHandler` and `H2UpstreamStream`): frames are handed
/// over by calls. Each side is read (its window given back) only while the other side can take more, so
/// nothing buffers beyond the flow-control windows.
final class H2StreamProxy: H2ClientStreamOwner, SilenceWatched {
    private enum Phase {
        case awaitingHeaders, connecting, open, finished
    }

    private let connection: H2ClientConnection
    /// The client end; nil once it is gone (`detach`).
    private var client: (any H2ClientSide)?
    private var phase = Phase.awaitingHeaders
    /// The frames for the upstream, head first: what arrived while the stream was being opened (at most
    /// one read's worth), and what was sent, kept while the stream may be retried (no response yet, at most
    /// `replayLimit` bytes) so a stream the endpoint refused unprocessed goes to another.
    private var replay: [HTTP2Frame.FramePayload] = []
    private var replayBytes = 0
    private var replayable = true
    private var attempts = 0
    private static let replayLimit = 65_536
    private var requestEnded = false
    private var routes: ServiceRoutes?
    private var endpoint: UpstreamEndpoint?
    /// The zone of the endpoint picked last (its index in the plan, as the metrics count zones), carried
    /// from the pick: no lookup by zone name per stream.
    private var endpointZone = -1
    private var tried: [UpstreamEndpoint] = []
    private var upstream: H2UpstreamStream?
    private var isGRPC = false
    private(set) var isHead = false
    private var responseHeadSent = false
    private var responseEnded = false
    private var status = 0
    private var grpcStatus: Int?
    private var sent = 0
    private var received = 0
    private var sentAt = NIODeadline.now()
    private var deadline: Scheduled<Void>?
    /// The last frame either way on the upstream stream, for `upstreamRead` (streams other than gRPC).
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)
    /// This stream's place in its loop's `StreamSilenceWatch` (-1: not watched).
    var silenceSlot = -1
    private var silenceLimit = TimeAmount.seconds(30)
    private var recorded = false
    private var upstreamDone = false

    init(connection: H2ClientConnection, client: any H2ClientSide) {
        self.connection = connection
        self.client = client
    }

    /// The client end is gone: nothing more is written to it, and no timer or watch keeps this stream.
    func detach() {
        client = nil
        connection.pool.silence.remove(self)
        deadline?.cancel()
        deadline = nil
    }

    var isWritable: Bool { client?.isWritable ?? false }

    /// Whether the request's next frames can go on: not while the upstream stream is being opened, nor while
    /// it cannot take more. The client side holds back (its window, or its reads) while this is false, and
    /// is told by `H2ClientSide.resumeReading` when it turns true.
    var takesMore: Bool {
        switch phase {
        case .connecting: return false
        case .open: return upstream?.isWritable ?? false
        case .awaitingHeaders, .finished: return true
        }
    }

    // MARK: Client → upstream

    /// A frame of the client's stream.
    func receive(_ payload: HTTP2Frame.FramePayload) {
        if case .rstStream = payload {
            clientGone()
            return
        }
        switch phase {
        case .awaitingHeaders:
            if case .headers(let headers) = payload { start(headers.headers, endStream: headers.endStream) }
        case .connecting:
            noteRequestEnd(payload)
            keep(payload)
        case .open:
            noteRequestEnd(payload)
            forward(payload)
        case .finished:
            noteRequestEnd(payload)
        }
    }

    /// The client side's read is over: what it relayed goes out.
    func clientReadComplete() {
        upstream?.flush()
    }

    func clientReadComplete(into flushes: H2FlushSet) {
        if let upstream { flushes.insert(upstream.handler) }
    }

    private func noteRequestEnd(_ payload: HTTP2Frame.FramePayload) {
        switch payload {
        case .headers(let headers) where headers.endStream: requestEnded = true
        case .data(let data) where data.endStream: requestEnded = true
        default: break
        }
    }

    /// Keeps a client frame for the upstream (trailers filtered); nil for frames that are not relayed.
    private func keep(_ payload: HTTP2Frame.FramePayload) {
        switch payload {
        case .headers(var trailers):
            trailers.headers = H2Headers.trailersForUpstream(trailers.headers)
            replay.append(.headers(trailers))
        case .data(let data):
            replayBytes += data.data.readableBytes
            replay.append(payload)
        default:
            break
        }
    }

    private func forward(_ payload: HTTP2Frame.FramePayload) {
        let before = replay.count
        keep(payload)
        for frame in replay[before...] { send(frame) }
        trimReplay()
    }

    private func send(_ frame: HTTP2Frame.FramePayload) {
        lastActivity = connection.pool.eventLoop.now
        if case .data(let data) = frame { sent += data.data.readableBytes }
        upstream?.send(frame)
    }

    /// Past the replay limit, or once the endpoint answered, the stream is not retried: forget its frames.
    private func trimReplay() {
        if !replayable || replayBytes > Self.replayLimit {
            replayable = false
            replay = []
            replayBytes = 0
        }
    }

    private func start(_ headers: HPACKHeaders, endStream: Bool) {
        requestEnded = endStream
        var facts = H2Headers.RequestFacts()
        let head = H2Headers.requestForUpstream(headers, forwarding: connection.forwarding, facts: &facts)
        isGRPC = facts.isGRPC
        isHead = facts.isHead
        guard let routes = connection.routes else {
            respondLocally(status: 503, grpc: 14, cause: "service-not-configured")
            return
        }
        self.routes = routes
        if routes.condition == .unavailable {
            routes.metrics.noCapacityRequests.increment()
            respondLocally(status: 503, grpc: 14, cause: "no-capacity")
            return
        }
        routes.demandCounter.count.wrappingAdd(1, ordering: .relaxed)
        if routes.condition == .panic { routes.metrics.panicRequests.increment() }
        connection.pool.countRequest()
        if isGRPC, let timeout = facts.grpcTimeout {
            let loop = connection.pool.eventLoop
            let bound = NIOLoopBound(self, eventLoop: loop)
            deadline = loop.scheduleTask(in: timeout) { bound.value.deadlineExpired() }
        }
        replay = [.headers(.init(headers: head, endStream: endStream))]
        phase = .connecting
        dispatch()
    }

    /// Picks an endpoint (not one already tried) by the plan and P2C, and reserves a stream to it.
    private func dispatch() {
        guard phase == .connecting, let routes else { return }
        guard let (endpoint, zone) = routes.pickWithZone(&connection.random, excluding: tried) else {
            respondLocally(
                status: tried.isEmpty ? 503 : 502,
                grpc: 14,
                cause: tried.isEmpty ? "no-healthy-endpoint" : "upstream-connect-failed"
            )
            return
        }
        self.endpoint = endpoint
        endpointZone = zone
        endpoint.outstanding.wrappingAdd(1, ordering: .relaxed)
        let pool = connection.pool
        // A connection with a free slot, the usual case: no callback (a closure and its context per stream).
        if let upstreamConnection = pool.reserveAvailable(endpoint) {
            openStream(on: upstreamConnection)
            return
        }
        pool.reserve(endpoint) { result in
            switch result {
            case .success(let upstreamConnection):
                guard self.phase == .connecting, self.endpoint === endpoint else {
                    pool.streamEnded(on: upstreamConnection)
                    return
                }
                self.openStream(on: upstreamConnection)
            case .failure(let error):
                guard self.phase == .connecting, self.endpoint === endpoint else { return }
                self.connectFailed("\(error)")
            }
        }
    }

    /// Opens the stream on the slot reserved on `upstreamConnection` (given back when the stream is over, or
    /// at once when it cannot be opened).
    private func openStream(on upstreamConnection: H2UpstreamConnection) {
        guard client != nil else {
            connection.pool.streamEnded(on: upstreamConnection)
            return
        }
        guard let stream = upstreamConnection.openStream(owner: self) else {
            connection.pool.streamEnded(on: upstreamConnection)
            connectFailed("cannot open a stream: the connection closed")
            return
        }
        upstream = stream
        upstreamOpened()
    }

    private func upstreamOpened() {
        guard phase == .connecting, let upstream else {
            upstream?.close()
            return
        }
        phase = .open
        sentAt = .now()
        sent = 0
        for frame in replay { send(frame) }
        trimReplay()
        // Opened during the client's read (the usual case): its end flushes the upstream connection once
        // for all the streams it opened.
        if client?.flushAfterRead(upstream.handler) != true { upstream.flush() }
        resumeReading()
        watchSilence()
    }

    /// An endpoint that sends nothing for `upstreamRead` while it owes a response gets the HTTP/1.1 path's
    /// treatment: 504 (or a reset once the response started), counted against it. Not for gRPC, whose
    /// streams may rightly be quiet for long (its deadline is `grpc-timeout`).
    private func watchSilence() {
        lastActivity = connection.pool.eventLoop.now
        guard !isGRPC, silenceSlot < 0, client != nil, let endpoint else { return }
        silenceLimit = TimeAmount(endpoint.timeouts.upstreamRead)
        connection.pool.silence.add(self)
    }

    func checkSilence(now: NIODeadline) {
        let limit = silenceLimit
        guard phase == .open, !responseEnded else { return }
        // The client's stall is not the endpoint's silence: a request body withheld, or a response not taken.
        let waitingOnClient = (!requestEnded && (upstream?.isWritable ?? false)) || !isWritable
        guard !waitingOnClient, now - lastActivity >= limit else { return }
        if let endpoint {
            connection.table.recordResult(endpoint, success: false, detail: "no HTTP/2 frame for upstreamRead")
        }
        upstreamDone = true
        upstream?.close()
        upstream = nil
        if !responseHeadSent {
            respondLocally(status: 504, grpc: 4, cause: "upstream-timeout")
        } else {
            status = 504
            finish(success: nil)
            reset(.cancel)
        }
    }

    /// The endpoint could not be reached: another endpoint, within the retry limit (nothing was sent).
    private func connectFailed(_ detail: String) {
        if let endpoint {
            endpoint.outstanding.wrappingAdd(-1, ordering: .relaxed)
            connection.table.recordResult(endpoint, success: false, detail: detail)
            tried.append(endpoint)
            self.endpoint = nil
        }
        if tried.count <= connection.maxRetries, connection.pool.mayRetry() {
            routes?.metrics.retries.increment()
            dispatch()
        } else {
            respondLocally(status: 502, grpc: 14, cause: "upstream-connect-failed")
        }
    }

    // MARK: Upstream → client

    func upstreamFrame(_ payload: HTTP2Frame.FramePayload) {
        guard phase == .open, !responseEnded, let client else { return }
        // Held here: writing the last frame may close the client's stream, and with it this proxy's upstream.
        let reading = upstream?.handler
        if case .rstStream(let code) = payload {
            upstreamClosed(code, refused: code == .refusedStream)
            return
        }
        replayable = false
        trimReplay()
        lastActivity = connection.pool.eventLoop.now
        switch payload {
        case .headers(let headers):
            // The upstream connection validated the block, dropped what HTTP/2 does not carry, and read a
            // final head's status (`H2UpstreamStream.finalStatus`; 0 for a 1xx head).
            if !responseHeadSent, let code = upstream?.finalStatus, code >= 200 {
                responseHeadSent = true
                status = code
                if endpoint != nil, let routes, endpointZone >= 0 {
                    routes.metrics.latency[endpointZone].recordNanoseconds((NIODeadline.now() - sentAt).nanoseconds)
                }
            }
            if isGRPC, let code = H2Headers.grpcStatus(headers.headers) { grpcStatus = code }
            if headers.endStream { responseEnding() }
            client.write(.headers(headers))
            if headers.endStream { responseEnded(client, reading: reading) }
        case .data(let data):
            if case .byteBuffer(let bytes) = data.data { received += bytes.readableBytes }
            if data.endStream { responseEnding() }
            client.write(payload)
            if data.endStream { responseEnded(client, reading: reading) }
        default:
            break
        }
    }

    /// The response's last frame is about to go to the client: the stream is counted now, with the
    /// endpoint's success. Writing that frame may close the client's stream at once (a HEADERS frame that
    /// ends a stream whose request ended), and the close would otherwise count it first as cut short, and
    /// the endpoint's success would never be recorded (its outlier count of consecutive failures never
    /// reset, for every gRPC call, which ends with trailers).
    private func responseEnding() {
        responseEnded = true
        let success = status < 500 && (grpcStatus.map { ![13, 14].contains($0) } ?? true)
        finish(success: success)
    }

    /// - Parameters:
    ///   - client: the client side the last frame went to. (Writing it may have closed the stream and
    ///     detached this proxy from its client side; the frame still needs the flush.)
    ///   - reading: the upstream connection the frame came from: during its read (the usual case), its end
    ///     flushes each client connection once for all the streams it answered.
    private func responseEnded(_ client: any H2ClientSide, reading: H2UpstreamConnectionHandler?) {
        if reading?.flushAfterRead(client.flushTarget) != true { client.flush() }
        endRequestEarly()
    }

    /// The upstream stream is over (reset, closed, or its connection gone). Without a complete response a
    /// gRPC call ends with UNAVAILABLE (trailers after headers, or a trailers-only response), anything else
    /// with 502 before the response head or a reset after it.
    /// - Parameter refused: the endpoint did not process the stream (REFUSED_STREAM, or above the last
    ///   stream of its GOAWAY): retried, on a new stream, when nothing of the response came and its frames
    ///   were kept.
    func upstreamClosed(_ code: HTTP2ErrorCode?, refused: Bool) {
        guard !upstreamDone else { return }
        upstreamDone = true
        upstream = nil
        guard phase == .open, !responseEnded else { return }
        if refused, replayable, !responseHeadSent, attempts < connection.maxRetries, connection.pool.mayRetry() {
            attempts += 1
            if let endpoint {
                endpoint.outstanding.wrappingAdd(-1, ordering: .relaxed)
                self.endpoint = nil
            }
            routes?.metrics.retries.increment()
            upstreamDone = false
            phase = .connecting
            dispatch()
            return
        }
        if let endpoint {
            connection.table.recordResult(
                endpoint,
                success: false,
                detail: "HTTP/2 stream reset (\(code.map { "\($0)" } ?? "connection closed"))"
            )
        }
        if isGRPC {
            grpcStatus = 14
            endWithGRPCStatus(14, message: "upstream stream reset")
            finish(success: nil)
            endRequestEarly()
        } else if !responseHeadSent {
            respondLocally(status: 502, grpc: 14, cause: "upstream-reset")
        } else {
            status = 502
            finish(success: nil)
            reset(code ?? .internalError)
        }
    }

    /// The client's connection, to flush when the upstream connection's read completes; nil once the client
    /// end is gone.
    var clientFlushTarget: (any H2Flushable)? {
        client?.flushTarget
    }

    // MARK: Endings

    /// gRPC `grpc-timeout` passed: the call ends with DEADLINE_EXCEEDED and the upstream stream is cancelled.
    private func deadlineExpired() {
        deadline = nil
        guard phase != .finished, !responseEnded else { return }
        upstream?.close()
        grpcStatus = 4
        endWithGRPCStatus(4, message: "deadline exceeded (grpc-timeout)")
        finish(success: nil)
        endRequestEarly()
    }

    private func endWithGRPCStatus(_ code: Int, message: String) {
        guard let client else { return }
        if !responseHeadSent { status = 200 }
        let trailers = H2Headers.grpcTrailers(status: code, message: message, withHead: !responseHeadSent)
        responseHeadSent = true
        responseEnded = true
        client.write(.headers(.init(headers: trailers, endStream: true)))
        client.flush()
    }

    /// Answers from the proxy: a gRPC call gets a trailers-only response with `grpc`'s status, anything else
    /// `status` with a short body; both carry `x-zoneward-error`.
    private func respondLocally(status: Int, grpc: Int, cause: String) {
        if let endpoint {
            endpoint.outstanding.wrappingAdd(-1, ordering: .relaxed)
            self.endpoint = nil
        }
        guard let client, !responseEnded else {
            finish(success: nil)
            return
        }
        if isGRPC {
            self.grpcStatus = grpc
            var trailers = H2Headers.grpcTrailers(status: grpc, message: cause, withHead: !responseHeadSent)
            trailers.add(name: "x-zoneward-error", value: cause)
            self.status = 200
            client.write(.headers(.init(headers: trailers, endStream: true)))
        } else {
            self.status = status
            client.writeLocalResponse(status: status, cause: cause, isHead: isHead)
        }
        responseHeadSent = true
        responseEnded = true
        client.flush()
        finish(success: nil)
        endRequestEarly()
    }

    /// The response is complete while the client still sends: RST_STREAM(NO_ERROR) asks it to stop (RFC
    /// 9113 §8.1).
    private func endRequestEarly() {
        guard !requestEnded else { return }
        reset(.noError)
    }

    private func reset(_ code: HTTP2ErrorCode) {
        guard let client else { return }
        client.write(.rstStream(code))
        client.flush()
    }

    /// The client's stream is closed (reset, ended both ways, or its connection gone): the upstream stream is
    /// cancelled if still open, and nothing more goes to the client.
    func clientClosed() {
        clientGone()
        detach()
    }

    /// The client reset the stream or went away: cancel the upstream stream.
    private func clientGone() {
        upstream?.close()
        upstream = nil
        if phase != .finished {
            if grpcStatus == nil && isGRPC { grpcStatus = 1 }
            if status == 0 { status = 499 }
            finish(success: nil)
        }
    }

    /// Counts the stream once (per zone pair, and by gRPC status) and releases its endpoint.
    private func finish(success: Bool?) {
        phase = .finished
        replay = []
        replayBytes = 0
        deadline?.cancel()
        deadline = nil
        connection.pool.silence.remove(self)
        guard !recorded else { return }
        recorded = true
        guard let routes else { return }
        // The endpoint's zone, or the last one tried: both were the last pick.
        let zone = endpoint == nil && tried.isEmpty ? -1 : endpointZone
        routes.metrics.recordRequest(
            destination: zone,
            status: status == 0 ? 502 : status,
            sent: sent,
            received: received
        )
        if isGRPC {
            connection.grpcCounter(status: grpcStatus).increment()
        }
        if let endpoint {
            endpoint.outstanding.wrappingAdd(-1, ordering: .relaxed)
            self.endpoint = nil
            if let success {
                connection.table.recordResult(endpoint, success: success, detail: "HTTP/2 \(status)")
            }
        }
        resumeReading()
    }

    // MARK: Backpressure

    /// The client takes more of the response again: the upstream stream is read on.
    func clientWritabilityChanged() {
        if isWritable { upstream?.resumeReading() }
    }

    func upstreamWritabilityChanged(writable: Bool) {
        if writable { resumeReading() }
    }

    private func resumeReading() {
        if takesMore { client?.resumeReading() }
    }
}

@available(*, unavailable)
extension H2StreamProxy: Sendable {}

/// The gRPC counters.
enum H2Metrics {
    /// `zoneward_grpc_responses_total{service,grpc_status}`: gRPC calls by the status they ended with (the
    /// endpoint's, or the proxy's own: 14 UNAVAILABLE, 4 DEADLINE_EXCEEDED; 1 when the client cancelled;
    /// `none` when the response carried no status).
    static func grpcResponses(_ metrics: ProxyMetrics, service: String, status: Int?) -> Counter {
        metrics.registry.makeCounter(
            descriptor: MetricNameDescriptor(
                metricName: "zoneward_grpc_responses_total",
                unitName: "",
                helpText: "gRPC calls by service and the grpc-status they ended with."
            ),
            labels: [("service", service), ("grpc_status", status.map(String.init) ?? "none")]
        )
    }
}
