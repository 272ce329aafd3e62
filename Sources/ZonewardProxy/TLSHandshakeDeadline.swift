import NIOCore
import NIOTLS

/// Closes a connection whose TLS handshake has not completed within its deadline.
///
/// It sits in front of NIOSSL's handler, next to the socket: a close issued there reaches the socket at
/// once, while a close sent through NIOSSL in the middle of a handshake waits for the handshake to end,
/// which a stalled client never lets happen. It costs one scheduled task per TLS connection and leaves
/// the pipeline as soon as the handshake completes, so established connections pay nothing.
final class TLSHandshakeDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let timeout: TimeAmount
    private let onTimeout: () -> Void
    private var task: Scheduled<Void>?
    private var context: ChannelHandlerContext?

    /// - Parameter onTimeout: counts the timeout; runs on the channel's event loop.
    init(timeout: TimeAmount, onTimeout: @escaping () -> Void) {
        self.timeout = timeout
        self.onTimeout = onTimeout
    }

    /// The handshake deadline and the observer that ends it: add the first before NIOSSL, the second after.
    static func pair(
        timeout: TimeAmount,
        onTimeout: @escaping () -> Void
    ) -> (
        TLSHandshakeDeadlineHandler, TLSHandshakeObserver
    ) {
        let deadline = TLSHandshakeDeadlineHandler(timeout: timeout, onTimeout: onTimeout)
        return (deadline, TLSHandshakeObserver(deadline: deadline))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { arm(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        task?.cancel()
        task = nil
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    private func arm(_ context: ChannelHandlerContext) {
        guard task == nil else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        task = context.eventLoop.scheduleTask(in: timeout) {
            let handler = bound.value
            guard let context = handler.context else { return }
            handler.onTimeout()
            context.close(promise: nil)
        }
    }

    /// The handshake completed in time: stop the clock and leave the pipeline.
    func handshakeCompleted() {
        task?.cancel()
        task = nil
        guard let context else { return }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

/// Sits after NIOSSL's handler and tells the deadline when the handshake completed, then leaves.
final class TLSHandshakeObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let deadline: TLSHandshakeDeadlineHandler

    init(deadline: TLSHandshakeDeadlineHandler) {
        self.deadline = deadline
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            deadline.handshakeCompleted()
            context.fireUserInboundEventTriggered(event)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

@available(*, unavailable)
extension TLSHandshakeDeadlineHandler: Sendable {}

@available(*, unavailable)
extension TLSHandshakeObserver: Sendable {}
