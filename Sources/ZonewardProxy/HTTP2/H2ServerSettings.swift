import NIOCore
import NIOHTTP2

// The HTTP/2 limits and the client-facing NIOHTTP2 configuration, in a file of their own (NIOHTTP2 only) so
// the HTTP/2 fuzzer (fuzz/H2FramingFuzz) builds the server exactly as the proxy does.

/// The limits both sides of the HTTP/2 proxy use.
enum H2Limits {
    /// Concurrent streams a client connection may open (advertised in SETTINGS).
    static let maxConcurrentStreams = 100
    /// The largest header list accepted, as the HTTP/1.1 head limit.
    static let maxHeaderListSize = 65_536
    /// Per-stream receive window: a stream buffers at most this much the other side has not taken (twice
    /// while its upstream stream is being opened: the frames taken with the head, and the window behind
    /// them), so a client connection holds at most about 100 × 512 KiB.
    static let streamWindow = 256 << 10
    /// Streams this side reset whose late frames are still taken without error (NIOHTTP2's default is 32):
    /// a connection shared by many clients' streams resets many, and a frame the peer sent before seeing
    /// one of those resets must not end the connection (STREAM_CLOSED) under every other stream.
    static let recentlyResetStreams = 1024
    /// Connection-level receive window.
    static let connectionWindow = 8 << 20
    /// Client RST_STREAM frames allowed per connection per second (CVE-2023-44487, rapid reset); beyond it
    /// the connection gets GOAWAY ENHANCE_YOUR_CALM and is closed.
    static let maxResetsPerSecond = 100
    /// Malformed header blocks a client may send in `malformedWindow` (each resets its stream); beyond it the
    /// connection gets GOAWAY ENHANCE_YOUR_CALM and is closed, as NIOHTTP2 treats its own stream errors.
    static let maxMalformedBlocks = 200
    static let malformedWindow = TimeAmount.seconds(30)
}

/// NIOHTTP2's configuration for client connections.
enum H2ServerSettings {
    /// The client connection's limits: 100 concurrent streams and 64 KiB of header list (advertised in
    /// SETTINGS and enforced by NIOHTTP2), bounded CONTINUATION runs and recently-reset streams (NIOHTTP2's
    /// defaults).
    static var connection: NIOHTTP2Handler.ConnectionConfiguration {
        var configuration = NIOHTTP2Handler.ConnectionConfiguration()
        configuration.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: H2Limits.maxConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: H2Limits.maxHeaderListSize),
            HTTP2Setting(parameter: .initialWindowSize, value: H2Limits.streamWindow),
        ]
        configuration.targetWindowSize = H2Limits.connectionWindow
        configuration.maximumRecentlyResetStreams = H2Limits.recentlyResetStreams
        return configuration
    }

    /// For client connections whose streams are relayed (`H2ClientStreamsHandler`): as `connection`, but
    /// NIOHTTP2 validates neither header blocks nor content-length; the streams handler checks each block
    /// the client sends (`H2Headers.isValidFromClient`) and each request's DATA against its content-length
    /// (`H2Headers.DeclaredLength`), and what goes back was checked when it came from the endpoint.
    static var relayConnection: NIOHTTP2Handler.ConnectionConfiguration {
        var configuration = connection
        configuration.headerBlockValidation = .disabled
        configuration.contentLengthValidation = .disabled
        return configuration
    }

    /// Per stream: the receive window, and the rapid-reset defence (CVE-2023-44487): more than
    /// `maxResetsPerSecond` RST_STREAM frames from the client in a second closes the connection with GOAWAY
    /// ENHANCE_YOUR_CALM (NIOHTTP2's reset-frame rate limit).
    static var stream: NIOHTTP2Handler.StreamConfiguration {
        var configuration = NIOHTTP2Handler.StreamConfiguration()
        configuration.targetWindowSize = H2Limits.streamWindow
        configuration.streamResetFrameRateLimit.maximumCount = H2Limits.maxResetsPerSecond
        configuration.streamResetFrameRateLimit.windowLength = .seconds(1)
        return configuration
    }
}
