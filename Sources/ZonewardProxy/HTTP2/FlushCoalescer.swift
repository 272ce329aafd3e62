import NIOCore

/// Coalesces the flushes of one HTTP/2 connection into one per event-loop tick, and its small writes into
/// one buffer.
///
/// A stream's frames are flushed by the stream that wrote them, and many streams of a client connection
/// are answered while the *upstream* connection reads (and the other way round), where NIOHTTP2 does not
/// hold flushes back (it does only within its own connection's read). Without this, each stream cost a
/// write system call on each connection: about two writes per request at 64 concurrent streams
/// (strace). Here a flush is deferred to a task run after the event loop has handled every ready event,
/// so the frames of all streams answered in that tick leave in one writev; the added latency is the rest
/// of the tick. Sits between the socket (or TLS) and NIOHTTP2Handler.
///
/// NIOHTTP2 writes every frame as its own buffer (a DATA frame as two: its 9-byte header, then the
/// payload), about four per relayed stream. Each write down the pipeline costs NIO a pending-write entry
/// and an iovec, and NIOHTTP2 a fresh buffer for the next frame, since the one it wrote is still held.
/// Buffers of up to `copyLimit` bytes written without a promise are therefore copied into one buffer
/// that goes down as a single write when the tick's flush runs (or before any write that is not copied,
/// so the order on the wire is kept). Callgrind: 159,343 → 152,444 instructions per proxied stream (h2load,
/// 64-byte bodies).
///
/// On client connections it also closes the connection once NIOHTTP2 has written a GOAWAY with an error code
/// (`watchesGoAway`). NIOHTTP2 answers every connection error so (a frame on an idle stream, a stream past
/// the limit, a bad SETTINGS value, …) but leaves closing the connection to its user, and reports the error
/// as one of many types, some of which are also one stream's; RFC 9113 §5.4.1 says to close after such a
/// GOAWAY. (A handler of its own for this cost a pipeline hop on each of the three writes of a relayed
/// stream: about 4,800 of 141,000 instructions per stream.) Closures for abuse are counted by
/// `H2ConnectionGuard`.
final class FlushCoalescer: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    /// Larger buffers (body DATA payloads) are passed on as they are: copying them would cost more than
    /// the write it saves.
    static let copyLimit = 1024
    /// The gathered bytes go down once they reach this, without waiting for the flush.
    static let gatherLimit = 64 * 1024

    private var scheduled = false
    private var context: ChannelHandlerContext?
    private var gathered: ByteBuffer?
    /// Reads the frames written, to find a GOAWAY with an error code; nil when not watching.
    private var goAways: H2OutboundFrameScanner?
    /// Such a GOAWAY was written: the connection closes once it is on the wire.
    private var closing = false

    /// - Parameter watchesGoAway: close the connection after a GOAWAY with an error code is written.
    init(watchesGoAway: Bool = false) {
        goAways = watchesGoAway ? H2OutboundFrameScanner() : nil
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // What was gathered, and a flush scheduled but not yet run, go through now, before the handler is
        // gone.
        flushNow(context)
        self.context = nil
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let io = unwrapOutboundIn(data)
        if goAways != nil, !closing, endsWithError(io) {
            closing = true
            writeGathered(context: context)
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.cascade(to: promise)
            // Closed through the whole pipeline, so this handler's own `close` sends what was gathered since.
            let channel = context.channel
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
            context.write(data, promise: written)
            return
        }
        if promise == nil, case .byteBuffer(var buffer) = io, buffer.readableBytes <= Self.copyLimit {
            if gathered == nil {
                gathered = context.channel.allocator.buffer(capacity: 4096)
            }
            gathered?.writeBuffer(&buffer)
            if let size = gathered?.readableBytes, size >= Self.gatherLimit {
                writeGathered(context: context)
            }
            return
        }
        writeGathered(context: context)
        context.write(data, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        guard !scheduled else { return }
        scheduled = true
        context.eventLoop.assumeIsolated().execute {
            guard self.scheduled, let context = self.context else { return }
            self.flushNow(context)
        }
    }

    /// What was gathered goes down, and the flush held back (if one is) goes through.
    private func flushNow(_ context: ChannelHandlerContext) {
        writeGathered(context: context)
        if scheduled {
            scheduled = false
            context.flush()
        }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        // Whatever was written goes out before the close (a GOAWAY, the last frames of a stream).
        flushNow(context)
        context.close(mode: mode, promise: promise)
    }

    /// Whether `io` completes a GOAWAY with an error code (NO_ERROR is a graceful shutdown).
    private func endsWithError(_ io: IOData) -> Bool {
        let codes: [UInt32]
        switch io {
        case .byteBuffer(let buffer): codes = goAways?.scan(buffer) ?? []
        case .fileRegion(let region):
            goAways?.skip(region.readableBytes)
            codes = []
        }
        return codes.contains { $0 != 0 }
    }

    private func writeGathered(context: ChannelHandlerContext) {
        guard let buffer = gathered else { return }
        gathered = nil
        context.write(wrapOutboundOut(.byteBuffer(buffer)), promise: nil)
    }
}

@available(*, unavailable)
extension FlushCoalescer: Sendable {}
