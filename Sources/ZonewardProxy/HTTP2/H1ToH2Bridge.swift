import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// An HTTP/1.1 client on the listener of an `http2` service: NIO's HTTP/1.1 server codec (with the strict
/// parser's size limits and pipelining assistance: one request at a time, keep-alive) in front of this
/// adapter, which turns each request into the frames of one HTTP/2 stream for a fresh `H2StreamProxy` (the
/// HTTP/2 path's routing, pooled upstream streams, retries and metrics), and that stream's response frames
/// back into an HTTP/1.1 response. It is the proxy's client side (`H2ClientSide`): reading stops while the
/// proxy takes no more of the request.
final class H1ToH2Adapter: ChannelDuplexHandler, RemovableChannelHandler, H2ClientSide, H2Flushable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = Never
    typealias OutboundOut = HTTPServerResponsePart

    private let connection: H2ClientConnection
    private var context: ChannelHandlerContext?
    private var proxy: H2StreamProxy?
    private var pendingRead = false
    private var keepAlive = true
    /// The request's HEADERS went with END_STREAM (no body): its `end` part is not relayed.
    private var headEndedStream = false
    private var requestEnded = true
    private var responseStarted = false
    private var responseEnded = true
    /// The request was answered by the adapter itself: its remaining parts are dropped.
    private var refused = false

    init(connection: H2ClientConnection) {
        self.connection = connection
    }

    /// The limits of NIO's HTTP/1.1 decoder: the strict parser's (a 64 KiB head, 100 fields).
    static var decoderLimits: NIOHTTPDecoderLimitConfiguration {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = HTTPHeadParser.maxHeadBytes
        limits.maxHeaderListSize = HTTPHeadParser.maxHeadBytes
        limits.maxHeaderFieldCount = HTTPHeadParser.maxHeaders
        return limits
    }

    /// Installs NIO's HTTP/1.1 server pipeline and the adapter on a client connection.
    static func configure(_ pipeline: ChannelPipeline.SynchronousOperations, connection: H2ClientConnection) throws {
        try pipeline.configureHTTPServerPipeline(
            withPipeliningAssistance: true,
            withErrorHandling: true,
            withOutboundHeaderValidation: true,
            withEncoderConfiguration: .init(),
            withDecoderLimitConfiguration: decoderLimits
        )
        try pipeline.addHandler(H1ToH2Adapter(connection: connection))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        proxy?.clientClosed()
        proxy = nil
        self.context = nil
    }

    // MARK: Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            begin(context: context, head: head)
        case .body(let bytes):
            guard !refused else { return }
            proxy?.receive(.data(.init(data: .byteBuffer(bytes))))
        case .end(let trailers):
            requestEnded = true
            guard !refused, !headEndedStream else { return }
            if let trailers, !trailers.isEmpty {
                var block = HPACKHeaders()
                for (name, value) in trailers where H2Headers.field(name) != .connectionSpecific {
                    block.add(name: name.lowercased(), value: value, indexing: .nonIndexable)
                }
                proxy?.receive(.headers(.init(headers: block, endStream: true)))
            } else {
                let empty = context.channel.allocator.buffer(capacity: 0)
                proxy?.receive(.data(.init(data: .byteBuffer(empty), endStream: true)))
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        proxy?.clientReadComplete()
        context.fireChannelReadComplete()
    }

    /// Held while the proxy takes no more of the request (its upstream stream is being opened, or is full).
    func read(context: ChannelHandlerContext) {
        if let proxy, !proxy.takesMore {
            pendingRead = true
        } else {
            context.read()
        }
    }

    func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        read(context: context)
    }

    private func begin(context: ChannelHandlerContext, head: HTTPRequestHead) {
        keepAlive = head.isKeepAlive
        requestEnded = false
        responseStarted = false
        responseEnded = false
        refused = false
        if let error = BridgeHeaders.framingError(head) {
            refuse(context: context, status: error.status, cause: "invalid-request")
            return
        }
        // gRPC needs HTTP/2 end to end (trailers carry its status).
        if let type = head.headers.first(name: "content-type")?.lowercased(), type.hasPrefix("application/grpc") {
            refuse(context: context, status: 505, cause: "http2-required")
            return
        }
        guard let block = BridgeHeaders.requestForHTTP2(head, scheme: connection.scheme) else {
            refuse(context: context, status: 400, cause: "invalid-request")
            return
        }
        let length = head.headers.first(name: "content-length").flatMap { Int($0) } ?? 0
        let chunked = head.headers.first(name: "transfer-encoding") != nil
        headEndedStream = length == 0 && !chunked
        // A fresh stream per request (the previous one finished: the pipelining assistance delivers a request
        // only after the previous response ended).
        proxy?.clientClosed()
        let stream = H2StreamProxy(connection: connection, client: self)
        proxy = stream
        stream.receive(.headers(.init(headers: block, endStream: headEndedStream)))
    }

    /// Answers a request the adapter will not relay, and closes the connection after the answer.
    private func refuse(context: ChannelHandlerContext, status: Int, cause: String) {
        refused = true
        responseStarted = true
        responseEnded = true
        let body =
            status == 505
            ? "505 HTTP Version Not Supported: gRPC needs HTTP/2 (h2c prior knowledge, or h2 by ALPN)\n"
            : "\(status): \(cause)\n"
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "text/plain; charset=utf-8")
        headers.add(name: "content-length", value: String(body.utf8.count))
        headers.add(name: "x-zoneward-error", value: cause)
        headers.add(name: "connection", value: "close")
        var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
        buffer.writeString(body)
        connection.routes?.metrics.recordRequest(destination: -1, status: status, sent: 0, received: 0)
        let head = HTTPResponseHead(version: .http1_1, status: .init(statusCode: status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    // MARK: Responses

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func flush() {
        context?.flush()
    }

    var flushTarget: any H2Flushable { self }

    /// Reads of the HTTP/1.1 client are not tracked: the proxy flushes at once.
    func flushAfterRead(_ target: any H2Flushable) -> Bool { false }

    /// Response frames become one HTTP/1.1 response: a head (informational ones first), body parts, an end
    /// with trailers. Anything out of that order (data before the head, frames after the end) is dropped, as
    /// NIO's encoder would refuse it.
    func write(_ payload: HTTP2Frame.FramePayload) {
        guard let context else { return }
        switch payload {
        case .headers(let headers) where !responseStarted:
            guard var head = BridgeHeaders.responseForHTTP1(headers.headers), head.status.code != 101 else {
                context.close(promise: nil)
                return
            }
            if head.status.code < 200 {
                context.write(wrapOutboundOut(.head(head)), promise: nil)
                return
            }
            responseStarted = true
            if !keepAlive { head.headers.replaceOrAdd(name: "connection", value: "close") }
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            if headers.endStream { end(context: context, trailers: nil) }
        case .headers(let trailers) where !responseEnded:
            end(context: context, trailers: BridgeHeaders.trailersForHTTP1(trailers.headers))
        case .data(let data) where responseStarted && !responseEnded:
            if case .byteBuffer(let bytes) = data.data, bytes.readableBytes > 0 {
                context.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil)
            }
            if data.endStream { end(context: context, trailers: nil) }
        case .rstStream:
            // After a complete response: the client's body is not wanted (the connection closes after the
            // response). Before or during one: HTTP/1.1 has no reset but the connection's end.
            if !responseEnded || !requestEnded {
                context.flush()
                context.close(promise: nil)
            }
        default:
            break
        }
    }

    private func end(context: ChannelHandlerContext, trailers: HTTPHeaders?) {
        guard !responseEnded else { return }
        responseEnded = true
        let closing = !keepAlive || !requestEnded
        let written = context.writeAndFlush(wrapOutboundOut(.end(trailers)))
        if closing {
            written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        proxy?.clientWritabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        proxy?.clientClosed()
        proxy = nil
        context.fireChannelInactive()
    }

    /// A malformed request (NIO's decoder answered it 400) or a failed connection: close.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Idle between requests for `clientIdle`: close.
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read, responseEnded {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

@available(*, unavailable)
extension H1ToH2Adapter: Sendable {}
