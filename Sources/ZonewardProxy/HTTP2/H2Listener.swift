import NIOCore
import NIOHTTP2
import Prometheus
import ZonewardModel

/// The HTTP/2 side of an `http` listener whose service has `upstreamProtocol: http2`: detects the client
/// connection preface (h2c with prior knowledge; over TLS, after ALPN chose `h2`), then runs NIOHTTP2's
/// server with one child channel per stream. A client that speaks HTTP/1.1 instead gets 505.
enum H2Listener {
    /// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`: what every HTTP/2 client sends first (RFC 9113 §3.4).
    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// What the first bytes say: HTTP/2, not HTTP/2, or too few bytes to tell yet.
    enum Detection: Equatable {
        case http2, other, undecided
    }

    static func detect(_ bytes: ByteBuffer) -> Detection {
        let count = min(bytes.readableBytes, preface.count)
        guard let view = bytes.getBytes(at: bytes.readerIndex, length: count) else { return .undecided }
        guard view.elementsEqual(preface.prefix(count)) else { return .other }
        return count == preface.count ? .http2 : .undecided
    }

    /// Adds the sniffer to a new client connection (after TLS, when the listener terminates it).
    static func configure(
        channel: any Channel,
        service: ServiceConfiguration,
        table: RoutingTable,
        pools: H2UpstreamPools,
        scheme: String,
        maxRetries: Int,
        drain: Duration
    ) throws {
        let loop = channel.eventLoop
        let sniffer = H2PrefaceSniffer(timeout: TimeAmount(service.timeouts.requestHead)) { context in
            let sync = context.pipeline.syncOperations
            let client = H2ClientConnection(
                service: service,
                table: table,
                pool: pools.pool(for: loop),
                scheme: scheme,
                clientAddress: context.channel.remoteAddress?.ipAddress ?? "unknown",
                maxRetries: maxRetries
            )
            let bound = NIOLoopBound(client, eventLoop: loop)
            let management = NIOHTTP2ServerConnectionManagementHandler(
                eventLoop: loop,
                configuration: .init(
                    maxIdleTime: TimeAmount(service.timeouts.clientIdle),
                    maxAge: nil,
                    maxGraceTime: TimeAmount(drain),
                    // A client that reads nothing (not even a PING) for `clientWrite` is closed.
                    keepalive: .init(pingInterval: TimeAmount(service.timeouts.clientWrite), ackTimeout: .seconds(20))
                )
            )
            _ = try sync.configureHTTP2Pipeline(
                mode: .server,
                connectionConfiguration: serverConnectionConfiguration,
                streamConfiguration: serverStreamConfiguration,
                streamDelegate: management.http2StreamDelegate,
                position: .last,
                inboundStreamInitializer: { stream in
                    stream.eventLoop.makeCompletedFuture {
                        try stream.pipeline.syncOperations.addHandler(H2StreamProxyHandler(connection: bound.value))
                    }
                }
            )
            try sync.addHandler(management)
            try sync.addHandler(H2ConnectionGuard(metrics: table.metrics, service: service.name))
        } otherwise: { context in
            try context.pipeline.syncOperations.addHandler(H1RefusalHandler())
        }
        try channel.pipeline.syncOperations.addHandler(sniffer)
    }

    /// The client connection's limits (H2ServerSettings, shared with the HTTP/2 fuzzer).
    static var serverConnectionConfiguration: NIOHTTP2Handler.ConnectionConfiguration { H2ServerSettings.connection }

    /// Per stream: the receive window and the rapid-reset defence (H2ServerSettings).
    static var serverStreamConfiguration: NIOHTTP2Handler.StreamConfiguration { H2ServerSettings.stream }
}

/// Closes a client connection NIOHTTP2 has ended with GOAWAY for abuse (rapid reset, floods of control,
/// empty DATA or CONTINUATION frames, too many stream errors or glitches, an oversized header block) or
/// for not speaking HTTP/2: NIOHTTP2 sends the GOAWAY and reports the error, and closing is left to us.
final class H2ConnectionGuard: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame

    private let metrics: ProxyMetrics?
    private let service: String

    init(metrics: ProxyMetrics? = nil, service: String = "") {
        self.metrics = metrics
        self.service = service
    }

    static func endsConnection(_ error: any Error) -> Bool {
        reason(error) != nil
    }

    /// Why NIOHTTP2 ended the connection, as `zoneward_http2_connections_closed_total{reason}` says it; nil
    /// for an error that is not the connection's end (one stream's).
    static func reason(_ error: any Error) -> String? {
        switch error {
        case is NIOHTTP2Errors.ExcessiveRSTFrames: return "rapid-reset"
        case is NIOHTTP2Errors.ExcessiveControlFrames, is NIOHTTP2Errors.ExcessiveEmptyDataFrames,
            is NIOHTTP2Errors.ExcessiveContinuationFrames, is NIOHTTP2Errors.ExcessiveOutboundFrameBuffering:
            return "flood"
        case is NIOHTTP2Errors.ExcessiveStreamErrors, is NIOHTTP2Errors.ExcessiveNumberOfGlitches:
            return "misbehaving"
        case is NIOHTTP2Errors.ExcessivelyLargeHeaderBlock: return "header-too-large"
        case is NIOHTTP2Errors.BadClientMagic: return "not-http2"
        // A frame that does not parse, or a header block HPACK refuses (its list over 64 KiB among them).
        case is NIOHTTP2Errors.UnableToParseFrame: return "malformed"
        default: return nil
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        Self.watchGoAways(context)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A stream past the 100 allowed is a connection error to NIOHTTP2: it sends GOAWAY PROTOCOL_ERROR but
        // leaves the connection open, its reading stopped at the error; closed like the others (RFC 9113
        // §5.4.1). Not in `reason`: the upstream pool shares that, and there the error is one stream's.
        let limit = error is NIOHTTP2Errors.MaxStreamsViolation ? "stream-limit" : nil
        guard let reason = limit ?? Self.reason(error) else { return }
        metrics?.registry.makeCounter(
            descriptor: MetricNameDescriptor(
                metricName: "zoneward_http2_connections_closed_total",
                unitName: "",
                helpText:
                    "HTTP/2 client connections closed with GOAWAY for abuse or for not speaking HTTP/2, by reason."
            ),
            labels: [("service", service), ("reason", reason)]
        ).increment()
        // After the GOAWAY NIOHTTP2 wrote.
        context.flush()
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension H2ConnectionGuard: Sendable {}

/// Holds a new connection's first bytes until they show whether it speaks HTTP/2, installs the matching
/// handlers after itself, hands them the bytes and leaves. A connection that says nothing within `timeout`
/// is closed.
final class H2PrefaceSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let onHTTP2: (ChannelHandlerContext) throws -> Void
    private let otherwise: (ChannelHandlerContext) throws -> Void
    private let timeout: TimeAmount
    private var buffered: ByteBuffer?
    private var timer: Scheduled<Void>?
    private var decided = false

    init(
        timeout: TimeAmount,
        onHTTP2: @escaping (ChannelHandlerContext) throws -> Void,
        otherwise: @escaping (ChannelHandlerContext) throws -> Void
    ) {
        self.timeout = timeout
        self.onHTTP2 = onHTTP2
        self.otherwise = otherwise
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startTimer(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startTimer(context: context)
        context.fireChannelActive()
    }

    private func startTimer(context: ChannelHandlerContext) {
        guard timer == nil else { return }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) { bound.value.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        guard !decided else {
            context.fireChannelRead(data)
            return
        }
        if buffered == nil {
            buffered = bytes
        } else {
            buffered?.writeBuffer(&bytes)
        }
        guard let buffered else { return }
        let detection = H2Listener.detect(buffered)
        guard detection != .undecided else { return }
        decided = true
        timer?.cancel()
        timer = nil
        do {
            if detection == .http2 { try onHTTP2(context) } else { try otherwise(context) }
        } catch {
            context.close(promise: nil)
            return
        }
        self.buffered = nil
        context.fireChannelRead(wrapInboundOut(buffered))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Shutting down before the connection said anything: nothing is in flight.
        if event is ChannelShouldQuiesceEvent, !decided {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

@available(*, unavailable)
extension H2PrefaceSniffer: Sendable {}

/// An HTTP/1.1 client on a listener whose service speaks HTTP/2 upstream: one 505 naming the cause, then
/// the connection closes. (Bridging HTTP/1.1 to HTTP/2 upstreams is not done yet.)
final class H1RefusalHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var answered = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        answered = true
        let body = "505 HTTP Version Not Supported: this service speaks HTTP/2 (h2c prior knowledge, or h2 by ALPN)\n"
        var response = context.channel.allocator.buffer(capacity: 200 + body.utf8.count)
        response.writeString("HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: text/plain; charset=utf-8\r\n")
        response.writeString("Content-Length: \(body.utf8.count)\r\nX-Zoneward-Error: http2-required\r\n")
        response.writeString("Connection: close\r\n\r\n\(body)")
        context.writeAndFlush(wrapOutboundOut(response)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

@available(*, unavailable)
extension H1RefusalHandler: Sendable {}
