import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

@testable import ZonewardProxy

/// What NIOHTTP2 reports on a client connection, and what the guard does with it (found by
/// integration/h2-conformance.sh).
@Suite struct H2ConnectionGuardTests {
    /// A stream past SETTINGS_MAX_CONCURRENT_STREAMS: NIOHTTP2 sends GOAWAY PROTOCOL_ERROR, reports the error
    /// and leaves the connection open with its reading stopped at the error. The guard closes it.
    @Test func aStreamPastTheLimitClosesTheConnection() throws {
        let channel = EmbeddedChannel(handler: H2ConnectionGuard())
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.pipeline.fireErrorCaught(NIOHTTP2Errors.maxStreamsViolation())
        #expect(!channel.isActive)
    }

    /// One stream's error leaves the connection open.
    @Test func aStreamErrorDoesNotCloseTheConnection() throws {
        let channel = EmbeddedChannel(handler: H2ConnectionGuard())
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.pipeline.fireErrorCaught(NIOHTTP2Errors.streamClosed(streamID: 1, errorCode: .cancel))
        #expect(channel.isActive)
        _ = try? channel.finish()
    }

    @Test func aMalformedFrameClosesTheConnectionAsMalformed() throws {
        #expect(H2ConnectionGuard.reason(NIOHTTP2Errors.unableToParseFrame()) == "malformed")
        #expect(H2ConnectionGuard.reason(NIOHTTP2Errors.badClientMagic()) == "not-http2")
        // Not a reason to end the upstream pool's connections either.
        #expect(!H2ConnectionGuard.endsConnection(NIOHTTP2Errors.maxStreamsViolation()))
        let channel = EmbeddedChannel(handler: H2ConnectionGuard())
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.pipeline.fireErrorCaught(NIOHTTP2Errors.unableToParseFrame())
        #expect(!channel.isActive)
    }
}

/// Closing a client connection after NIOHTTP2 wrote a GOAWAY with an error code (`FlushCoalescer`'s
/// `watchesGoAway`, reading frames with `H2OutboundFrameScanner`).
@Suite struct H2GoAwayWatchTests {
    func goAway(code: UInt32, lastStream: UInt32 = 0x7FFF_FFFF) -> [UInt8] {
        [0, 0, 8, 7, 0, 0, 0, 0, 0] + withUnsafeBytes(of: lastStream.bigEndian, Array.init)
            + withUnsafeBytes(of: code.bigEndian, Array.init)
    }

    let ping: [UInt8] = [0, 0, 8, 6, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    let data: [UInt8] = [0, 0, 3, 0, 1, 0, 0, 0, 1, 7, 7, 7]

    func scan(_ pieces: [[UInt8]]) -> [UInt32] {
        var scanner = H2OutboundFrameScanner()
        return pieces.flatMap { scanner.scan(ByteBuffer(bytes: $0)) }
    }

    @Test func aGoAwayIsFoundAmongOtherFrames() {
        #expect(scan([ping + data + goAway(code: 1) + ping]) == [1])
        #expect(scan([ping, goAway(code: 0), data]) == [0])
        #expect(scan([ping + data]) == [])
    }

    /// However the bytes are split, the same codes come out; a payload that looks like a GOAWAY is not one.
    @Test func splitsAnywhereFindTheSameGoAways() {
        let fake: [UInt8] = [0, 0, 17, 0, 0, 0, 0, 0, 1] + goAway(code: 9)
        let stream = ping + fake + goAway(code: 11) + data + goAway(code: 0)
        for size in 1...stream.count {
            let pieces = stride(from: 0, to: stream.count, by: size).map {
                Array(stream[$0..<min(stream.count, $0 + size)])
            }
            #expect(scan(pieces) == [11, 0], "pieces of \(size)")
        }
    }

    /// Through the pipeline: a GOAWAY with an error code closes the connection once written; NO_ERROR (a
    /// graceful shutdown) does not.
    @Test(arguments: [(UInt32(1), false), (UInt32(0), true)])
    func theConnectionClosesAfterAGoAwayWithAnError(code: UInt32, open: Bool) throws {
        let channel = EmbeddedChannel(handler: FlushCoalescer(watchesGoAway: true))
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.writeAndFlush(IOData.byteBuffer(ByteBuffer(bytes: ping)), promise: nil)
        channel.embeddedEventLoop.run()
        #expect(channel.isActive)
        channel.write(IOData.byteBuffer(ByteBuffer(bytes: data)), promise: nil)
        channel.writeAndFlush(IOData.byteBuffer(ByteBuffer(bytes: goAway(code: code))), promise: nil)
        channel.embeddedEventLoop.run()
        #expect(channel.isActive == open)
        // Everything written went out, the GOAWAY last.
        var written: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { written += Array(buffer.readableBytesView) }
        #expect(written == ping + data + goAway(code: code))
        _ = try? channel.finish()
    }

    /// Watching is for client connections only: by default a GOAWAY with an error leaves the connection open.
    @Test func withoutWatchingTheConnectionStaysOpen() throws {
        let channel = EmbeddedChannel(handler: FlushCoalescer())
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.writeAndFlush(IOData.byteBuffer(ByteBuffer(bytes: goAway(code: 2))), promise: nil)
        channel.embeddedEventLoop.run()
        #expect(channel.isActive)
        _ = try? channel.finish()
    }
}
