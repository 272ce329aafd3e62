import NIOCore
import NIOHTTP2

/// One stream on a pooled upstream HTTP/2 connection: an ID and a few counters. The connection's
/// `H2UpstreamConnectionHandler` relays its frames to and from the client stream's `H2StreamProxy`
/// directly. NIOHTTP2 runs without a stream multiplexer on upstream connections, so a stream has no child
/// channel: no channel, pipeline, promise and activation per proxied stream (about 60,000 of 288,000
/// instructions per stream in `PROTO=h2 bench/callgrind-proxy.sh`).
///
/// Flow control, both ways, is what the child channel did:
/// - in: a DATA frame's bytes are given back to the endpoint (WINDOW_UPDATE) once half the stream's window
///   is taken and only while the client's stream can take more, so a stream buffers at most one window;
/// - out: DATA written and not yet on the wire (NIOHTTP2 holds it while the endpoint's window is shut) is
///   counted; above `outboundHighWater` the stream is not writable, and the client stream stops being read.
final class H2UpstreamStream {
    let id: HTTP2StreamID
    /// Strong: a stream its owner still holds keeps the handler; the handler forgets every stream when its
    /// connection closes.
    let handler: H2UpstreamConnectionHandler
    fileprivate(set) var owner: H2StreamProxy?
    /// A final (non-1xx) response head came: header blocks from now on are trailers.
    fileprivate var finalHeadSeen = false
    /// The final response head's `:status` (0 before it), as validated here: its owner need not read it
    /// again.
    fileprivate(set) var finalStatus = 0
    /// The response body still owed by its `content-length` (none for HEAD and 304).
    fileprivate var body = H2Headers.DeclaredLength(nil)
    /// DATA bytes taken from the endpoint and not yet given back by WINDOW_UPDATE.
    fileprivate var unacknowledged = 0
    fileprivate var inboundEnded = false
    fileprivate var outboundEnded = false
    /// DATA bytes written to NIOHTTP2 and not yet written to the socket.
    fileprivate var pendingOutbound = 0
    /// Frames came in this read: the client stream gets one flush when the read completes.
    fileprivate var touched = false
    fileprivate(set) var isClosed = false

    /// Above this many DATA bytes not yet on the wire, the stream is not writable.
    static let outboundHighWater = 64 << 10

    fileprivate init(
        id: HTTP2StreamID,
        handler: H2UpstreamConnectionHandler,
        owner: H2StreamProxy
    ) {
        self.id = id
        self.handler = handler
        self.owner = owner
    }

    var isWritable: Bool {
        !isClosed && pendingOutbound < Self.outboundHighWater && handler.isChannelWritable
    }

    func send(_ payload: HTTP2Frame.FramePayload) {
        handler.send(payload, on: self)
    }

    func flush() {
        handler.flush()
    }

    /// Ends the stream from this side (RST_STREAM(CANCEL) while it is open); the owner is not called back.
    func close() {
        handler.cancel(self)
    }

    /// The client stream can take more: give the endpoint back what it sent.
    func resumeReading() {
        handler.giveBackWindow(self, atLeast: 1)
    }
}

@available(*, unavailable)
extension H2UpstreamStream: Sendable {}

/// The last handler of an upstream HTTP/2 connection: opens streams (odd IDs, in order), hands each stream's
/// frames to its owner, keeps the receive windows open as owners take what arrives, and tells the pool about
/// the connection's SETTINGS, GOAWAY and closing.
final class H2UpstreamConnectionHandler: ChannelInboundHandler, H2Flushable {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let connection: H2UpstreamConnection
    private let pool: H2UpstreamPool
    private let streamWindow: Int
    private let connectionWindow: Int
    private var context: ChannelHandlerContext?
    private var streams = H2StreamTable<H2UpstreamStream>()
    private var nextStreamID = 1
    /// Streams that got frames in the current read.
    private var touched: [H2UpstreamStream] = []
    /// The connections written to during this read (client connections its streams wrote to, and this one),
    /// flushed once each when it completes.
    private let flushes = H2FlushSet()
    /// Frames read so far, and how many the last keepalive check saw (`keepAlive`).
    private var framesRead: UInt64 = 0
    private var framesAtLastCheck: UInt64 = 0
    /// Keepalive checks in a row that saw no frame, and the one a PING went out at (nil: none outstanding).
    private var silentChecks = 0
    private var pingSentAt: Int?
    /// Silent checks (of the pool's 30 s sweep) before a PING: 5 minutes. gRPC servers count a PING sooner
    /// than 5 minutes after the last one as abuse and close the connection after a few (grpc-go, grpc-java
    /// and grpc-core's default `MinTime`), which would end every stream on it.
    static let checksBeforePing = 10
    /// Silent checks after the PING before the connection is given up: 60 s without its ACK or any frame.
    static let checksForAck = 2

    init(
        connection: H2UpstreamConnection,
        pool: H2UpstreamPool,
        streamWindow: Int = H2Limits.streamWindow,
        connectionWindow: Int = H2Limits.connectionWindow
    ) {
        self.connection = connection
        self.pool = pool
        self.streamWindow = streamWindow
        self.connectionWindow = connectionWindow
    }

    var isChannelWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // The connection's receive window starts at 65,535 bytes (RFC 9113 §6.9.2): open it to its size.
        if connectionWindow > 65_535 {
            write(
                HTTP2Frame(
                    streamID: .rootStream,
                    payload: .windowUpdate(windowSizeIncrement: connectionWindow - 65_535)
                )
            )
            context.flush()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        forgetTouched()
    }

    /// A read that closed the connection gets no `channelReadComplete`: the streams it touched (which hold
    /// this handler) must not stay listed here.
    private func forgetTouched() {
        for stream in touched { stream.touched = false }
        touched.removeAll()
        flushes.readEnded()
    }

    /// Flushes `target` once the read in progress completes (with every other connection its streams wrote
    /// to); false when no read is in progress (the caller flushes now).
    func flushAfterRead(_ target: any H2Flushable) -> Bool {
        flushes.flushAfterRead(target)
    }

    // MARK: Streams

    /// A new stream for `owner`, on a slot reserved in the pool (given back when the stream is forgotten);
    /// nil when the connection is closed or out of stream IDs (it then takes no new stream).
    func open(owner: H2StreamProxy) -> H2UpstreamStream? {
        guard let context, context.channel.isActive else { return nil }
        guard nextStreamID <= Int(Int32.max) else {
            pool.stopNewStreams(on: connection)
            return nil
        }
        let id = HTTP2StreamID(nextStreamID)
        nextStreamID += 2
        let stream = H2UpstreamStream(id: id, handler: self, owner: owner)
        streams[id] = stream
        return stream
    }

    fileprivate func send(_ payload: HTTP2Frame.FramePayload, on stream: H2UpstreamStream) {
        guard !stream.isClosed, let context else { return }
        switch payload {
        case .headers(let headers):
            if headers.endStream { stream.outboundEnded = true }
            write(HTTP2Frame(streamID: stream.id, payload: payload))
        case .data(let data):
            if data.endStream { stream.outboundEnded = true }
            let length = data.data.readableBytes
            guard length > 0 else {
                write(HTTP2Frame(streamID: stream.id, payload: payload))
                return
            }
            // Counted until written to the socket (or dropped with the stream): the stream's backpressure.
            stream.pendingOutbound += length
            let promise = context.eventLoop.makePromise(of: Void.self)
            promise.futureResult.assumeIsolated().whenComplete { _ in
                let wasWritable = stream.isWritable
                stream.pendingOutbound -= length
                if !wasWritable, stream.isWritable { stream.owner?.upstreamWritabilityChanged(writable: true) }
            }
            context.write(wrapOutboundOut(HTTP2Frame(streamID: stream.id, payload: payload)), promise: promise)
        default:
            write(HTTP2Frame(streamID: stream.id, payload: payload))
        }
    }

    func flush() {
        context?.flush()
    }

    fileprivate func cancel(_ stream: H2UpstreamStream) {
        guard !stream.isClosed else { return }
        // Both ends ended and nothing of ours still buffered in NIOHTTP2 (an END_STREAM behind DATA the
        // endpoint's window holds back has not left yet): NIOHTTP2 closed the stream, and a reset would only
        // be noise for the endpoint. Otherwise it is still open there, and holds one of its stream slots.
        let open = !(stream.inboundEnded && stream.outboundEnded && stream.pendingOutbound == 0)
        forget(stream)
        if open {
            write(HTTP2Frame(streamID: stream.id, payload: .rstStream(.cancel)))
            context?.flush()
        }
    }

    /// Gives the endpoint back what the stream took, once at least `threshold` bytes, while its owner can
    /// take more.
    fileprivate func giveBackWindow(_ stream: H2UpstreamStream, atLeast threshold: Int) {
        guard !stream.isClosed, !stream.inboundEnded, stream.unacknowledged >= threshold,
            stream.owner?.isWritable ?? false
        else { return }
        let increment = stream.unacknowledged
        stream.unacknowledged = 0
        write(HTTP2Frame(streamID: stream.id, payload: .windowUpdate(windowSizeIncrement: increment)))
        flushSoon()
    }

    /// Flushes what was written: when the current read completes, or now outside a read (a window given back
    /// because the client stream drained must not wait for the endpoint, which waits for it).
    private func flushSoon() {
        if !flushes.flushAfterRead(self) { context?.flush() }
    }

    /// The stream is over here: forgotten, its slot given back (once: only an open stream is forgotten);
    /// the owner is not called.
    private func forget(_ stream: H2UpstreamStream) {
        guard !stream.isClosed else { return }
        stream.isClosed = true
        stream.owner = nil
        streams[stream.id] = nil
        pool.streamEnded(on: connection)
    }

    /// The stream ended (reset, closed, or its connection gone): the owner hears why.
    private func end(_ stream: H2UpstreamStream, code: HTTP2ErrorCode?) {
        guard !stream.isClosed else { return }
        let owner = stream.owner
        forget(stream)
        // A stream above the last one of the endpoint's GOAWAY was never processed.
        let refused = code == .refusedStream || connection.goAwayLastStreamID.map { stream.id > $0 } ?? false
        owner?.upstreamClosed(code, refused: refused)
    }

    private func write(_ frame: HTTP2Frame) {
        context?.write(wrapOutboundOut(frame), promise: nil)
    }

    /// Called by the pool's sweeper (every 30 s) while streams are open: a connection that read nothing for
    /// `checksBeforePing` checks gets a PING; one that then reads nothing for `checksForAck` more checks (not
    /// even the PING's ACK) is closed, so its streams end instead of waiting on a peer that is gone.
    func keepAlive() {
        guard let context else { return }
        defer { framesAtLastCheck = framesRead }
        guard framesRead == framesAtLastCheck else {
            silentChecks = 0
            pingSentAt = nil
            return
        }
        silentChecks += 1
        if let sentAt = pingSentAt {
            if silentChecks - sentAt >= Self.checksForAck { context.close(promise: nil) }
        } else if silentChecks >= Self.checksBeforePing {
            pingSentAt = silentChecks
            write(HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: framesRead), ack: false)))
            context.flush()
        }
    }

    // MARK: Inbound

    /// The endpoint's response on `stream` is malformed: the stream's protocol error, as NIOHTTP2 would have
    /// made it, and its owner told.
    private func malformed(_ stream: H2UpstreamStream) {
        let owner = stream.owner
        cancelWith(stream, code: .protocolError)
        owner?.upstreamClosed(.protocolError, refused: false)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        flushes.readBegan()
        framesRead &+= 1
        guard frame.streamID != .rootStream else {
            connectionFrame(frame.payload)
            return
        }
        // Late frames of a stream ended here are dropped (NIOHTTP2 accounts their flow control).
        guard let stream = streams[frame.streamID] else { return }
        var payload = frame.payload
        switch frame.payload {
        case .headers(var headers):
            // NIOHTTP2 does not validate header blocks on upstream connections (see `isValidFromUpstream`):
            // a malformed one is this stream's protocol error, as NIOHTTP2 would have made it.
            // So is a body short of its content-length (RFC 9113 §8.1.1; `H2Headers.DeclaredLength`).
            var facts = H2Headers.ResponseFacts()
            guard
                H2Headers.isValidFromUpstream(
                    headers.headers,
                    trailers: stream.finalHeadSeen,
                    endStream: headers.endStream,
                    facts: &facts
                )
            else {
                malformed(stream)
                return
            }
            if !stream.finalHeadSeen, let status = facts.status, status >= 200 {
                stream.finalHeadSeen = true
                stream.finalStatus = status
                // A HEAD request's or a 304's head describes a body that is not sent (RFC 9110 §8.6).
                let bodiless = status == 304 || stream.owner?.isHead == true
                stream.body = H2Headers.DeclaredLength(bodiless ? 0 : facts.contentLength)
            }
            if facts.hasConnectionSpecific {
                headers.headers = H2Headers.responseForClient(headers.headers)
                payload = .headers(headers)
            }
            if headers.endStream {
                guard stream.body.mayEnd else {
                    malformed(stream)
                    return
                }
                stream.inboundEnded = true
            }
        case .data(let data):
            let length = data.data.readableBytes
            guard stream.body.take(length), !data.endStream || stream.body.mayEnd else {
                malformed(stream)
                return
            }
            stream.unacknowledged += length + (data.paddingBytes.map { $0 + 1 } ?? 0)
            if data.endStream { stream.inboundEnded = true }
        case .rstStream(let code):
            end(stream, code: code)
            return
        default:
            return
        }
        if !stream.touched {
            stream.touched = true
            touched.append(stream)
        }
        stream.owner?.upstreamFrame(payload)
        giveBackWindow(stream, atLeast: streamWindow / 2)
    }

    /// Resets the stream with `code` and forgets it (a malformed frame from the endpoint).
    private func cancelWith(_ stream: H2UpstreamStream, code: HTTP2ErrorCode) {
        guard !stream.isClosed else { return }
        forget(stream)
        write(HTTP2Frame(streamID: stream.id, payload: .rstStream(code)))
        flushSoon()
    }

    private func connectionFrame(_ payload: HTTP2Frame.FramePayload) {
        switch payload {
        case .settings(.settings(let settings)):
            for setting in settings where setting.parameter == .maxConcurrentStreams {
                pool.maxConcurrentStreamsChanged(connection, to: setting.value)
            }
            connection.becameReady()
        case .goAway(let lastStreamID, _, _):
            pool.goAwayReceived(connection, lastStreamID: lastStreamID)
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !touched.isEmpty {
            let flushed = touched
            touched.removeAll(keepingCapacity: true)
            for stream in flushed {
                stream.touched = false
                if let target = stream.owner?.clientFlushTarget { flushes.insert(target) }
            }
        }
        flushes.readEnded()
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        let kind = H2Event(event)
        switch kind {
        case .streamClosed(let id, let reason):
            if let stream = streams[id] { end(stream, code: reason) }
        case .connectionWindow(let inbound):
            if let update = H2Event.connectionWindowUpdate(inbound: inbound, target: connectionWindow) {
                write(update)
                flushes.insert(self)
            }
        case .quiesce, .stream, .other:
            break
        }
        if kind.isForwarded { context.fireUserInboundEventTriggered(event) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            for stream in streams.values where stream.isWritable {
                stream.owner?.upstreamWritabilityChanged(writable: true)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.failIfNotReady(H2UpstreamPool.Failure.closed)
        pool.connectionClosed(connection)
        for stream in streams.values { end(stream, code: nil) }
        forgetTouched()
        context.fireChannelInactive()
    }

    /// One stream's error (NIOHTTP2 resets the stream) ends that stream only; an error that ends the
    /// connection closes it; anything else stops new streams here while the others finish.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let streamError = error as? NIOHTTP2Errors.StreamError {
            // A frame of ours NIOHTTP2 refused (it resets only the streams whose inbound frames fail): reset
            // the stream here, so it does not stay open at the endpoint after its slot is given back.
            if let stream = streams[streamError.streamID] {
                let owner = stream.owner
                cancelWith(stream, code: .internalError)
                owner?.upstreamClosed(.internalError, refused: false)
            }
            return
        }
        if H2ConnectionGuard.endsConnection(error) || error is NIOHTTP2Errors.ActivationError {
            context.close(promise: nil)
        } else {
            pool.stopNewStreams(on: connection)
        }
    }
}

@available(*, unavailable)
extension H2UpstreamConnectionHandler: Sendable {}
