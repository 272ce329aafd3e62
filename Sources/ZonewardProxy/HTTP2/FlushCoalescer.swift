import NIOCore

/// Coalesces the flushes of one HTTP/2 connection into one per event-loop tick.
///
/// A stream's frames are flushed by the stream that wrote them, and many streams of a client connection
/// are answered while the *upstream* connection reads (and the other way round), where NIOHTTP2 does not
/// hold flushes back (it does only within its own connection's read). Without this, each stream cost a
/// write system call on each connection: about two writes per request at 64 concurrent streams
/// (strace). Here a flush is deferred to a task run after the event loop has handled every ready event,
/// so the frames of all streams answered in that tick leave in one writev; the added latency is the rest
/// of the tick. Sits between the socket (or TLS) and NIOHTTP2Handler.
final class FlushCoalescer: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = NIOAny

    private var scheduled = false
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // A flush scheduled but not yet run goes through now, before the handler is gone.
        if scheduled {
            scheduled = false
            context.flush()
        }
        self.context = nil
    }

    func flush(context: ChannelHandlerContext) {
        guard !scheduled else { return }
        scheduled = true
        context.eventLoop.assumeIsolated().execute {
            guard self.scheduled, let context = self.context else { return }
            self.scheduled = false
            context.flush()
        }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        // Whatever was written goes out before the close (a GOAWAY, the last frames of a stream).
        if scheduled {
            scheduled = false
            context.flush()
        }
        context.close(mode: mode, promise: promise)
    }
}

@available(*, unavailable)
extension FlushCoalescer: Sendable {}
