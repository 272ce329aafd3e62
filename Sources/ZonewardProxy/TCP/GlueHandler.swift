import NIOCore

/// Relays bytes between two channels on one event loop, the pattern of swift-nio-examples' connect-proxy:
/// reads on one side only while the other is writable, and propagates half-close and errors. A pair
/// shares one `IdleWatch`: no byte either way for the idle timeout closes both sides.
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    /// Bytes this side received, for metrics.
    private(set) var bytesReceived = 0
    private let idle: IdleWatch
    /// Set on the side that runs the shared idle watch.
    private let idleTimeout: TimeAmount?

    private init(idle: IdleWatch, idleTimeout: TimeAmount?) {
        self.idle = idle
        self.idleTimeout = idleTimeout
    }

    /// Two handlers glued to each other: add the first to the client's channel, the second to the other.
    ///
    /// - Parameter idleTimeout: no byte either way for this long closes both; nil never.
    static func matchedPair(idleTimeout: Duration? = nil) -> (GlueHandler, GlueHandler) {
        let idle = IdleWatch()
        let first = GlueHandler(idle: idle, idleTimeout: idleTimeout.map { TimeAmount($0) })
        let second = GlueHandler(idle: idle, idleTimeout: nil)
        first.partner = second
        second.partner = first
        return (first, second)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let idleTimeout {
            // The watch notices idleness within one to two periods.
            idle.start(on: context.eventLoop, period: .nanoseconds(idleTimeout.nanoseconds / 2)) { [self] in
                partner?.partnerCloseFull()
                self.context?.close(promise: nil)
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if idleTimeout != nil { idle.stop() }
        self.context = nil
        partner = nil
    }

    private func partnerWrite(_ data: NIOAny) {
        context?.write(data, promise: nil)
    }

    private func partnerFlush() {
        context?.flush()
    }

    private func partnerWriteEOF() {
        context?.close(mode: .output, promise: nil)
    }

    private func partnerCloseFull() {
        context?.close(promise: nil)
    }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    private var partnerWritable: Bool {
        context?.channel.isWritable ?? false
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        idle.touch()
        bytesReceived += unwrapInboundIn(data).readableBytes
        partner?.partnerWrite(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if idleTimeout != nil { idle.stop() }
        partner?.partnerCloseFull()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            // Half-close: the peer finished sending; pass that on and keep the other direction open.
            partner?.partnerWriteEOF()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        partner?.partnerCloseFull()
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if let partner, partner.partnerWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }
}

@available(*, unavailable)
extension GlueHandler: Sendable {}
