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
