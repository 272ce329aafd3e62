import NIOCore

/// One keep-alive connection to an endpoint. Frames each response (head, then body by its framing),
/// hands the bytes to the client side as they arrive, and returns to the pool when a response ends cleanly.
final class UpstreamConnection: ChannelDuplexHandler, RemovableChannelHandler, PooledConnection {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let endpoint: UpstreamEndpoint
    var pool: UpstreamPool?
    private var context: ChannelHandlerContext?
    /// The client-side handler this connection serves now; nil while idle in the pool.
    private var exchange: HTTPProxyHandler?
    private var head: ByteBuffer?
    private var scanFrom = 0
    private var body: BodyTracker?
    private var reusable = true
    private var receivedAnything = false
    private var pendingRead = false
    private var isHeadRequest = false
    private var upgradesToWebSocket = false
    private var clientKeepAlive = true
    private var clientIsHTTP11 = true
    private var scratch = HeaderSummary()
    private let idle = IdleWatch()
    /// Something was written since the last flush. The client side flushes after each client read, most
    /// often with nothing new written: an empty flush still walks the pipeline to the socket.
    private var unflushed = false

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

    /// Times out a request whose endpoint goes quiet, and closes a pooled connection nobody uses.
    func watchIdleness(period: TimeAmount) {
        guard let context else { return }
        idle.start(on: context.eventLoop, period: period) { [self] in
            if let exchange {
                // Silence while the client withholds the body or takes no response byte is the client's
                // stall, which the client side times out; it is never counted against the endpoint.
                if exchange.isWaitingOnClient || pendingRead { return }
                fail(.timeout)
            } else {
                self.context?.close(promise: nil)
            }
        }
    }

    /// Starts a request on this connection: writes its head; the client side writes the body after.
    func begin(_ requestHead: ByteBuffer, request: RequestHead, for exchange: HTTPProxyHandler) {
        self.exchange = exchange
        isHeadRequest = request.isHead
        upgradesToWebSocket = request.upgradesToWebSocket
        clientKeepAlive = request.keepAlive
        clientIsHTTP11 = request.isHTTP11
        head = nil
        scanFrom = 0
        body = nil
        reusable = true
        receivedAnything = false
        idle.touch()
        unflushed = true
        context?.write(wrapOutboundOut(requestHead), promise: nil)
    }

    func write(_ bytes: ByteBuffer) {
        idle.touch()
        unflushed = true
        context?.write(wrapOutboundOut(bytes), promise: nil)
    }

    func flush() {
        guard unflushed else { return }
        unflushed = false
        context?.flush()
    }

    /// Stops serving the current exchange without closing (the caller decides what happens next).
    func detach() {
        exchange = nil
    }

    func close() {
        exchange = nil
        context?.close(promise: nil)
    }

    /// Hands this connection's channel over to a byte tunnel: it leaves the pool for good, and `handler`
    /// takes this handler's place in the pipeline.
    func becomeTunnel(_ handler: GlueHandler, leftover: ByteBuffer) throws {
        guard let context else { throw UnrequestedProtocolSwitch() }
        pool?.closed(self)
        pool = nil
        idle.stop()
        let pipeline = context.pipeline.syncOperations
        try pipeline.addHandler(handler, position: .after(self))
        if leftover.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(leftover))
            context.fireChannelReadComplete()
        }
        let channel = context.channel
        pipeline.removeHandler(context: context, promise: nil)
        // A read held back for backpressure is the tunnel's to issue now.
        channel.read()
    }

    /// The client can take more bytes: read again if a read was held back.
    func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        idle.touch()
        guard exchange != nil else {
            // Bytes on an idle connection: the endpoint is not speaking HTTP as we understand it.
            context.close(promise: nil)
            return
        }
        receivedAnything = true
        do {
            try process(&buffer)
        } catch {
            fail(.invalidResponse)
        }
    }

    private func process(_ buffer: inout ByteBuffer) throws {
        while buffer.readableBytes > 0, let exchange {
            if var tracker = body {
                let taken = try buffer.withUnsafeReadableBytes { try tracker.consume($0) }
                body = tracker
                if taken > 0, let slice = buffer.readSlice(length: taken) {
                    exchange.responseBody(slice)
                }
                if tracker.isComplete {
                    // Bytes after the end of a response: never trust this connection again.
                    finishResponse(reusable: reusable && buffer.readableBytes == 0)
                    return
                }
                continue
            }
            if head == nil {
                head = buffer
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            } else {
                head?.writeBuffer(&buffer)
            }
            guard var pending = head else { return }
            guard let length = HTTPHeadParser.headLength(in: pending, scanFrom: scanFrom) else {
                if pending.readableBytes > HTTPHeadParser.maxHeadBytes { throw HTTPFramingError.headTooLarge }
                scanFrom = max(0, pending.readableBytes - 3)
                return
            }
            let message = pending
            guard let headBytes = pending.readSlice(length: length) else { return }
            buffer = pending
            head = nil
            scanFrom = 0
            var rewritten = context?.channel.allocator.buffer(capacity: 0) ?? ByteBuffer()
            let (response, didRewrite, closeClient) = try HTTPHeadParser.parseResponse(
                headBytes,
                isHeadRequest: isHeadRequest,
                clientKeepAlive: clientKeepAlive,
                clientIsHTTP11: clientIsHTTP11,
                into: &rewritten,
                scratch: &scratch
            )
            if response.status == 101 {
                // Only a WebSocket handshake may switch protocols; anything else is a broken endpoint (502).
                guard upgradesToWebSocket else { throw UnrequestedProtocolSwitch() }
                self.exchange = nil
                let leftover = buffer
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
                exchange.switchToTunnel(upstream: self, head: headBytes, leftover: leftover)
                return
            }
            if response.isInterim {
                exchange.responseHead(didRewrite ? rewritten : headBytes, response: response, closeClient: closeClient)
                continue
            }
            reusable = response.keepAlive
            var tracker = BodyTracker(response.framing)
            if !didRewrite && !tracker.isComplete && buffer.readableBytes > 0 {
                // The head goes out as it came, and the body bytes read with it follow it in the same
                // buffer: one write to the client instead of two (a pipeline write costs ~1,500
                // instructions). Bad body framing is still reported after the head went out, as before.
                let taken: Int
                do {
                    taken = try buffer.withUnsafeReadableBytes { try tracker.consume($0) }
                } catch {
                    exchange.responseHead(headBytes, response: response, closeClient: closeClient)
                    throw error
                }
                if let whole = message.getSlice(at: message.readerIndex, length: length + taken) {
                    buffer.moveReaderIndex(forwardBy: taken)
                    exchange.responseHead(whole, response: response, closeClient: closeClient)
                } else {
                    exchange.responseHead(headBytes, response: response, closeClient: closeClient)
                    if let slice = buffer.readSlice(length: taken) { exchange.responseBody(slice) }
                }
                if tracker.isComplete {
                    finishResponse(reusable: reusable && buffer.readableBytes == 0)
                    return
                }
                body = tracker
                continue
            }
            exchange.responseHead(didRewrite ? rewritten : headBytes, response: response, closeClient: closeClient)
            if tracker.isComplete {
                finishResponse(reusable: reusable && buffer.readableBytes == 0)
                return
            }
            body = tracker
        }
    }

    private func finishResponse(reusable: Bool) {
        guard let exchange else { return }
        self.exchange = nil
        body = nil
        if !reusable {
            context?.close(promise: nil)
        }
        exchange.responseEnded(upstream: self, reusable: reusable)
    }

    private func fail(_ reason: UpstreamFailure) {
        guard let exchange else { return }
        self.exchange = nil
        context?.close(promise: nil)
        exchange.upstreamFailed(reason, receivedAnything: receivedAnything)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        exchange?.flushClient()
    }

    func channelInactive(context: ChannelHandlerContext) {
        idle.stop()
        pool?.closed(self)
        guard let exchange else { return }
        if let body, body.isUntilClose {
            // A response delimited by the connection's end is complete now.
            finishResponse(reusable: false)
        } else {
            self.exchange = nil
            exchange.upstreamFailed(
                receivedAnything ? .resetMidResponse : .resetBeforeResponse,
                receivedAnything: receivedAnything
            )
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { exchange?.upstreamBecameWritable() }
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        // Backpressure: read a response only as fast as the client takes it.
        if let exchange, !exchange.clientIsWritable {
            pendingRead = true
            return
        }
        context.read()
    }
}

@available(*, unavailable)
extension UpstreamConnection: Sendable {}

/// A 101 answer to a request that did not ask for a WebSocket.
struct UnrequestedProtocolSwitch: Error {}

/// Why a request could not be completed upstream.
enum UpstreamFailure: Error {
    case connectFailed(String)
    case resetBeforeResponse
    case resetMidResponse
    case invalidResponse
    case timeout
    case poolExhausted
}
