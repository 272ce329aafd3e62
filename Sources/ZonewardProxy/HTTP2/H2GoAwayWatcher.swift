import NIOCore
import NIOHTTP2

/// Finds GOAWAY frames in the bytes an HTTP/2 endpoint writes, however they are split into writes. Pure.
struct H2OutboundFrameScanner {
    /// The frame header being read (up to 9 bytes).
    private var header: [UInt8] = []
    /// Bytes of the current frame's payload still to come.
    private var payloadLeft = 0
    /// The current frame is a GOAWAY: its first 8 payload bytes (last stream ID, error code) so far.
    private var goAway: [UInt8]?

    /// Takes the next bytes written; returns the error code of each GOAWAY whose code they complete.
    mutating func scan(_ bytes: ByteBufferView) -> [UInt32] {
        var codes: [UInt32] = []
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if payloadLeft == 0 {
                header.append(bytes[index])
                index += 1
                guard header.count == 9 else { continue }
                payloadLeft = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
                goAway = header[3] == 0x7 ? [] : nil
                header.removeAll(keepingCapacity: true)
                continue
            }
            let take = min(payloadLeft, bytes.endIndex - index)
            if var prefix = goAway, prefix.count < 8 {
                prefix.append(contentsOf: bytes[index..<(index + min(take, 8 - prefix.count))])
                goAway = prefix
                if prefix.count == 8 {
                    codes.append(
                        UInt32(prefix[4]) << 24 | UInt32(prefix[5]) << 16 | UInt32(prefix[6]) << 8 | UInt32(prefix[7])
                    )
                }
            }
            payloadLeft -= take
            index += take
        }
        return codes
    }

    /// Bytes written that are not inspected (a file region): skipped as payload.
    mutating func skip(_ count: Int) {
        payloadLeft = max(0, payloadLeft - count)
    }
}

/// Closes a client connection once NIOHTTP2 has written a GOAWAY with an error code. NIOHTTP2 answers every
/// connection error so (a frame on an idle stream, a stream past the limit, a bad SETTINGS value, …) but
/// leaves closing the connection to its user, and reports the error as one of many types, some of which are
/// also one stream's; RFC 9113 §5.4.1 says to close after such a GOAWAY. Sits between NIOHTTP2 and the
/// socket (or TLS). Closures for abuse are counted by `H2ConnectionGuard`.
final class H2GoAwayWatcher: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private var scanner = H2OutboundFrameScanner()
    private var closing = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !closing else {
            context.write(data, promise: promise)
            return
        }
        let codes: [UInt32]
        switch unwrapOutboundIn(data) {
        case .byteBuffer(let buffer): codes = scanner.scan(buffer.readableBytesView)
        case .fileRegion(let region):
            scanner.skip(region.readableBytes)
            codes = []
        }
        guard codes.contains(where: { $0 != 0 }) else {
            context.write(data, promise: promise)
            return
        }
        closing = true
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.cascade(to: promise)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        written.futureResult.whenComplete { _ in bound.value.close(promise: nil) }
        context.write(data, promise: written)
    }
}

@available(*, unavailable)
extension H2GoAwayWatcher: Sendable {}

extension H2ConnectionGuard {
    /// Puts an `H2GoAwayWatcher` between NIOHTTP2 and the socket of this connection.
    static func watchGoAways(_ context: ChannelHandlerContext) {
        let sync = context.pipeline.syncOperations
        guard let http2 = try? sync.context(handlerType: NIOHTTP2Handler.self) else { return }
        try? sync.addHandler(H2GoAwayWatcher(), position: .before(http2.handler))
    }
}
