import Logging
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing
import ZonewardModel

@testable import ZonewardProxy

/// The HTTP/2 stream relay driven through embedded channels: a client (a NIOHTTP2 client), the proxy's
/// client connection (NIOHTTP2's server and `H2ClientStreamsHandler`), the proxy's pooled upstream
/// connection, and the endpoint (a NIOHTTP2 server) share one `EmbeddedEventLoop`; `pump` carries bytes
/// between each pair, so each test controls every frame and the clock.
@Suite struct H2StreamRelayTests {
    /// One endpoint stream: what it received, and a way to answer.
    final class EndpointStream: ChannelInboundHandler {
        typealias InboundIn = HTTP2Frame.FramePayload
        typealias OutboundOut = HTTP2Frame.FramePayload
        var frames: [HTTP2Frame.FramePayload] = []
        var closed = false
        var context: ChannelHandlerContext?

        func handlerAdded(context: ChannelHandlerContext) { self.context = context }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { frames.append(unwrapInboundIn(data)) }
        func channelInactive(context: ChannelHandlerContext) { closed = true }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {}

        func send(_ payload: HTTP2Frame.FramePayload) {
            context?.writeAndFlush(wrapOutboundOut(payload), promise: nil)
        }

        var head: HPACKHeaders? {
            for frame in frames { if case .headers(let headers) = frame { return headers.headers } }
            return nil
        }
    }

    final class Harness {
        let loop = EmbeddedEventLoop()
        let table: RoutingTable
        var connections: [(proxy: EmbeddedChannel, endpoint: EmbeddedChannel)] = []
        var streams: [EndpointStream] = []

        /// The client connection's idle timeout and keepalive interval (far off unless a test says).
        init(keepIdle: TimeAmount = .hours(1), keepPing: TimeAmount = .hours(1)) throws {
            let configuration = try ZonewardConfiguration.parse(
                yaml: """
                    zones: [{name: a, region: r}]
                    services:
                      - name: api
                        listen: 127.0.0.1:1
                        upstreamProtocol: http2
                        endpoints: [{address: 127.0.0.1:11, zone: a}]
                    """
            )
            table = RoutingTable(
                configuration: configuration,
                sourceZone: "a",
                metrics: ProxyMetrics(),
                logger: Logger(label: "test")
            )
            let pool = H2UpstreamPool(eventLoop: loop, timeouts: ProxyTimeouts()) { [weak self] _, loop in
                guard let self else { return loop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
                do {
                    return loop.makeSucceededFuture(try self.openConnection())
                } catch {
                    return loop.makeFailedFuture(error)
                }
            }
            self.pool = pool
            let connection = H2ClientConnection(
                service: configuration.services[0],
                table: table,
                pool: pool,
                scheme: "http",
                clientAddress: "192.0.2.7",
                maxRetries: 2
            )
            let clientSide = EmbeddedChannel(loop: loop)
            self.clientChannel = clientSide
            // As the listener builds it.
            let keeping = H2ClientStreamsHandler.Keeping(
                maxIdle: keepIdle,
                pingInterval: keepPing,
                ackTimeout: .seconds(20),
                maxGrace: .seconds(30)
            )
            try H2Listener.addRelay(clientSide.pipeline.syncOperations, keeping: keeping) {
                H2StreamProxy(connection: connection, client: $0)
            }
            try clientSide.connect(to: SocketAddress(ipAddress: "192.0.2.7", port: 40000)).wait()
            // The client sends what it is told, malformed or not.
            var unvalidated = NIOHTTP2Handler.ConnectionConfiguration()
            unvalidated.headerBlockValidation = .disabled
            try client.pipeline.syncOperations.addHandler(
                NIOHTTP2Handler(mode: .client, connectionConfiguration: unvalidated)
            )
            try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            try pump()
        }

        /// The proxy's client connection, and the client: a NIOHTTP2 client without a multiplexer, whose
        /// frames the test writes and reads itself.
        var clientChannel: EmbeddedChannel?
        lazy var client = EmbeddedChannel(loop: loop)
        var pool: H2UpstreamPool?
        /// false: endpoint streams read nothing, so they give no window back.
        var endpointReads = true
        /// false: the client gives no window back for the DATA it gets.
        var clientReads = true
        /// Frames the client got, by stream, not yet taken by `clientReceived`.
        private var clientFrames: [HTTP2StreamID: [HTTP2Frame.FramePayload]] = [:]
        /// Connection frames the client got (SETTINGS, PING, GOAWAY, …).
        var clientRootFrames: [HTTP2Frame.FramePayload] = []
        /// The GOAWAY frames' last stream IDs, in order.
        var clientGoAways: [HTTP2StreamID] {
            clientRootFrames.compactMap {
                if case .goAway(let last, _, _) = $0 { return last }
                return nil
            }
        }
        var clientPings: Int {
            clientRootFrames.filter {
                if case .ping(_, ack: false) = $0 { return true }
                return false
            }.count
        }
        /// DATA bytes carried from endpoints to the proxy.
        var upstreamDataBytes = 0

        private func openConnection() throws -> any Channel {
            let proxySide = EmbeddedChannel(loop: loop)
            let endpointSide = EmbeddedChannel(loop: loop)
            let bound = NIOLoopBound(self, eventLoop: loop)
            // The endpoint may send what NIOHTTP2 would refuse to: the proxy must refuse it itself.
            var endpointConfiguration = NIOHTTP2Handler.ConnectionConfiguration()
            endpointConfiguration.headerBlockValidation = .disabled
            endpointConfiguration.contentLengthValidation = .disabled
            _ = try endpointSide.pipeline.syncOperations.configureHTTP2Pipeline(
                mode: .server,
                connectionConfiguration: endpointConfiguration,
                streamConfiguration: .init(),
                inboundStreamInitializer: { stream in
                    stream.eventLoop.makeCompletedFuture {
                        let handler = EndpointStream()
                        bound.value.streams.append(handler)
                        if !bound.value.endpointReads { try stream.syncOptions?.setOption(.autoRead, value: false) }
                        try stream.pipeline.syncOperations.addHandler(handler)
                    }
                }
            )
            try endpointSide.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40001)).wait()
            try proxySide.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 11)).wait()
            connections.append((proxySide, endpointSide))
            return proxySide
        }

        /// Carries bytes both ways between the client and the proxy, and between each upstream connection
        /// and its endpoint, until nothing moves.
        func pump() throws {
            for _ in 0..<200 {
                // Flushes coalesced to the end of a loop tick happen first.
                loop.run()
                var moved = false
                if let clientSide = clientChannel {
                    while let bytes = try clientSide.readOutbound(as: ByteBuffer.self) {
                        try client.writeInbound(bytes)
                        client.pipeline.fireChannelReadComplete()
                        moved = true
                    }
                    while let bytes = try client.readOutbound(as: ByteBuffer.self) {
                        try clientSide.writeInbound(bytes)
                        clientSide.pipeline.fireChannelReadComplete()
                        moved = true
                    }
                    while let frame = try client.readInbound(as: HTTP2Frame.self) {
                        guard frame.streamID != .rootStream else {
                            clientRootFrames.append(frame.payload)
                            continue
                        }
                        clientFrames[frame.streamID, default: []].append(frame.payload)
                        if clientReads, case .data(let data) = frame.payload, data.data.readableBytes > 0 {
                            clientGivesBack(data.data.readableBytes, on: frame.streamID)
                        }
                    }
                }
                for (proxy, endpoint) in connections {
                    while let bytes = try proxy.readOutbound(as: ByteBuffer.self) {
                        try endpoint.writeInbound(bytes)
                        endpoint.pipeline.fireChannelReadComplete()
                        moved = true
                    }
                    while let bytes = try endpoint.readOutbound(as: ByteBuffer.self) {
                        upstreamDataBytes += bytes.readableBytes
                        try proxy.writeInbound(bytes)
                        proxy.pipeline.fireChannelReadComplete()
                        moved = true
                    }
                    while try endpoint.readInbound(as: HTTP2Frame.self) != nil {}
                }
                loop.run()
                if !moved { return }
            }
        }

        /// Carries what `from` wrote to `to` as one read (one `channelRead`, one `channelReadComplete`), where
        /// `pump` delivers each buffer as a read of its own. As in NIO, a read that closed the channel gets no
        /// `channelReadComplete`.
        func deliverAsOneRead(from: EmbeddedChannel, to: EmbeddedChannel) throws {
            loop.run()
            var all = ByteBuffer()
            while var bytes = try from.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&bytes) }
            try to.writeInbound(all)
            if to.isActive { to.pipeline.fireChannelReadComplete() }
        }

        /// The client gives the proxy back `bytes` of window on `stream` and on the connection.
        func clientGivesBack(_ bytes: Int, on stream: HTTP2StreamID = 1) {
            client.write(HTTP2Frame(streamID: stream, payload: .windowUpdate(windowSizeIncrement: bytes)), promise: nil)
            client.write(
                HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: bytes)),
                promise: nil
            )
            client.flush()
        }

        func clientSends(_ payload: HTTP2Frame.FramePayload, on stream: HTTP2StreamID = 1) throws {
            client.write(HTTP2Frame(streamID: stream, payload: payload), promise: nil)
            client.flush()
            try pump()
        }

        /// Two requests on streams 1 and 3, each with a body, sent one frame per read: the endpoint's streams.
        func twoRequestsSent() throws -> (first: EndpointStream, second: EndpointStream) {
            try clientSends(H2StreamRelayTests.request(grpc: false))
            try clientSends(H2StreamRelayTests.request(grpc: false), on: 3)
            try clientSends(H2StreamRelayTests.data("one", end: true))
            try clientSends(H2StreamRelayTests.data("three", end: true), on: 3)
            #expect(streams.count == 2)
            return (streams[0], streams[1])
        }

        /// A whole request (head and a one-byte body) from the client: the endpoint's stream for it.
        func requestSent(grpc: Bool) throws -> EndpointStream {
            try clientSends(H2StreamRelayTests.request(grpc: grpc))
            try clientSends(H2StreamRelayTests.data("x", end: true))
            return try #require(streams.last)
        }

        /// The types of the frames the proxy's first upstream connection wrote since the last call (not carried).
        func upstreamFrameTypes() throws -> [UInt8] {
            var types: [UInt8] = []
            guard let proxy = connections.first?.proxy else { return types }
            loop.run()
            while var bytes = try proxy.readOutbound(as: ByteBuffer.self) {
                while let length = bytes.readInteger(as: UInt8.self).flatMap({ high in
                    bytes.readInteger(as: UInt16.self).map { Int(high) << 16 | Int($0) }
                }), let type = bytes.readInteger(as: UInt8.self) {
                    types.append(type)
                    bytes.moveReaderIndex(forwardBy: min(bytes.readableBytes, 5 + length))
                }
            }
            return types
        }

        /// The DATA bytes the proxy wrote to the client stream since the last call.
        func clientDataBytes() throws -> Int {
            H2StreamRelayTests.dataBytes(try clientReceived())
        }

        /// Frames the proxy sent on the client's `stream` since the last call (window updates left out).
        func clientReceived(on stream: HTTP2StreamID = 1) throws -> [HTTP2Frame.FramePayload] {
            try pump()
            let frames = clientFrames[stream] ?? []
            clientFrames[stream] = nil
            return frames.filter {
                if case .windowUpdate = $0 { return false }
                return true
            }
        }

        var outstanding: Int { table.endpoints.map(\.outstandingRequests).reduce(0, +) }
    }

    static func request(grpc: Bool, timeout: String? = nil) -> HTTP2Frame.FramePayload {
        var headers: HPACKHeaders = [
            ":method": "POST", ":path": "/pkg.Svc/Call", ":scheme": "http", ":authority": "api",
            "x-forwarded-for": "6.6.6.6",
        ]
        if grpc {
            headers.add(name: "content-type", value: "application/grpc")
            headers.add(name: "te", value: "trailers")
        }
        if let timeout { headers.add(name: "grpc-timeout", value: timeout) }
        return .headers(.init(headers: headers))
    }

    /// The DATA bytes among `frames`.
    static func dataBytes(_ frames: [HTTP2Frame.FramePayload]) -> Int {
        frames.reduce(0) { sum, frame in
            guard case .data(let data) = frame else { return sum }
            return sum + data.data.readableBytes
        }
    }

    static func data(_ text: String, end: Bool) -> HTTP2Frame.FramePayload {
        .data(.init(data: .byteBuffer(ByteBuffer(string: text)), endStream: end))
    }

    /// The first header block the proxy wrote to the client.
    static func responseHead(_ frames: [HTTP2Frame.FramePayload]) -> HPACKHeaders? {
        for case .headers(let headers) in frames { return headers.headers }
        return nil
    }

    static func grpcStatus(_ frames: [HTTP2Frame.FramePayload]) -> Int? {
        for case .headers(let headers) in frames.reversed() {
            if let status = H2Headers.grpcStatus(headers.headers) { return status }
        }
        return nil
    }

    @Test func aRequestAndItsResponseAreRelayedWithTrailers() throws {
        let harness = try Harness()
        try harness.clientSends(Self.request(grpc: true))
        try harness.clientSends(Self.data("hello", end: true))
        #expect(harness.streams.count == 1)
        let stream = try #require(harness.streams.first)
        #expect(stream.head?.first(name: "x-forwarded-for") == "192.0.2.7")
        #expect(stream.head?.first(name: ":path") == "/pkg.Svc/Call")
        #expect(harness.outstanding == 1)
        stream.send(.headers(.init(headers: [":status": "200", "content-type": "application/grpc"])))
        stream.send(Self.data("world", end: false))
        stream.send(.headers(.init(headers: ["grpc-status": "0"], endStream: true)))
        try harness.pump()
        let frames = try harness.clientReceived()
        #expect(frames.count == 3)
        #expect(Self.grpcStatus(frames) == 0)
        #expect(harness.outstanding == 0)
    }

    @Test func aClientResetCancelsTheUpstreamStream() throws {
        let harness = try Harness()
        try harness.clientSends(Self.request(grpc: true))
        let stream = try #require(harness.streams.first)
        #expect(!stream.closed)
        try harness.clientSends(.rstStream(.cancel))
        try harness.pump()
        #expect(stream.closed)
        #expect(harness.outstanding == 0)
    }

    @Test func anUpstreamResetAfterHeadersEndsAGRPCCallUnavailable() throws {
        let harness = try Harness()
        let stream = try harness.requestSent(grpc: true)
        stream.send(.headers(.init(headers: [":status": "200", "content-type": "application/grpc"])))
        stream.send(.rstStream(.internalError))
        try harness.pump()
        let frames = try harness.clientReceived()
        #expect(Self.grpcStatus(frames) == 14)
        guard case .headers(let last) = frames.last else {
            Issue.record("no trailers: \(frames)")
            return
        }
        #expect(last.endStream)
        #expect(last.headers.first(name: ":status") == nil)
        #expect(harness.outstanding == 0)
    }

    @Test func anUpstreamResetBeforeHeadersIsA502ForPlainHTTP2() throws {
        let harness = try Harness()
        let stream = try harness.requestSent(grpc: false)
        stream.send(.rstStream(.internalError))
        try harness.pump()
        let head = try #require(Self.responseHead(try harness.clientReceived()))
        #expect(head.first(name: ":status") == "502")
        #expect(head.first(name: "x-zoneward-error") == "upstream-reset")
    }

    @Test func grpcTimeoutEndsTheCallWithDeadlineExceededAndCancelsUpstream() throws {
        let harness = try Harness()
        try harness.clientSends(Self.request(grpc: true, timeout: "100m"))
        try harness.clientSends(Self.data("x", end: true))
        let stream = try #require(harness.streams.first)
        harness.loop.advanceTime(by: .milliseconds(99))
        #expect(try harness.clientReceived().isEmpty)
        harness.loop.advanceTime(by: .milliseconds(2))
        try harness.pump()
        let frames = try harness.clientReceived()
        #expect(Self.grpcStatus(frames) == 4)
        #expect(stream.closed)
        #expect(harness.outstanding == 0)
    }

    /// A stream the endpoint refused unprocessed goes again, head and body, on a new stream.
    @Test func aRefusedStreamIsRetriedWithItsFrames() throws {
        let harness = try Harness()
        try harness.clientSends(Self.request(grpc: true))
        try harness.clientSends(Self.data("hello", end: true))
        let first = try #require(harness.streams.first)
        first.send(.rstStream(.refusedStream))
        try harness.pump()
        #expect(harness.streams.count == 2)
        let second = try #require(harness.streams.last)
        #expect(second.head?.first(name: ":path") == "/pkg.Svc/Call")
        let body = second.frames.compactMap { frame -> String? in
            guard case .data(let data) = frame, case .byteBuffer(let bytes) = data.data else { return nil }
            return String(buffer: bytes)
        }
        #expect(body == ["hello"])
        second.send(.headers(.init(headers: [":status": "200", "grpc-status": "0"], endStream: true)))
        try harness.pump()
        #expect(Self.grpcStatus(try harness.clientReceived()) == 0)
        #expect(harness.outstanding == 0)
    }

    /// Upstream connections skip NIOHTTP2's header validation; the relay's own check refuses a malformed
    /// block as a protocol error: 502 to the client, the endpoint's stream reset, nothing relayed.
    @Test(arguments: [
        [(":status", "200"), ("x-bad", "a\r\nb")],
        [(":status", "200"), ("X-Upper", "v")],
        [("x-first", "v"), (":status", "200")],
        [(":status", "200"), (":path", "/")],
        [("content-type", "text/plain")],
        [(":status", "200"), ("x-space", " padded")],
    ])
    func aMalformedResponseHeadIsA502(_ fields: [(String, String)]) throws {
        let harness = try Harness()
        let stream = try harness.requestSent(grpc: false)
        var headers = HPACKHeaders()
        for (name, value) in fields { headers.add(name: name, value: value) }
        stream.send(.headers(.init(headers: headers)))
        try harness.pump()
        let head = try #require(Self.responseHead(try harness.clientReceived()))
        #expect(head.first(name: ":status") == "502")
        #expect(head.first(name: "x-bad") == nil)
        #expect(stream.closed)
        #expect(harness.outstanding == 0)
    }

    /// A response whose DATA does not add up to its content-length is malformed (RFC 9113 §8.1.1; NIOHTTP2
    /// does not check it on the proxy's connections): the endpoint's stream is reset with PROTOCOL_ERROR and
    /// the client's stream, whose head went out, is reset; nothing past the length is relayed.
    @Test(arguments: [
        ("5", [("hel", true)]),
        ("5", [("hello!", false)]),
        ("5", [("hel", false), ("lo!", true)]),
        ("0", [("x", true)]),
    ])
    func aResponseBodyOtherThanItsContentLengthResetsTheStream(length: String, data: [(String, Bool)]) throws {
        let harness = try Harness()
        let stream = try harness.requestSent(grpc: false)
        stream.send(.headers(.init(headers: [":status": "200", "content-length": length])))
        for (text, end) in data { stream.send(Self.data(text, end: end)) }
        try harness.pump()
        let frames = try harness.clientReceived()
        #expect(Self.responseHead(frames)?.first(name: ":status") == "200")
        #expect(frames.contains { if case .rstStream = $0 { return true } else { return false } }, "\(frames)")
        #expect(Self.dataBytes(frames) <= Int(length) ?? 0)
        #expect(stream.closed)
        #expect(harness.outstanding == 0)
    }

    /// A head that ends the stream short of its content-length is malformed before anything was relayed:
    /// a 502.
    @Test func aResponseHeadEndingShortOfItsLengthIsA502() throws {
        let harness = try Harness()
        let stream = try harness.requestSent(grpc: false)
        stream.send(.headers(.init(headers: [":status": "200", "content-length": "5"], endStream: true)))
        try harness.pump()
        #expect(Self.responseHead(try harness.clientReceived())?.first(name: ":status") == "502")
        #expect(harness.outstanding == 0)
    }

    /// The bodies that match: the length whole (in parts, or before trailers), and none for a HEAD request
    /// or a 304 whatever length they name (RFC 9110 §8.6), but not DATA after a HEAD request's head.
    @Test(arguments: [
        ("GET", "200", "5", ["he", "llo"], true),
        ("GET", "304", "5", [], true),
        ("HEAD", "200", "5", [], true),
        ("HEAD", "200", "5", ["hello"], false),
        ("GET", "200", "", ["no length, any body"], true),
    ])
    func responseBodiesThatMatchTheirLengthAreRelayed(
        method: String,
        status: String,
        length: String,
        data: [String],
        valid: Bool
    ) throws {
        let harness = try Harness()
        try harness.clientSends(
            .headers(
                .init(
                    headers: [":method": method, ":path": "/", ":scheme": "http", ":authority": "api"],
                    endStream: true
                )
            )
        )
        let stream = try #require(harness.streams.last)
        var head: HPACKHeaders = [":status": status]
        if !length.isEmpty { head.add(name: "content-length", value: length) }
        stream.send(.headers(.init(headers: head, endStream: data.isEmpty)))
        for (index, text) in data.enumerated() { stream.send(Self.data(text, end: index == data.count - 1)) }
        try harness.pump()
        let frames = try harness.clientReceived()
        let reset = frames.contains { if case .rstStream = $0 { return true } else { return false } }
        #expect(reset == !valid, "\(frames)")
        if valid { #expect(Self.dataBytes(frames) == data.map(\.utf8.count).reduce(0, +)) }
        #expect(harness.outstanding == 0)
    }

    /// Trailers with a pseudo-header are malformed too: the gRPC call ends UNAVAILABLE.
    @Test func malformedTrailersEndAGRPCCallUnavailable() throws {
        let harness = try Harness()
        let stream = try harness.requestSent(grpc: true)
        stream.send(.headers(.init(headers: [":status": "200", "content-type": "application/grpc"])))
        stream.send(.headers(.init(headers: [":status": "200", "grpc-status": "0"], endStream: true)))
        try harness.pump()
        #expect(Self.grpcStatus(try harness.clientReceived()) == 14)
        #expect(harness.outstanding == 0)
    }

    /// An endpoint that sends nothing for `upstreamRead` (30 s here) gets a 504; the loop's silence watch
    /// forgets the stream and stops ticking once nothing is watched.
    @Test func aSilentEndpointIsA504AfterUpstreamRead() throws {
        let harness = try Harness()
        let stream = try harness.requestSent(grpc: false)
        let watch = try #require(harness.pool?.silence)
        #expect(watch.count == 1)
        harness.loop.advanceTime(by: .seconds(29))
        #expect(try harness.clientReceived().isEmpty)
        harness.loop.advanceTime(by: .seconds(2))
        try harness.pump()
        let head = try #require(Self.responseHead(try harness.clientReceived()))
        #expect(head.first(name: ":status") == "504")
        #expect(stream.closed)
        #expect(watch.count == 0)
        harness.loop.advanceTime(by: .seconds(1))
        #expect(!watch.isTicking)
        #expect(harness.outstanding == 0)
    }

    /// A stream answered in time leaves the watch.
    @Test func anAnsweredStreamLeavesTheSilenceWatch() throws {
        let harness = try Harness()
        let stream = try harness.requestSent(grpc: false)
        let watch = try #require(harness.pool?.silence)
        #expect(watch.count == 1)
        stream.send(.headers(.init(headers: [":status": "200"], endStream: true)))
        try harness.pump()
        #expect(watch.count == 0)
        harness.loop.advanceTime(by: .seconds(60))
        #expect(try harness.clientReceived().count == 1)
    }

    /// A response many windows long arrives whole: the relay gives the endpoint back each stream window (and
    /// the connection's) as the client stream takes the bytes.
    @Test func aResponseLargerThanTheWindowsIsRelayedWhole() throws {
        let harness = try Harness()
        let stream = try harness.requestSent(grpc: false)
        stream.send(.headers(.init(headers: [":status": "200"])))
        let chunk = String(repeating: "z", count: 16_384)
        let chunks = 1_024  // 16 MiB: 64 stream windows, 2 connection windows
        var received = 0
        for index in 0..<chunks {
            stream.send(Self.data(chunk, end: index == chunks - 1))
            if index % 32 == 31 {
                try harness.pump()
                received += try harness.clientDataBytes()
            }
        }
        try harness.pump()
        received += try harness.clientDataBytes()
        #expect(received == chunks * 16_384)
        #expect(harness.outstanding == 0)
    }

    /// A client stream that stops taking bytes holds the endpoint to one window; once it drains, the window
    /// given back reaches the endpoint at once (not at the endpoint's next frame, which waits for it).
    @Test func aStalledClientHoldsTheEndpointToAWindowAndResumes() throws {
        let harness = try Harness()
        let stream = try harness.requestSent(grpc: false)
        harness.clientReads = false
        stream.send(.headers(.init(headers: [":status": "200"])))
        let chunk = String(repeating: "z", count: 16_384)
        let chunks = 64  // 1 MiB: four stream windows
        for index in 0..<chunks { stream.send(Self.data(chunk, end: index == chunks - 1)) }
        try harness.pump()
        var received = try harness.clientDataBytes()
        // The client's window (65,535 bytes) is all it gets; the proxy holds what the endpoint sent in its
        // stream's window, and gives none back while the client stream is full.
        #expect(received <= 65_535, "held to the client's window: \(received)")
        #expect(harness.upstreamDataBytes <= H2Limits.streamWindow + 16_384, "\(harness.upstreamDataBytes)")
        harness.clientReads = true
        harness.clientGivesBack(received)
        try harness.pump()
        received += try harness.clientDataBytes()
        #expect(received == chunks * 16_384)
    }

    /// A connection carrying a stream that reads nothing for 5 minutes (ten 30 s sweeps) is sent a PING, no
    /// sooner (gRPC servers close connections that PING more often); an endpoint that answers keeps it; one
    /// that stays silent 60 s more has it closed, and the call ends UNAVAILABLE.
    @Test func aSilentUpstreamConnectionIsPingedThenClosed() throws {
        let harness = try Harness()
        _ = try harness.requestSent(grpc: true)
        let proxy = try #require(harness.connections.first?.proxy)
        var pings = 0
        func sweep() throws {
            harness.loop.advanceTime(by: .seconds(30))
            while let bytes = try proxy.readOutbound(as: ByteBuffer.self) {
                // Frame type 6 (PING) in the 9-byte frame header; the sweep writes it on its own.
                if bytes.readableBytes == 17, bytes.getInteger(at: bytes.readerIndex + 3, as: UInt8.self) == 6 {
                    pings += 1
                }
                try harness.connections[0].endpoint.writeInbound(bytes)
            }
            try harness.pump()
        }
        for _ in 0..<10 { try sweep() }
        #expect(pings == 0, "no PING before 5 minutes of silence")
        try sweep()
        #expect(pings == 1)
        for _ in 0..<9 { try sweep() }
        #expect(pings == 1, "answered: the next PING waits another 5 minutes")
        #expect(proxy.isActive)
        #expect(try harness.clientReceived().isEmpty)
        // The endpoint goes silent: what the proxy writes is no longer carried to it.
        var pingedAt: Int?
        var closedAt: Int?
        for index in 1...20 where closedAt == nil {
            harness.loop.advanceTime(by: .seconds(30))
            while let bytes = try proxy.readOutbound(as: ByteBuffer.self) {
                if bytes.readableBytes == 17, bytes.getInteger(at: bytes.readerIndex + 3, as: UInt8.self) == 6 {
                    pingedAt = index
                }
            }
            if !proxy.isActive { closedAt = index }
        }
        let pinged = try #require(pingedAt)
        #expect(closedAt == pinged + 2, "given up 60 s after an unanswered PING")
        harness.loop.run()
        #expect(!proxy.isActive)
        #expect(Self.grpcStatus(try harness.clientReceived()) == 14)
        #expect(harness.outstanding == 0)
    }

    /// A stream whose END_STREAM still waits behind DATA the endpoint's window holds back is open at the
    /// endpoint: cancelled (the client's stream closed with the answer), it is reset there, not just
    /// forgotten here with its slot given back.
    @Test func aCancelledStreamWithItsEndStillBufferedIsReset() throws {
        let harness = try Harness()
        harness.endpointReads = false
        try harness.clientSends(Self.request(grpc: false))
        try harness.clientSends(Self.data(String(repeating: "b", count: 100_000), end: true))
        let stream = try #require(harness.streams.last)
        stream.send(.headers(.init(headers: [":status": "413"], endStream: true)))
        try harness.pump()
        #expect(Self.responseHead(try harness.clientReceived())?.first(name: ":status") == "413")
        // Half-closed at the endpoint (its END_STREAM sent, ours still held back): only a reset ends it.
        #expect(stream.closed, "RST_STREAM to the endpoint")
        #expect(harness.outstanding == 0)
    }

    /// Client connections run NIOHTTP2 without its header validation; the streams handler's own check
    /// refuses malformed trailers: the client's stream is reset (PROTOCOL_ERROR) and the upstream stream
    /// cancelled, its endpoint released.
    @Test func malformedClientTrailersResetTheStreamBothWays() throws {
        let harness = try Harness()
        try harness.clientSends(Self.request(grpc: true))
        try harness.clientSends(Self.data("x", end: false))
        let stream = try #require(harness.streams.first)
        #expect(harness.outstanding == 1)
        try harness.clientSends(.headers(.init(headers: [":path": "/smuggled"], endStream: true)))
        let frames = try harness.clientReceived()
        #expect(frames.contains { if case .rstStream(.protocolError) = $0 { return true } else { return false } })
        #expect(stream.closed)
        #expect(harness.outstanding == 0)
    }

    /// A client connection with no stream for `clientIdle` is shut down as at shutdown (GOAWAY with the
    /// highest stream ID and a PING; on its ACK, GOAWAY with the last stream) and closed; one with a stream
    /// open is not.
    @Test func anIdleClientConnectionIsClosedWithGoAway() throws {
        let harness = try Harness(keepIdle: .seconds(10))
        let client = try #require(harness.clientChannel)
        harness.loop.advanceTime(by: .seconds(9))
        try harness.pump()
        #expect(client.isActive)
        // The check runs every 2.5 s: shut down between 10 and 12.5 s.
        harness.loop.advanceTime(by: .seconds(4))
        try harness.pump()
        #expect(!client.isActive)
        #expect(harness.clientGoAways == [.maxID, HTTP2StreamID(0)])

        let busy = try Harness(keepIdle: .seconds(10))
        try busy.clientSends(Self.request(grpc: true))
        busy.loop.advanceTime(by: .seconds(30))
        #expect(busy.clientChannel?.isActive == true)
    }

    /// Short requests now and then keep a connection: each one starts the idle time afresh, even when no
    /// check ever sees it open.
    @Test func shortRequestsKeepAConnectionFromIdling() throws {
        let harness = try Harness(keepIdle: .seconds(10))
        let client = try #require(harness.clientChannel)
        for index in 0..<15 {
            let id = HTTP2StreamID(2 * index + 1)
            try harness.clientSends(Self.request(grpc: false), on: id)
            try harness.clientSends(Self.data("x", end: true), on: id)
            let stream = try #require(harness.streams.last)
            stream.send(.headers(.init(headers: [":status": "204"], endStream: true)))
            try harness.pump()
            harness.loop.advanceTime(by: .seconds(2))
            try harness.pump()
        }
        #expect(client.isActive, "30 s of a request every 2 s is not idle")
        #expect(harness.clientGoAways.isEmpty)
    }

    /// A HEAD request the proxy answers itself (here 504: the endpoint is silent) gets the head alone, with
    /// END_STREAM: a body would be refused by NIOHTTP2 (HEAD responses carry none) and leave the stream open.
    @Test func aLocalAnswerToHEADIsTheHeadAlone() throws {
        let harness = try Harness()
        try harness.clientSends(
            .headers(
                .init(
                    headers: [":method": "HEAD", ":path": "/", ":scheme": "http", ":authority": "api"],
                    endStream: true
                )
            )
        )
        harness.loop.advanceTime(by: .seconds(31))
        try harness.pump()
        let frames = try harness.clientReceived()
        #expect(frames.count == 1, "\(frames)")
        guard case .headers(let head) = frames.first else { return }
        #expect(head.endStream)
        #expect(head.headers.first(name: ":status") == "504")
        #expect(harness.outstanding == 0)
    }

    /// A gRPC call that ends with its trailers (the stream closing as they are written) records the
    /// endpoint's success: its run of consecutive failures starts again.
    @Test func aCallEndedByTrailersCountsAsTheEndpointsSuccess() throws {
        let harness = try Harness()
        let endpoint = try #require(harness.table.endpoints.first)
        endpoint.consecutiveFailures.store(2, ordering: .relaxed)
        let stream = try harness.requestSent(grpc: true)
        stream.send(.headers(.init(headers: [":status": "200", "content-type": "application/grpc"])))
        stream.send(.headers(.init(headers: ["grpc-status": "0"], endStream: true)))
        try harness.pump()
        #expect(Self.grpcStatus(try harness.clientReceived()) == 0)
        #expect(endpoint.consecutiveFailures.load(ordering: .relaxed) == 0)
    }

    /// A client that sends nothing for `clientWrite` is sent a PING; one that answers stays, one that stays
    /// silent 20 s more is closed.
    @Test func aSilentClientIsPingedAndClosedIfItDoesNotAnswer() throws {
        let harness = try Harness(keepPing: .seconds(8))
        let client = try #require(harness.clientChannel)
        try harness.clientSends(Self.request(grpc: true))
        harness.loop.advanceTime(by: .seconds(7))
        try harness.pump()
        #expect(harness.clientPings == 0)
        harness.loop.advanceTime(by: .seconds(3))
        // The client's NIOHTTP2 answers the PING when its bytes reach it.
        try harness.pump()
        #expect(harness.clientPings == 1)
        harness.loop.advanceTime(by: .seconds(25))
        try harness.pump()
        #expect(client.isActive, "answered: kept")
        // Now nothing reaches the client, and nothing comes back.
        harness.loop.advanceTime(by: .seconds(10))
        #expect(client.isActive)
        harness.loop.advanceTime(by: .seconds(24))
        #expect(!client.isActive)
        #expect(harness.outstanding == 0)
    }

    /// Shutdown: GOAWAY with the highest stream ID and a PING; on its ACK, GOAWAY with the last stream; the
    /// stream in flight finishes, then the connection closes.
    @Test func aGracefulShutdownLetsTheStreamInFlightFinish() throws {
        let harness = try Harness()
        let client = try #require(harness.clientChannel)
        let stream = try harness.requestSent(grpc: false)
        client.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        try harness.pump()
        #expect(harness.clientGoAways == [.maxID, HTTP2StreamID(1)])
        #expect(client.isActive)
        stream.send(.headers(.init(headers: [":status": "200"], endStream: true)))
        try harness.pump()
        #expect(Self.responseHead(try harness.clientReceived())?.first(name: ":status") == "200")
        #expect(!client.isActive)
    }

    /// A stream that does not finish within the grace (`drain`, 30 s here) is cut off with its connection.
    @Test func aGracefulShutdownEndsAtTheGrace() throws {
        let harness = try Harness()
        let client = try #require(harness.clientChannel)
        _ = try harness.requestSent(grpc: true)
        client.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        try harness.pump()
        harness.loop.advanceTime(by: .seconds(29))
        #expect(client.isActive)
        harness.loop.advanceTime(by: .seconds(20))
        try harness.pump()
        #expect(!client.isActive)
        #expect(harness.outstanding == 0)
    }

    /// A response complete while the client still sends ends with RST_STREAM(NO_ERROR), but only once its
    /// DATA is on the wire: NIOHTTP2 holds DATA the client's window has no room for, and a reset would drop it.
    @Test func theResetAfterAnEarlyResponseWaitsForItsData() throws {
        let harness = try Harness()
        try harness.clientSends(Self.request(grpc: false))
        try harness.clientSends(Self.data("upload", end: false))
        let stream = try #require(harness.streams.first)
        harness.clientReads = false
        stream.send(.headers(.init(headers: [":status": "413"])))
        let chunk = String(repeating: "z", count: 16_384)
        for index in 0..<6 { stream.send(Self.data(chunk, end: index == 5)) }
        try harness.pump()
        var frames = try harness.clientReceived()
        var received = Self.dataBytes(frames)
        #expect(received < 6 * 16_384, "held at the client's window")
        #expect(!frames.contains { if case .rstStream = $0 { return true } else { return false } })
        harness.clientReads = true
        harness.clientGivesBack(received)
        try harness.pump()
        frames = try harness.clientReceived()
        received += Self.dataBytes(frames)
        #expect(received == 6 * 16_384)
        guard case .rstStream(.noError) = frames.last else {
            Issue.record("expected RST_STREAM(NO_ERROR) after the DATA; got \(frames.suffix(2))")
            return
        }
    }

    /// The client's connection going away cancels its open streams upstream.
    @Test func aClosedClientConnectionCancelsItsStreams() throws {
        let harness = try Harness()
        try harness.clientSends(Self.request(grpc: true))
        try harness.clientSends(Self.request(grpc: true), on: 3)
        #expect(harness.streams.count == 2)
        #expect(harness.outstanding == 2)
        try harness.clientChannel?.close().wait()
        try harness.pump()
        #expect(harness.streams.allSatisfy { $0.closed })
        #expect(harness.outstanding == 0)
    }

    /// A request body many windows long reaches the endpoint whole: the client gets its stream window (and
    /// the connection's) back as the upstream stream takes the bytes.
    @Test func aRequestLargerThanTheWindowsIsRelayedWhole() throws {
        let harness = try Harness()
        try harness.clientSends(Self.request(grpc: false))
        let chunk = String(repeating: "q", count: 16_384)
        let chunks = 96  // 1.5 MiB: six client stream windows
        for index in 0..<chunks { try harness.clientSends(Self.data(chunk, end: index == chunks - 1)) }
        let stream = try #require(harness.streams.last)
        let bytes = Self.dataBytes(stream.frames)
        #expect(bytes == chunks * 16_384)
        stream.send(.headers(.init(headers: [":status": "204"], endStream: true)))
        #expect(Self.responseHead(try harness.clientReceived())?.first(name: ":status") == "204")
        #expect(harness.outstanding == 0)
    }

    /// Counts the flushes that pass it (placed right after NIOHTTP2Handler: the relay's own).
    final class FlushCounter: ChannelOutboundHandler {
        typealias OutboundIn = HTTP2Frame
        var count = 0
        func flush(context: ChannelHandlerContext) {
            count += 1
            context.flush()
        }
    }

    static func countFlushes(of channel: EmbeddedChannel) throws -> FlushCounter {
        let counter = FlushCounter()
        let http2 = try channel.pipeline.syncOperations.handler(type: NIOHTTP2Handler.self)
        try channel.pipeline.syncOperations.addHandler(counter, position: .after(http2))
        return counter
    }

    @Test func streamsAnsweredInOneUpstreamReadAreFlushedToTheClientOnce() throws {
        let harness = try Harness()
        let (first, second) = try harness.twoRequestsSent()
        let counter = try Self.countFlushes(of: try #require(harness.clientChannel))
        first.send(.headers(.init(headers: [":status": "200"], endStream: true)))
        second.send(.headers(.init(headers: [":status": "201"], endStream: true)))
        let upstream = try #require(harness.connections.first)
        try harness.deliverAsOneRead(from: upstream.endpoint, to: upstream.proxy)
        // One flush for both streams (one each before), when the upstream read completed.
        #expect(counter.count == 1)
        #expect(Self.responseHead(try harness.clientReceived(on: 1))?.first(name: ":status") == "200")
        #expect(Self.responseHead(try harness.clientReceived(on: 3))?.first(name: ":status") == "201")
        #expect(harness.outstanding == 0)
    }

    @Test func streamsOpenedInOneClientReadAreFlushedUpstreamOnce() throws {
        let harness = try Harness()
        try harness.clientSends(Self.request(grpc: false))
        let upstream = try #require(harness.connections.first)
        let counter = try Self.countFlushes(of: upstream.proxy)
        let clientSide = try #require(harness.clientChannel)
        for stream in [3, 5, 7] as [HTTP2StreamID] {
            harness.client.write(HTTP2Frame(streamID: stream, payload: Self.request(grpc: false)), promise: nil)
        }
        harness.client.flush()
        try harness.deliverAsOneRead(from: harness.client, to: clientSide)
        // Three streams opened on the upstream connection, flushed once when the client's read completed.
        #expect(counter.count == 1)
        try harness.pump()
        #expect(harness.streams.count == 4)
        #expect(harness.streams.allSatisfy { $0.head?.first(name: ":path") == "/pkg.Svc/Call" })
    }

    /// An endpoint that said GOAWAY answers its last stream: the response reaches the client (flushed as the
    /// upstream read completes), and the drained connection closes.
    @Test func theLastStreamOfADrainedConnectionIsAnswered() throws {
        let harness = try Harness()
        let stream = try harness.requestSent(grpc: false)
        let upstream = try #require(harness.connections.first)
        let goAway = HTTP2Frame(
            streamID: .rootStream,
            payload: .goAway(lastStreamID: 1, errorCode: .noError, opaqueData: nil)
        )
        upstream.endpoint.writeAndFlush(goAway, promise: nil)
        try harness.pump()
        #expect(upstream.proxy.isActive, "open while its stream is")
        stream.send(.headers(.init(headers: [":status": "200"])))
        stream.send(Self.data("done", end: true))
        try harness.deliverAsOneRead(from: upstream.endpoint, to: upstream.proxy)
        #expect(!upstream.proxy.isActive, "closed once drained")
        let frames = try harness.clientReceived()
        #expect(Self.responseHead(frames)?.first(name: ":status") == "200")
        #expect(Self.dataBytes(frames) == 4)
        #expect(harness.outstanding == 0)
    }

    /// Streams of one client connection are relayed side by side, each on its own upstream stream, and a
    /// response that ends with its head (no DATA) reaches the client.
    @Test func twoStreamsOfOneConnectionAreRelayedApart() throws {
        let harness = try Harness()
        let (first, second) = try harness.twoRequestsSent()
        second.send(.headers(.init(headers: [":status": "201"], endStream: true)))
        first.send(.headers(.init(headers: [":status": "200"])))
        first.send(Self.data("done", end: true))
        try harness.pump()
        #expect(Self.responseHead(try harness.clientReceived(on: 3))?.first(name: ":status") == "201")
        let frames = try harness.clientReceived(on: 1)
        #expect(Self.responseHead(frames)?.first(name: ":status") == "200")
        #expect(frames.count == 2)
        #expect(harness.outstanding == 0)
    }
}
