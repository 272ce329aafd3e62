import NIOCore
import NIOHTTP2

/// The client end of a proxied stream, as the stream's owner (`H2StreamProxy`) sees it: a stream of an
/// HTTP/2 client connection (`H2ClientStream`), or one HTTP/1.1 exchange (`H1ToH2Adapter`).
protocol H2ClientSide: AnyObject {
    /// Sends a frame of the response to the client (flushed by `flush`).
    func write(_ payload: HTTP2Frame.FramePayload)
    func flush()
    /// The client takes more of the response: while false, the upstream stream is not read.
    var isWritable: Bool { get }
    /// The owner takes more of the request again (`H2ClientStreamOwner.takesMore`): read on, or give the
    /// client back its stream window.
    func resumeReading()
    /// The client's connection, for a flush that waits for the end of a read elsewhere (`H2FlushSet`).
    var flushTarget: any H2Flushable { get }
    /// Flushes `target` when the read of the client's connection in progress completes, with the other
    /// connections that read wrote to; false when no read is in progress (the caller flushes now).
    func flushAfterRead(_ target: any H2Flushable) -> Bool
}

/// A connection whose flush can wait for the end of a read in progress on another connection.
protocol H2Flushable: AnyObject {
    func flush()
}

/// The connections to flush when the current read of a connection completes, each once, however many of
/// its streams the read relayed frames to (one NIOHTTP2 flush per connection and read instead of one per
/// stream: 3 per proxied stream before, in `PROTO=h2 bench/callgrind-proxy.sh`). Each relay handler keeps
/// one, and tells it when its connection's reads begin and end.
///
/// A class, not a struct in its handler: a flush runs code that may use the set again while `flushAll` is
/// running (NIOHTTP2 closing a stream, the stream's end closing a drained upstream connection, whose
/// `channelInactive` flushes its own set), which would overlap an access to a stored struct.
final class H2FlushSet {
    private var targets: [any H2Flushable] = []
    /// A read of the handler's connection is being handled (from its first `channelRead` to its end).
    private var isReading = false

    func insert(_ target: any H2Flushable) {
        for known in targets where known === target { return }
        targets.append(target)
    }

    /// A read of the connection began: `flushAfterRead` holds flushes back until it ends.
    func readBegan() {
        isReading = true
    }

    /// Flushes `target` when the read in progress ends, with the other connections that read wrote to;
    /// false when no read is in progress (the caller flushes now).
    func flushAfterRead(_ target: any H2Flushable) -> Bool {
        guard isReading else { return false }
        insert(target)
        return true
    }

    /// The read ended (or the connection closed during it): over before the flushes, so that a stream
    /// opened while they run (a retry) flushes its own; then each connection is flushed once.
    func readEnded() {
        isReading = false
        flushAll()
    }

    /// Flushes each connection once, and what flushing them inserted, until none is left.
    func flushAll() {
        while !targets.isEmpty {
            let due = targets
            targets = []
            for target in due { target.flush() }
        }
    }
}

extension H2ClientSide {
    /// The proxy's own answer (`H2Headers.localResponse`) with a short text body naming the cause, or the
    /// head alone to HEAD (whose response carries no body, whatever its content-length says). Not flushed.
    func writeLocalResponse(status: Int, cause: String, isHead: Bool) {
        let body = "\(status): \(cause)\n"
        let headers = H2Headers.localResponse(status: status, cause: cause, bodyLength: body.utf8.count)
        if isHead {
            write(.headers(.init(headers: headers, endStream: true)))
        } else {
            write(.headers(.init(headers: headers)))
            write(.data(.init(data: .byteBuffer(ByteBuffer(string: body)), endStream: true)))
        }
    }
}

/// What a client stream's frames are handed to (`H2StreamProxy`; a checking stand-in in the HTTP/2 fuzzer).
protocol H2ClientStreamOwner: AnyObject {
    /// A frame of the client's stream: HEADERS, DATA, or RST_STREAM.
    func receive(_ payload: HTTP2Frame.FramePayload)
    /// The read that brought frames for this stream is over.
    func clientReadComplete()
    /// As `clientReadComplete()`; a connection to flush goes into `flushes`, flushed once after every stream
    /// of the read had its turn.
    func clientReadComplete(into flushes: H2FlushSet)
    /// The stream is closed (ended both ways, reset either way, or its connection gone): no more calls.
    func clientClosed()
    /// The client side's `isWritable` may have changed.
    func clientWritabilityChanged()
    /// Whether the request's next bytes can go on now; while false the stream's window is not given back.
    var takesMore: Bool { get }
}

extension H2ClientStreamOwner {
    func clientReadComplete(into flushes: H2FlushSet) {
        clientReadComplete()
    }
}

/// One stream of an HTTP/2 client connection: an ID and a few counters. `H2ClientStreamsHandler` hands its
/// frames to its owner and writes the owner's frames, with the flow control a child channel had:
/// - in: the client's DATA is given back (WINDOW_UPDATE) once half the stream's window is taken and only
///   while the owner takes more, so a stream holds at most one window the upstream has not taken;
/// - out: DATA written and not yet on the wire (NIOHTTP2 holds it while the client's window is shut) is
///   counted; above `outboundHighWater` the stream is not writable, and the upstream stream is not read.
final class H2ClientStream: H2ClientSide {
    let id: HTTP2StreamID
    /// Strong: an owner that still holds its stream keeps the handler; the handler forgets every stream when
    /// its connection closes.
    let handler: H2ClientStreamsHandler
    fileprivate(set) var owner: (any H2ClientStreamOwner)?
    /// DATA bytes taken from the client and not yet given back by WINDOW_UPDATE.
    fileprivate var unacknowledged = 0
    fileprivate var inboundEnded = false
    /// The request body still owed by its `content-length`.
    fileprivate var body = H2Headers.DeclaredLength(nil)
    /// DATA bytes written to NIOHTTP2 and not yet written to the socket, and DATA frames (empty ones too).
    fileprivate var pendingOutbound = 0
    fileprivate var pendingFrames = 0
    /// RST_STREAM(NO_ERROR) the owner wrote while DATA was still held back: sent once that DATA is out.
    fileprivate var heldReset = false
    /// Frames came in this read: the owner hears when the read completes.
    fileprivate var touched = false
    fileprivate(set) var isClosed = false

    /// Above this many DATA bytes not yet on the wire, the stream is not writable.
    static let outboundHighWater = 64 << 10

    fileprivate init(id: HTTP2StreamID, handler: H2ClientStreamsHandler) {
        self.id = id
        self.handler = handler
    }

    func write(_ payload: HTTP2Frame.FramePayload) {
        handler.send(payload, on: self)
    }

    func flush() {
        handler.flush()
    }

    var isWritable: Bool {
        !isClosed && pendingOutbound < Self.outboundHighWater && handler.isChannelWritable
    }

    func resumeReading() {
        handler.giveBackWindow(self, atLeast: 1)
    }

    var flushTarget: any H2Flushable { handler }

    func flushAfterRead(_ target: any H2Flushable) -> Bool {
        handler.flushAfterRead(target)
    }
}

@available(*, unavailable)
extension H2ClientStream: Sendable {}

/// The last HTTP/2 handler of a client connection: NIOHTTP2 runs without a stream multiplexer, and each
/// stream the client opens gets an owner made by `makeOwner` (`H2StreamProxy`, or `H2ToH1Stream` for an
/// `http1` service), called directly: no child channel, pipeline, promise and activation per stream
/// (`HTTP2StreamChannel.configure` alone was about a third of a proxied stream's instructions in
/// `PROTO=h2 bench/callgrind-proxy.sh`).
///
/// It keeps what the multiplexer did: the stream and connection receive windows (given back as owners take
/// what arrived) and each stream's writability. It checks each header block the client sends
/// (`H2Headers.isValidFromClient`, in place of NIOHTTP2's validation, which this connection runs without):
/// a malformed one resets its stream (PROTOCOL_ERROR), and more than `H2Limits.maxMalformedBlocks` in
/// `malformedWindow` end the connection as NIOHTTP2's own stream-error limit would. It also holds each
/// request's DATA to its content-length (`H2Headers.DeclaredLength`, in place of NIOHTTP2's check). NIOHTTP2
/// still enforces the concurrent-stream limit, the header list size, the flood and rapid-reset limits and
/// every frame's validity.
///
/// It also keeps the connection (`Keeping`), as `NIOHTTP2ServerConnectionManagementHandler` did: a
/// connection with no stream for `maxIdle` gets GOAWAY and is closed; one that reads nothing for
/// `pingInterval` is sent a PING, and closed if nothing comes within `ackTimeout`; `ChannelShouldQuiesceEvent`
/// starts a graceful shutdown (GOAWAY with the highest stream ID and a PING; on its ACK, or `ackTimeout`
/// later, GOAWAY with the last stream opened; the connection closes when its streams are done, or
/// `maxGrace` after). That handler restarted a timer on every read and cancelled one on every stream and
/// cast every event it passed along (about 5,000 instructions per proxied stream); here a read bumps a
/// counter, and one ticker per connection, every quarter of the shortest of those durations, looks at it.
final class H2ClientStreamsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let makeOwner: (H2ClientStream) -> any H2ClientStreamOwner
    private let streamWindow: Int
    private let connectionWindow: Int
    private var context: ChannelHandlerContext?
    private var streams = H2StreamTable<H2ClientStream>()
    /// The highest stream the client opened: a HEADERS frame above it opens a new one.
    private var lastStreamID = HTTP2StreamID(0)
    /// Streams that got frames in the current read.
    private var touched: [H2ClientStream] = []
    /// The upstream connections the streams of this read wrote to, flushed once each when it completes.
    private let flushes = H2FlushSet()
    /// Malformed header blocks in the current window, and when it began.
    private var malformed = 0
    private var malformedSince = NIODeadline.uptimeNanoseconds(0)

    /// How the connection is kept: idle timeout, keepalive and graceful shutdown (nil: not kept).
    struct Keeping {
        var maxIdle: TimeAmount
        var pingInterval: TimeAmount
        var ackTimeout: TimeAmount
        var maxGrace: TimeAmount

        /// A quarter of the shortest duration, so each is noticed within a quarter more.
        var tick: TimeAmount {
            max(.milliseconds(100), .nanoseconds(min(maxIdle, pingInterval, ackTimeout).nanoseconds / 4))
        }
    }

    private enum Shutdown: Equatable {
        case running
        /// GOAWAY with the highest stream ID and a PING went out at this time.
        case announced(NIODeadline)
        /// GOAWAY with the last stream opened went out: closed when no stream is left, or at this deadline.
        case final(NIODeadline)
    }

    private let keeping: Keeping?
    private var ticker: RepeatedTask?
    /// Frames read so far, and at the last tick: a read costs an increment, not a clock reading.
    private var framesRead: UInt64 = 0
    private var framesAtTick: UInt64 = 0
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)
    private var idleSince: NIODeadline?
    private var pingSentAt: NIODeadline?
    private var shutdown = Shutdown.running
    private static let keepalivePing = HTTP2PingData(withInteger: 0x5a57_4b41)
    private static let shutdownPing = HTTP2PingData(withInteger: 0x5a57_5348)

    init(
        streamWindow: Int = H2Limits.streamWindow,
        connectionWindow: Int = H2Limits.connectionWindow,
        keeping: Keeping? = nil,
        makeOwner: @escaping (H2ClientStream) -> any H2ClientStreamOwner
    ) {
        self.streamWindow = streamWindow
        self.connectionWindow = connectionWindow
        self.keeping = keeping
        self.makeOwner = makeOwner
    }

    var isChannelWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { startKeeping(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startKeeping(context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        ticker?.cancel()
        ticker = nil
        forgetTouched()
    }

    /// A read that closed the connection gets no `channelReadComplete`: the streams it touched (which hold
    /// this handler) must not stay listed here.
    private func forgetTouched() {
        for stream in touched { stream.touched = false }
        touched.removeAll()
        flushes.readEnded()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        framesRead &+= 1
        flushes.readBegan()
        // Connection frames (SETTINGS, PING, GOAWAY, WINDOW_UPDATE) are NIOHTTP2's business, but for the
        // ACK of the graceful shutdown's PING.
        guard frame.streamID != .rootStream else {
            if case .ping(let data, ack: true) = frame.payload, data == Self.shutdownPing,
                case .announced = shutdown
            {
                finalGoAway(context)
            }
            return
        }
        let stream: H2ClientStream
        var opened = false
        if let known = streams[frame.streamID] {
            stream = known
        } else if case .headers(let headers) = frame.payload, frame.streamID > lastStreamID {
            // NIOHTTP2 accepted it: a new stream, within the concurrent-stream limit.
            lastStreamID = frame.streamID
            var declared: Int?
            guard H2Headers.isValidFromClient(headers.headers, trailers: false, contentLength: &declared),
                !headers.endStream || (declared ?? 0) == 0
            else {
                refuseMalformed(frame.streamID, context: context)
                return
            }
            stream = H2ClientStream(id: frame.streamID, handler: self)
            stream.body = H2Headers.DeclaredLength(declared)
            opened = true
            // Not idle: the next tick that finds no stream starts the idle time afresh.
            idleSince = nil
            streams[frame.streamID] = stream
            stream.owner = makeOwner(stream)
        } else {
            // Late frames of a stream closed here (NIOHTTP2 accounts their flow control), or PRIORITY and
            // WINDOW_UPDATE for one never opened.
            return
        }
        switch frame.payload {
        case .headers(let headers):
            // A header block after the one that opened the stream is its trailers.
            if !opened, !H2Headers.isValidFromClient(headers.headers, trailers: true) || !stream.body.mayEnd {
                // Malformed trailers, or a body short of its content-length, make the request malformed (RFC
                // 9113 §8.1.1): reset, and its owner told.
                refuseMalformed(stream.id, context: context)
                end(stream)
                return
            }
            if headers.endStream { stream.inboundEnded = true }
        case .data(let data):
            let length = data.data.readableBytes
            guard stream.body.take(length), !data.endStream || stream.body.mayEnd else {
                // More or less DATA than the content-length said: malformed, as above.
                refuseMalformed(stream.id, context: context)
                end(stream)
                return
            }
            stream.unacknowledged += length + (data.paddingBytes.map { $0 + 1 } ?? 0)
            if data.endStream { stream.inboundEnded = true }
        case .rstStream:
            // Closed by NIOHTTP2 too: its StreamClosedEvent follows and forgets the stream. No window back.
            stream.inboundEnded = true
        default:
            // PRIORITY (ignored, RFC 9113 §5.3.2) and the stream's WINDOW_UPDATE (NIOHTTP2 sends what it held).
            return
        }
        if !stream.touched {
            stream.touched = true
            touched.append(stream)
        }
        stream.owner?.receive(frame.payload)
        giveBackWindow(stream, atLeast: streamWindow / 2)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !touched.isEmpty {
            let read = touched
            touched.removeAll(keepingCapacity: true)
            for stream in read {
                stream.touched = false
                stream.owner?.clientReadComplete(into: flushes)
            }
        }
        flushes.readEnded()
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        let kind = H2Event(event)
        switch kind {
        case .streamClosed(let id, _):
            if let stream = streams[id] { end(stream) }
        case .connectionWindow(let inbound):
            if let update = H2Event.connectionWindowUpdate(inbound: inbound, target: connectionWindow) {
                write(update)
                flush()
            }
        case .quiesce:
            announceShutdown(context)
        case .stream, .other:
            break
        }
        if kind.isForwarded { context.fireUserInboundEventTriggered(event) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            for stream in streams.values where stream.isWritable {
                stream.owner?.clientWritabilityChanged()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    /// NIOHTTP2 refused a frame an owner wrote (DATA past a HEAD response's zero length, …): the stream is
    /// reset, so it does not stay open holding one of the client's stream slots. Connection errors go on to
    /// `H2ConnectionGuard`.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let streamError = error as? NIOHTTP2Errors.StreamError, let stream = streams[streamError.streamID] {
            write(HTTP2Frame(streamID: stream.id, payload: .rstStream(.internalError)))
            context.flush()
            end(stream)
            return
        }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        ticker?.cancel()
        ticker = nil
        for stream in streams.values { end(stream) }
        forgetTouched()
        context.fireChannelInactive()
    }

    // MARK: Keeping the connection

    private func startKeeping(_ context: ChannelHandlerContext) {
        guard let keeping, ticker == nil else { return }
        lastActivity = context.eventLoop.now
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        ticker = context.eventLoop.scheduleRepeatedTask(initialDelay: keeping.tick, delay: keeping.tick) { _ in
            bound.value.tick()
        }
    }

    private func tick() {
        guard let keeping, let context else { return }
        let now = context.eventLoop.now
        if framesRead != framesAtTick {
            framesAtTick = framesRead
            lastActivity = now
            pingSentAt = nil
        }
        switch shutdown {
        case .final(let deadline):
            if now >= deadline { context.close(promise: nil) }
            return
        case .announced(let at):
            // No ACK for the PING: the client had its time to stop opening streams.
            if now - at >= keeping.ackTimeout { finalGoAway(context) }
            return
        case .running:
            break
        }
        if streams.isEmpty {
            let since = idleSince ?? now
            idleSince = since
            if now - since >= keeping.maxIdle {
                // As a shutdown: a request the client sends meanwhile is still taken, not lost to a close.
                announceShutdown(context)
                return
            }
        } else {
            idleSince = nil
        }
        if let sentAt = pingSentAt {
            // A client that reads nothing, not even a PING.
            if now - sentAt >= keeping.ackTimeout { context.close(promise: nil) }
        } else if now - lastActivity >= keeping.pingInterval {
            pingSentAt = now
            write(HTTP2Frame(streamID: .rootStream, payload: .ping(Self.keepalivePing, ack: false)))
            context.flush()
        }
    }

    /// Shutting down: GOAWAY with the highest stream ID (streams the client opens before it hears it are
    /// still taken), and a PING whose ACK says it heard it.
    private func announceShutdown(_ context: ChannelHandlerContext) {
        guard shutdown == .running else { return }
        shutdown = .announced(context.eventLoop.now)
        write(
            HTTP2Frame(
                streamID: .rootStream,
                payload: .goAway(lastStreamID: .maxID, errorCode: .noError, opaqueData: nil)
            )
        )
        write(HTTP2Frame(streamID: .rootStream, payload: .ping(Self.shutdownPing, ack: false)))
        context.flush()
        if keeping == nil { finalGoAway(context) }
    }

    /// GOAWAY with the last stream opened: no stream above it is taken. Closes once the streams are done.
    private func finalGoAway(_ context: ChannelHandlerContext) {
        guard case .announced = shutdown else { return }
        shutdown = .final(context.eventLoop.now + (keeping?.maxGrace ?? .seconds(30)))
        write(
            HTTP2Frame(
                streamID: .rootStream,
                payload: .goAway(lastStreamID: lastStreamID, errorCode: .noError, opaqueData: nil)
            )
        )
        context.flush()
        closeIfDone()
    }

    /// After the final GOAWAY, the last stream's end closes the connection: on the next loop tick, so the
    /// frame that ended it is flushed first.
    private func closeIfDone() {
        guard case .final = shutdown, streams.isEmpty, let context else { return }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.execute { bound.value.close(promise: nil) }
    }

    // MARK: Streams

    /// The stream is closed: its owner hears it once, and it is forgotten.
    private func end(_ stream: H2ClientStream) {
        guard !stream.isClosed else { return }
        stream.isClosed = true
        streams[stream.id] = nil
        let owner = stream.owner
        stream.owner = nil
        owner?.clientClosed()
        closeIfDone()
    }

    /// A malformed header block: its stream is reset (PROTOCOL_ERROR, RFC 9113 §8.1.1), and too many end
    /// the connection (GOAWAY ENHANCE_YOUR_CALM; `H2ConnectionGuard` closes it and counts it "misbehaving").
    private func refuseMalformed(_ id: HTTP2StreamID, context: ChannelHandlerContext) {
        write(HTTP2Frame(streamID: id, payload: .rstStream(.protocolError)))
        let now = context.eventLoop.now
        if now - malformedSince > H2Limits.malformedWindow {
            malformedSince = now
            malformed = 0
        }
        malformed += 1
        guard malformed > H2Limits.maxMalformedBlocks else {
            context.flush()
            return
        }
        write(
            HTTP2Frame(
                streamID: .rootStream,
                payload: .goAway(lastStreamID: lastStreamID, errorCode: .enhanceYourCalm, opaqueData: nil)
            )
        )
        context.flush()
        context.fireErrorCaught(NIOHTTP2Errors.excessiveStreamErrors())
    }

    fileprivate func send(_ payload: HTTP2Frame.FramePayload, on stream: H2ClientStream) {
        guard !stream.isClosed, let context else { return }
        switch payload {
        case .data(let data) where data.endStream && stream.inboundEnded:
            // The stream's last frame, and the client's side has ended: no reset can wait for it (one waits
            // only while a client still sends) and its writability no longer matters. Written without the
            // promise, future and callback below: about 6,000 of 167,000 instructions per proxied stream.
            write(HTTP2Frame(streamID: stream.id, payload: payload))
        case .data(let data):
            // Counted until written to the socket (or dropped with the stream): the stream's backpressure.
            let length = data.data.readableBytes
            stream.pendingOutbound += length
            stream.pendingFrames += 1
            let promise = context.eventLoop.makePromise(of: Void.self)
            promise.futureResult.assumeIsolated().whenComplete { result in
                let wasWritable = stream.isWritable
                stream.pendingOutbound -= length
                stream.pendingFrames -= 1
                if case .failure = result {
                    // Dropped: the stream was reset (by the client, or for the frame NIOHTTP2 refused) and
                    // needs no reset from here (none answers a reset, RFC 9113 §5.4.2).
                    stream.heldReset = false
                } else if stream.pendingFrames == 0, stream.heldReset {
                    stream.heldReset = false
                    self.send(.rstStream(.noError), on: stream)
                    self.flush()
                }
                if !wasWritable, stream.isWritable { stream.owner?.clientWritabilityChanged() }
            }
            context.write(wrapOutboundOut(HTTP2Frame(streamID: stream.id, payload: payload)), promise: promise)
        case .rstStream(.noError) where stream.pendingFrames > 0:
            // NIOHTTP2 holds DATA until it is flushed and the client's window has room, but a RST_STREAM
            // goes at once and drops what it holds: a response complete while the client still sends would
            // lose its end. The reset waits for the DATA.
            stream.heldReset = true
        default:
            write(HTTP2Frame(streamID: stream.id, payload: payload))
        }
    }

    /// Gives the client back what the stream took, once at least `threshold` bytes, while its owner takes
    /// more.
    fileprivate func giveBackWindow(_ stream: H2ClientStream, atLeast threshold: Int) {
        // Not while a reset waits: the request is not wanted, and a client that holds its own window shut
        // must not be able to keep uploading into nowhere.
        guard !stream.isClosed, !stream.inboundEnded, !stream.heldReset, stream.unacknowledged >= threshold,
            stream.owner?.takesMore ?? false
        else { return }
        let increment = stream.unacknowledged
        stream.unacknowledged = 0
        write(HTTP2Frame(streamID: stream.id, payload: .windowUpdate(windowSizeIncrement: increment)))
        flush()
    }

    /// Flushes what was written. NIOHTTP2 holds a flush back until its read completes, and the flush
    /// coalescer below it until the event-loop tick ends, so the frames of many streams leave in one write.
    func flush() {
        context?.flush()
    }

    /// Flushes `target` when this connection's read in progress completes; false when none is.
    fileprivate func flushAfterRead(_ target: any H2Flushable) -> Bool {
        flushes.flushAfterRead(target)
    }

    private func write(_ frame: HTTP2Frame) {
        context?.write(wrapOutboundOut(frame), promise: nil)
    }
}

extension H2ClientStreamsHandler: H2Flushable {}

@available(*, unavailable)
extension H2ClientStreamsHandler: Sendable {}

/// The NIOHTTP2 events the relay's handlers act on. The type is compared before any cast: a failed `as`
/// cast from `Any` costs a dynamic cast of a few hundred instructions, and most events are neither of
/// these (two failed casts per event and handler were about 3,000 instructions per proxied stream in
/// `PROTO=h2 bench/callgrind-proxy.sh`).
enum H2Event {
    /// A stream closed, with the reset code if it was reset.
    case streamClosed(HTTP2StreamID, HTTP2ErrorCode?)
    /// The connection's receive window changed: its size now.
    case connectionWindow(inbound: Int?)
    /// The proxy is shutting down.
    case quiesce
    /// A stream opened, or a stream's window changed: nothing the relay acts on.
    case stream
    case other

    /// Whether the event goes on down the pipeline. The HTTP/2 ones stop at the relay's handler: nothing
    /// after it reads them (each event forwarded cost a pipeline hop, about six per stream).
    var isForwarded: Bool {
        switch self {
        case .streamClosed, .connectionWindow, .stream: return false
        case .quiesce, .other: return true
        }
    }

    /// The connection's receive window, topped up to `target` once half is taken (the stream windows bound
    /// what any one stream holds), as NIOHTTP2's multiplexer does; late frames of closed streams count. For
    /// both relay handlers: nil while more than half is left.
    static func connectionWindowUpdate(inbound: Int?, target: Int) -> HTTP2Frame? {
        guard let size = inbound, size <= target / 2 else { return nil }
        return HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: target - size))
    }

    @inline(__always)
    init(_ event: Any) {
        let type = ObjectIdentifier(Swift.type(of: event))
        if type == ObjectIdentifier(StreamClosedEvent.self), let closed = event as? StreamClosedEvent {
            self = .streamClosed(closed.streamID, closed.reason)
        } else if type == ObjectIdentifier(NIOHTTP2WindowUpdatedEvent.self),
            let window = event as? NIOHTTP2WindowUpdatedEvent
        {
            self = window.streamID == .rootStream ? .connectionWindow(inbound: window.inboundWindowSize) : .stream
        } else if type == ObjectIdentifier(NIOHTTP2StreamCreatedEvent.self) {
            self = .stream
        } else if type == ObjectIdentifier(ChannelShouldQuiesceEvent.self) {
            self = .quiesce
        } else {
            self = .other
        }
    }
}
