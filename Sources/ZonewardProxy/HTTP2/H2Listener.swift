import NIOCore
import NIOHTTP1
import NIOHTTP2
import Prometheus
import ZonewardModel

/// The HTTP/2 side of every `http` listener: detects the client connection preface (h2c with prior
/// knowledge; over TLS, after ALPN chose `h2`), then runs NIOHTTP2's server. HTTP/1.1 clients on the same port get the HTTP/1.1 pipeline, whatever the upstream protocol.
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

    /// Adds the sniffer to a new client connection of an `http` listener (after TLS, when the listener
    /// terminates it). A client that opens with the HTTP/2 preface gets NIOHTTP2's server without child
    /// channels (`H2ClientStreamsHandler`): for an `http2` service each stream is relayed on an upstream
    /// HTTP/2 stream; for an `http1` service each stream is bridged to one HTTP/1.1 exchange. Any other client is HTTP/1.1: `http1` installs the HTTP/1.1
    /// proxy for an `http1` service; for an `http2` service each request is bridged to an upstream stream.
    static func configure(
        channel: any Channel,
        service: ServiceConfiguration,
        table: RoutingTable,
        pools: H2UpstreamPools,
        bridgePools: H1BridgePools,
        scheme: String,
        maxRetries: Int,
        drain: Duration,
        http1: @escaping (ChannelHandlerContext) throws -> Void
    ) throws {
        let loop = channel.eventLoop
        let upstreamHTTP2 = service.upstreamProtocol == .http2
        let sniffer = H2PrefaceSniffer(
            timeout: TimeAmount(service.timeouts.requestHead),
            onTimeout: { table.metrics.clientTimeouts.requestHead.increment() },
            onHTTP2: { context in
                let sync = context.pipeline.syncOperations
                let clientAddress = context.channel.remoteAddress?.ipAddress ?? "unknown"
                let keeping = H2ClientStreamsHandler.Keeping(
                    maxIdle: TimeAmount(service.timeouts.clientIdle),
                    // A client that reads nothing (not even a PING) for `clientWrite` is closed.
                    pingInterval: TimeAmount(service.timeouts.clientWrite),
                    ackTimeout: .seconds(20),
                    maxGrace: TimeAmount(drain)
                )
                try sync.addHandler(FlushCoalescer(watchesGoAway: true))
                let makeOwner: (H2ClientStream) -> any H2ClientStreamOwner
                if upstreamHTTP2 {
                    // Each stream relayed on an upstream HTTP/2 stream.
                    let client = H2ClientConnection(
                        service: service,
                        table: table,
                        pool: pools.pool(for: loop),
                        scheme: scheme,
                        clientAddress: clientAddress,
                        maxRetries: maxRetries
                    )
                    makeOwner = { H2StreamProxy(connection: client, client: $0) }
                } else {
                    // Each stream bridged to one HTTP/1.1 exchange.
                    let client = H1BridgeClient(
                        service: service,
                        table: table,
                        pool: bridgePools.pool(for: loop),
                        scheme: scheme,
                        clientAddress: clientAddress,
                        maxRetries: maxRetries
                    )
                    makeOwner = { H2ToH1Stream(client: client, side: $0) }
                }
                try addRelay(sync, keeping: keeping, makeOwner: makeOwner)
                try sync.addHandler(H2ConnectionGuard(metrics: table.metrics, service: service.name))
            },
            otherwise: { context in
                guard upstreamHTTP2 else {
                    try http1(context)
                    return
                }
                let client = H2ClientConnection(
                    service: service,
                    table: table,
                    pool: pools.pool(for: loop),
                    scheme: scheme,
                    clientAddress: context.channel.remoteAddress?.ipAddress ?? "unknown",
                    maxRetries: maxRetries
                )
                let sync = context.pipeline.syncOperations
                try sync.addHandler(IdleStateHandler(readTimeout: TimeAmount(service.timeouts.clientIdle)))
                try H1ToH2Adapter.configure(sync, connection: client)
            }
        )
        try channel.pipeline.syncOperations.addHandler(sniffer)
    }

    /// The handlers that relay a client connection's streams (after TLS and the flush coalescer): NIOHTTP2's
    /// server without a multiplexer, and the streams handler, which keeps the connection (idle timeout,
    /// keepalive, graceful shutdown) and gives each stream the owner `makeOwner` makes (`H2StreamProxy` for
    /// HTTP/2 endpoints, `H2ToH1Stream` for HTTP/1.1 ones).
    static func addRelay(
        _ sync: ChannelPipeline.SynchronousOperations,
        keeping: H2ClientStreamsHandler.Keeping,
        makeOwner: @escaping (H2ClientStream) -> any H2ClientStreamOwner
    ) throws {
        try sync.addHandler(
            NIOHTTP2Handler(
                mode: .server,
                connectionConfiguration: serverConnectionConfiguration,
                streamConfiguration: serverStreamConfiguration
            )
        )
        try sync.addHandler(H2ClientStreamsHandler(keeping: keeping, makeOwner: makeOwner))
    }

    /// The client connection's limits, without NIOHTTP2's header validation (H2ServerSettings, shared with
    /// the HTTP/2 fuzzer).
    static var serverConnectionConfiguration: NIOHTTP2Handler.ConnectionConfiguration {
        H2ServerSettings.relayConnection
    }

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
    /// Counts a connection closed for saying nothing (as the HTTP/1.1 path's request-head timeout).
    private let onTimeout: (() -> Void)?
    private var buffered: ByteBuffer?
    private var timer: Scheduled<Void>?
    private var decided = false

    init(
        timeout: TimeAmount,
        onTimeout: (() -> Void)? = nil,
        onHTTP2: @escaping (ChannelHandlerContext) throws -> Void,
        otherwise: @escaping (ChannelHandlerContext) throws -> Void
    ) {
        self.timeout = timeout
        self.onTimeout = onTimeout
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
        let bound = NIOLoopBound((context: context, onTimeout: onTimeout), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            bound.value.onTimeout?()
            bound.value.context.close(promise: nil)
        }
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
