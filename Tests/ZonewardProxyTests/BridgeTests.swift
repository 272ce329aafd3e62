import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import Testing
import ZonewardModel

@testable import ZonewardProxy

@Suite struct BridgeHeadersTests {
    /// An HTTP/2 request head becomes an HTTP/1.1 head: Host from :authority, and the body framed so that the
    /// endpoint reads exactly the client's DATA, whatever the method.
    @Test func requestHeadsFromHTTP2GetHostAndFraming() throws {
        var block: HPACKHeaders = [":method": "POST", ":scheme": "https", ":authority": "api:8443", ":path": "/a?b"]
        var head = try BridgeHeaders.requestFromHTTP2(block, endStream: false).get()
        #expect(head.method == .POST)
        #expect(head.uri == "/a?b")
        #expect(head.headers["host"] == ["api:8443"])
        #expect(head.headers["transfer-encoding"] == ["chunked"])
        head = try BridgeHeaders.requestFromHTTP2(block, endStream: true).get()
        #expect(head.headers["content-length"] == ["0"])
        block.add(name: "content-length", value: "5")
        head = try BridgeHeaders.requestFromHTTP2(block, endStream: false).get()
        #expect(head.headers["content-length"] == ["5"])
        #expect(head.headers["transfer-encoding"].isEmpty)
        let get: HPACKHeaders = [":method": "GET", ":scheme": "http", ":path": "/", "host": "h"]
        head = try BridgeHeaders.requestFromHTTP2(get, endStream: true).get()
        #expect(head.headers["host"] == ["h"])
        #expect(head.headers["transfer-encoding"].isEmpty)
        #expect(head.headers["content-length"].isEmpty)
        // A GET whose HEADERS did not end the stream may carry a body: chunked, never raw bytes.
        head = try BridgeHeaders.requestFromHTTP2(get, endStream: false).get()
        #expect(head.headers["transfer-encoding"] == ["chunked"])
    }

    @Test(
        arguments: [
            ([(":method", "GET"), (":scheme", "http"), (":path", "/")], true, "missing-authority"),
            (
                [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a"), ("host", "b")], true,
                "host-mismatch"
            ),
            (
                [(":method", "GET"), (":scheme", "http"), (":path", "http://evil/x"), (":authority", "a")], true,
                "invalid-path"
            ),
            ([(":method", "GET"), (":scheme", "http"), (":path", "*"), (":authority", "a")], true, "invalid-path"),
            (
                [
                    (":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "a"),
                    ("content-length", "+5"),
                ], false,
                "invalid-content-length"
            ),
            (
                [
                    (":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "a"),
                    ("content-length", "5, 5"),
                ], false,
                "invalid-content-length"
            ),
            (
                [
                    (":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "a"),
                    ("content-length", "5"),
                    ("content-length", "6"),
                ], false, "invalid-content-length"
            ),
            (
                [(":method", "TRACE"), (":scheme", "http"), (":path", "/"), (":authority", "a")], false,
                "trace-with-body"
            ),
            ([(":method", "GE(T"), (":scheme", "http"), (":path", "/"), (":authority", "a")], true, "invalid-method"),
            (
                [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a"), ("x", "a\u{1}b")],
                true, "invalid-field-value"
            ),
            (
                [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a"), ("x", "del\u{7F}")],
                true, "invalid-field-value"
            ),
        ] as [([(String, String)], Bool, String)]
    )
    func requestsTheBridgeRefuses(_ fields: [(String, String)], _ endStream: Bool, _ cause: String) {
        var block = HPACKHeaders()
        for (name, value) in fields { block.add(name: name, value: value) }
        guard case .failure(let refusal) = BridgeHeaders.requestFromHTTP2(block, endStream: endStream) else {
            Issue.record("\(fields) was bridged")
            return
        }
        #expect(refusal.rawValue == cause)
    }

    @Test func anHTTP2RequestGoesToHTTP1WithoutHopByHopFieldsAndWithForwardingFields() {
        var headers = HTTPHeaders()
        headers.add(name: "host", value: "api.example")
        headers.add(name: "connection", value: "x-private")
        headers.add(name: "x-private", value: "secret")
        headers.add(name: "keep-alive", value: "timeout=5")
        headers.add(name: "te", value: "trailers")
        headers.add(name: "transfer-encoding", value: "chunked")
        headers.add(name: "x-forwarded-for", value: "6.6.6.6")
        headers.add(name: "x-forwarded-proto", value: "https")
        headers.add(name: "accept", value: "*/*")
        let head = HTTPRequestHead(version: .http2, method: .POST, uri: "/upload?x=1", headers: headers)
        let out = BridgeHeaders.requestForHTTP1(head, clientAddress: "10.0.0.7", scheme: "http", trusted: false)
        #expect(out.version == .http1_1)
        #expect(out.uri == "/upload?x=1")
        #expect(out.method == .POST)
        for name in ["connection", "x-private", "keep-alive", "te"] {
            #expect(out.headers[name].isEmpty, "\(name) must not be forwarded")
        }
        #expect(out.headers["host"] == ["api.example"])
        // The codec's own framing for a body of unknown length stays.
        #expect(out.headers["transfer-encoding"] == ["chunked"])
        // An untrusted peer's forwarding fields are replaced.
        #expect(out.headers["x-forwarded-for"] == ["10.0.0.7"])
        #expect(out.headers["x-forwarded-proto"] == ["http"])
        #expect(out.headers["forwarded"] == ["for=10.0.0.7;proto=http"])
        #expect(out.headers["accept"] == ["*/*"])
    }

    @Test func aTrustedPeersForwardingFieldsAreExtended() {
        let head = HTTPRequestHead(
            version: .http2,
            method: .GET,
            uri: "/",
            headers: ["host": "a", "x-forwarded-for": "1.2.3.4", "forwarded": "for=1.2.3.4"]
        )
        let out = BridgeHeaders.requestForHTTP1(head, clientAddress: "::1", scheme: "https", trusted: true)
        #expect(out.headers["x-forwarded-for"] == ["1.2.3.4, ::1"])
        #expect(out.headers["forwarded"] == ["for=1.2.3.4, for=\"[::1]\";proto=https"])
    }

    @Test func anHTTP1RequestBecomesAnHTTP2HeaderBlockWithAuthorityFromHost() throws {
        let head = HTTPRequestHead(
            version: .http1_1,
            method: .PUT,
            uri: "/items/7",
            headers: [
                "Host": "api:8080", "Connection": "keep-alive, X-Secret", "X-Secret": "1", "TE": "trailers, gzip",
                "Content-Length": "5", "Accept": "text/plain",
            ]
        )
        let block = try #require(BridgeHeaders.requestForHTTP2(head, scheme: "https"))
        #expect(block.first(name: ":method") == "PUT")
        #expect(block.first(name: ":scheme") == "https")
        #expect(block.first(name: ":authority") == "api:8080")
        #expect(block.first(name: ":path") == "/items/7")
        #expect(block.first(name: "host") == nil)
        #expect(block.first(name: "connection") == nil)
        #expect(block.first(name: "x-secret") == nil)
        #expect(block.first(name: "te") == nil)
        #expect(block.first(name: "content-length") == "5")
        #expect(block.first(name: "accept") == "text/plain")
        // Pseudo-header fields first (RFC 9113 §8.3).
        #expect(block.map(\.name).prefix(4).allSatisfy { $0.hasPrefix(":") })
    }

    @Test func anAbsoluteFormTargetGivesAuthorityAndPath() throws {
        let head = HTTPRequestHead(
            version: .http1_1,
            method: .GET,
            uri: "http://other:81?q=1",
            headers: ["Host": "ignored"]
        )
        let block = try #require(BridgeHeaders.requestForHTTP2(head, scheme: "http"))
        #expect(block.first(name: ":authority") == "other:81")
        #expect(block.first(name: ":path") == "/?q=1")
        let noHost = HTTPRequestHead(version: .http1_0, method: .GET, uri: "/")
        #expect(BridgeHeaders.requestForHTTP2(noHost, scheme: "http") == nil)
    }

    @Test func anHTTP2ResponseBecomesAnHTTP1Head() throws {
        let block: HPACKHeaders = [":status": "201", "content-type": "text/plain", "connection": "close"]
        let head = try #require(BridgeHeaders.responseForHTTP1(block))
        #expect(head.status.code == 201)
        #expect(head.headers["content-type"] == ["text/plain"])
        #expect(head.headers["connection"].isEmpty)
        #expect(head.headers[":status"].isEmpty)
        #expect(BridgeHeaders.responseForHTTP1(["content-type": "x"]) == nil)
        #expect(BridgeHeaders.responseForHTTP1([":status": "2000"]) == nil)
    }

    @Test func theStrictParsersFramingRulesApplyToBridgedRequests() {
        func check(_ headers: HTTPHeaders, version: HTTPVersion = .http1_1) -> HTTPFramingError? {
            BridgeHeaders.framingError(HTTPRequestHead(version: version, method: .POST, uri: "/", headers: headers))
        }
        #expect(check(["Host": "a", "Content-Length": "3"]) == nil)
        #expect(check(["Host": "a", "Transfer-Encoding": "chunked"]) == nil)
        #expect(
            check(["Host": "a", "Content-Length": "3", "Transfer-Encoding": "chunked"])
                == .contentLengthWithTransferEncoding
        )
        #expect(check(["Host": "a", "Transfer-Encoding": "gzip, chunked"]) == .unsupportedTransferEncoding)
        #expect(check(["Host": "a", "Content-Length": "3", "content-length": "4"]) == .conflictingContentLength)
        #expect(check(["Host": "a", "Content-Length": "+3"]) == .invalidContentLength)
        #expect(check(["Content-Length": "3"]) == .missingHost)
        #expect(check([:], version: .http1_0) == nil)
        #expect(check(["Host": "a", "host": "b"]) == .duplicateHost)
        var many = HTTPHeaders([("Host", "a")])
        for index in 0..<HTTPHeadParser.maxHeaders { many.add(name: "x-\(index)", value: "1") }
        #expect(check(many) == .tooManyHeaders)
    }
}

@Suite struct H1ToH2AdapterTests {
    private func makeChannel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
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
        let table = RoutingTable(
            configuration: configuration,
            sourceZone: "a",
            metrics: ProxyMetrics(),
            logger: Logger(label: "test")
        )
        let service = configuration.services[0]
        let pool = H2UpstreamPool(eventLoop: channel.eventLoop, timeouts: .init())
        let connection = H2ClientConnection(
            service: service,
            table: table,
            pool: pool,
            scheme: "http",
            clientAddress: "127.0.0.1",
            maxRetries: 1
        )
        try H1ToH2Adapter.configure(channel.pipeline.syncOperations, connection: connection)
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    private func response(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    @Test func gRPCOverHTTP1IsAnswered505AndTheConnectionCloses() throws {
        let channel = try makeChannel()
        try channel.writeInbound(
            ByteBuffer(
                string:
                    "POST /pkg.Svc/Call HTTP/1.1\r\nHost: a\r\nContent-Type: application/grpc\r\nContent-Length: 0\r\n\r\n"
            )
        )
        let text = try response(channel)
        #expect(text.hasPrefix("HTTP/1.1 505 HTTP Version Not Supported\r\n"))
        #expect(text.lowercased().contains("x-zoneward-error: http2-required\r\n"))
        #expect(!channel.isActive)
    }

    @Test func smugglingFramingIsRefusedBeforeAnythingIsRelayed() throws {
        let channel = try makeChannel()
        _ = try? channel.writeInbound(
            ByteBuffer(
                string: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            )
        )
        let text = try response(channel)
        #expect(text.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "\(text)")
        #expect(!channel.isActive)
    }

    @Test func aHeadLargerThanTheStrictParsersLimitIsRefused() throws {
        let channel = try makeChannel()
        let big = String(repeating: "a", count: HTTPHeadParser.maxHeadBytes + 10)
        _ = try? channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a\r\nX-Big: \(big)\r\n\r\n"))
        let text = try response(channel)
        #expect(text.hasPrefix("HTTP/1.1 4"))
        #expect(!channel.isActive)
    }
}

/// An HTTP/2 client stream bridged to an HTTP/1.1 endpoint on one embedded loop: the stream's owner
/// (`H2ToH1Stream`, fed the client's frames and writing to a recording client side), and the pooled upstream
/// connection with NIO's client codec, whose bytes the test reads and writes.
@Suite struct H2ToH1StreamTests {
    /// The client's stream as the owner sees it: what was written, and whether it was flushed.
    final class RecordingSide: H2ClientSide, H2Flushable {
        var written: [HTTP2Frame.FramePayload] = []
        var flushed: [HTTP2Frame.FramePayload] = []
        var isWritable = true
        var resumed = 0
        /// Writing HEADERS with END_STREAM closes the stream and tells the owner at once, as NIOHTTP2 does
        /// when the request had ended (it applies a HEADERS frame's state change as it is written; DATA waits
        /// for the flush).
        var closesOnEnd = false
        weak var owner: H2ToH1Stream?

        func write(_ payload: HTTP2Frame.FramePayload) {
            written.append(payload)
            if closesOnEnd, case .headers(let headers) = payload, headers.endStream { owner?.clientClosed() }
        }
        func flush() {
            flushed += written
            written = []
        }
        func resumeReading() { resumed += 1 }
        var flushTarget: any H2Flushable { self }
        func flushAfterRead(_ target: any H2Flushable) -> Bool { false }
    }

    final class Harness {
        let loop = EmbeddedEventLoop()
        let side = RecordingSide()
        var stream: H2ToH1Stream?
        var upstreams: [EmbeddedChannel] = []

        init() throws {
            let configuration = try ZonewardConfiguration.parse(
                yaml: """
                    zones: [{name: a, region: r}]
                    services:
                      - name: web
                        listen: 127.0.0.1:1
                        endpoints: [{address: 127.0.0.1:11, zone: a}]
                    """
            )
            let table = RoutingTable(
                configuration: configuration,
                sourceZone: "a",
                metrics: ProxyMetrics(),
                logger: Logger(label: "test")
            )
            let pool = H1BridgePool(eventLoop: loop, timeouts: ProxyTimeouts()) { [weak self] endpoint, loop in
                guard let self else { return loop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
                let channel = EmbeddedChannel(loop: self.loop)
                do {
                    try channel.pipeline.syncOperations.addHandler(H1BridgeUpstream(endpoint: endpoint))
                    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 11)).wait()
                } catch {
                    return loop.makeFailedFuture(error)
                }
                self.upstreams.append(channel)
                return loop.makeSucceededFuture(channel)
            }
            let client = H1BridgeClient(
                service: configuration.services[0],
                table: table,
                pool: pool,
                scheme: "http",
                clientAddress: "192.0.2.7",
                maxRetries: 2
            )
            stream = H2ToH1Stream(client: client, side: side)
            side.owner = stream
        }

        func send(_ payload: HTTP2Frame.FramePayload) {
            stream?.receive(payload)
            stream?.clientReadComplete()
            loop.run()
        }

        /// A whole `GET /` from the client, its HTTP/1.1 request taken from the endpoint's side.
        func sendGET() throws {
            send(
                H2ToH1StreamTests.head(
                    [(":method", "GET"), (":scheme", "http"), (":authority", "api"), (":path", "/")],
                    end: true
                )
            )
            _ = try upstreamBytes()
        }

        func upstreamBytes(_ index: Int = 0) throws -> String {
            var text = ""
            while let buffer = try upstreams[index].readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            return text
        }

        /// The frames the client was sent (flushed) since the last call.
        func responseFrames() -> [HTTP2Frame.FramePayload] {
            defer { side.flushed = [] }
            return side.flushed
        }
    }

    static func head(_ fields: [(String, String)], end: Bool = false) -> HTTP2Frame.FramePayload {
        var block = HPACKHeaders()
        for (name, value) in fields { block.add(name: name, value: value) }
        return .headers(.init(headers: block, endStream: end))
    }

    @Test func aStreamBecomesOneHTTP1ExchangeWithoutHopByHopFields() throws {
        let harness = try Harness()
        harness.send(
            Self.head(
                [
                    (":method", "GET"), (":scheme", "http"), (":authority", "api"), (":path", "/x"),
                    ("x-forwarded-for", "6.6.6.6"), ("accept", "*/*"),
                ],
                end: true
            )
        )
        #expect(harness.upstreams.count == 1)
        let request = try harness.upstreamBytes()
        #expect(request.hasPrefix("GET /x HTTP/1.1\r\n"))
        #expect(request.contains("Host: api\r\n"))
        #expect(request.contains("X-Forwarded-For: 192.0.2.7\r\n"))
        #expect(!request.contains("6.6.6.6"))
        try harness.upstreams[0].writeInbound(
            ByteBuffer(
                string:
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\nok"
            )
        )
        // The body's last DATA frame ends the stream: no empty DATA frame after it.
        let frames = harness.responseFrames()
        guard frames.count == 2, case .headers(let response) = frames[0], case .data(let body) = frames[1],
            case .byteBuffer(let bytes) = body.data
        else {
            Issue.record("expected HEADERS, DATA(END_STREAM); got \(frames)")
            return
        }
        #expect(response.headers.map(\.name) == [":status", "content-length"])
        #expect(response.headers.first(name: ":status") == "200")
        #expect(String(buffer: bytes) == "ok")
        #expect(body.endStream)
        // The connection went back to the pool: the next stream reuses it.
        #expect(harness.upstreams[0].isActive)
    }

    /// The HTTP/1.1 side of the exchange, with the proxy's own writer and reader: a chunked request's
    /// trailers, an interim head dropped, a body that ends with the connection, bytes after a response.
    @Test func aChunkedRequestEndsWithItsTrailers() throws {
        let harness = try Harness()
        harness.send(Self.head([(":method", "POST"), (":scheme", "http"), (":authority", "api"), (":path", "/up")]))
        harness.send(.data(.init(data: .byteBuffer(ByteBuffer(string: "part")))))
        harness.send(Self.head([("x-sum", "1"), ("x-bad", "a\u{1}b")], end: true))
        let request = try harness.upstreamBytes()
        #expect(request.hasSuffix("\r\n\r\n4\r\npart\r\n0\r\nx-sum: 1\r\n\r\n"), "\(request)")
    }

    @Test func anInterimHeadIsDroppedAndTheFinalOneRelayed() throws {
        let harness = try Harness()
        try harness.sendGET()
        try harness.upstreams[0].writeInbound(
            ByteBuffer(
                string: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
            )
        )
        let frames = harness.responseFrames()
        #expect(frames.count == 2, "\(frames)")
        guard case .headers(let head) = frames.first else { return }
        #expect(head.headers.first(name: ":status") == "200")
    }

    @Test func aBodyWithoutLengthEndsWhenTheEndpointCloses() throws {
        let harness = try Harness()
        try harness.sendGET()
        let upstream = harness.upstreams[0]
        try upstream.writeInbound(ByteBuffer(string: "HTTP/1.0 200 OK\r\n\r\nuntil "))
        try upstream.writeInbound(ByteBuffer(string: "the close"))
        upstream.pipeline.fireChannelReadComplete()
        _ = try? upstream.close().wait()
        let frames = harness.responseFrames()
        #expect(H2StreamRelayTests.dataBytes(frames) == "until the close".utf8.count)
        guard case .data(let last) = frames.last else {
            Issue.record("expected DATA last; got \(frames)")
            return
        }
        #expect(last.endStream)
        #expect(!frames.contains { if case .rstStream = $0 { return true } else { return false } })
    }

    /// A connection reset cuts such a body short: the client's stream is reset, not ended as if complete.
    @Test func aBodyWithoutLengthCutByAnErrorResetsTheStream() throws {
        let harness = try Harness()
        try harness.sendGET()
        let upstream = harness.upstreams[0]
        try upstream.writeInbound(ByteBuffer(string: "HTTP/1.0 200 OK\r\n\r\ncut "))
        upstream.pipeline.fireChannelReadComplete()
        upstream.pipeline.fireErrorCaught(IOError(errnoCode: ECONNRESET, reason: "read(descriptor:pointer:size:)"))
        let frames = harness.side.flushed + harness.side.written
        #expect(frames.contains { if case .rstStream = $0 { return true } else { return false } }, "\(frames)")
        #expect(!frames.contains { if case .data(let data) = $0 { return data.endStream } else { return false } })
        #expect(!upstream.isActive)
    }

    /// Bytes after a complete response were asked for by nobody: that connection is not reused.
    @Test func bytesAfterAResponseCloseTheConnection() throws {
        let harness = try Harness()
        try harness.sendGET()
        try harness.upstreams[0].writeInbound(
            ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\nsmuggled")
        )
        let frames = harness.responseFrames()
        #expect(H2StreamRelayTests.dataBytes(frames) == 2)
        #expect(!harness.upstreams[0].isActive)
    }

    /// A coding other than one final `chunked`, or trailers without end, make the response invalid: 502 before
    /// its head went out, a reset after.
    @Test(arguments: [
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", true),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
                + String(repeating: "X-Pad: \(String(repeating: "p", count: 1000))\r\n", count: 70), false
        ),
    ])
    func anUnrelayableResponseIsRefused(_ response: String, beforeHead: Bool) throws {
        let harness = try Harness()
        try harness.sendGET()
        _ = try? harness.upstreams[0].writeInbound(ByteBuffer(string: response))
        let frames = harness.side.flushed + harness.side.written
        if beforeHead {
            guard case .headers(let head) = frames.first else {
                Issue.record("expected a 502; got \(frames)")
                return
            }
            #expect(head.headers.first(name: ":status") == "502")
        } else {
            #expect(frames.contains { if case .rstStream = $0 { return true } else { return false } }, "\(frames)")
        }
        #expect(!harness.upstreams[0].isActive)
    }

    @Test func aClientResetClosesTheUpstreamConnection() throws {
        let harness = try Harness()
        harness.send(Self.head([(":method", "POST"), (":scheme", "http"), (":authority", "api"), (":path", "/up")]))
        harness.send(.data(.init(data: .byteBuffer(ByteBuffer(string: "part")))))
        let request = try harness.upstreamBytes()
        #expect(request.lowercased().contains("transfer-encoding: chunked\r\n"))
        #expect(request.contains("\r\n\r\n4\r\npart"))
        #expect(harness.upstreams[0].isActive)
        harness.send(.rstStream(.cancel))
        harness.stream?.clientClosed()
        #expect(!harness.upstreams[0].isActive)
    }

    @Test func anUpstreamResetBeforeTheResponseIsA502() throws {
        let harness = try Harness()
        harness.send(
            Self.head([
                (":method", "POST"), (":scheme", "http"), (":authority", "api"), (":path", "/up"),
                ("content-length", "4"),
            ])
        )
        harness.send(.data(.init(data: .byteBuffer(ByteBuffer(string: "part")), endStream: true)))
        _ = try harness.upstreamBytes()
        // A POST whose body went out is not retried.
        _ = try? harness.upstreams[0].close().wait()
        let frames = harness.responseFrames()
        guard case .headers(let response) = frames.first else {
            Issue.record("expected a response head; got \(frames)")
            return
        }
        #expect(response.headers.first(name: ":status") == "502")
        #expect(response.headers.first(name: "x-zoneward-error") == "upstream-reset")
        #expect(harness.upstreams.count == 1)
    }

    /// A response head HTTP/2 cannot carry is the endpoint's invalid response: 502, not relayed.
    @Test func aResponseHeadUnfitForHTTP2IsA502() throws {
        let harness = try Harness()
        harness.send(
            Self.head([(":method", "POST"), (":scheme", "http"), (":authority", "api"), (":path", "/")], end: true)
        )
        _ = try harness.upstreamBytes()
        _ = try? harness.upstreams[0].writeInbound(
            ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad:  v \r\nX-Nul: a\u{0}b\r\n\r\n")
        )
        let frames = harness.responseFrames()
        guard case .headers(let response) = frames.first else {
            Issue.record("expected a response head; got \(frames)")
            return
        }
        #expect(response.headers.first(name: ":status") == "502")
        #expect(response.headers.first(name: "x-nul") == nil)
    }

    /// A body that arrives over several reads goes out as each read completes (nothing waits for the next
    /// read), and only its last DATA frame ends the stream; a response ended by the connection's close
    /// (no length) ends with an empty DATA frame, as nothing said the last bytes were the last.
    @Test func bodyBytesGoOutEachReadAndTheLastFrameEndsTheStream() throws {
        let harness = try Harness()
        try harness.sendGET()
        let upstream = harness.upstreams[0]
        try upstream.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe"))
        upstream.pipeline.fireChannelReadComplete()
        var frames = harness.responseFrames()
        #expect(frames.count == 2, "\(frames)")
        guard case .data(let first) = frames.last, case .byteBuffer(let firstBytes) = first.data else {
            Issue.record("expected the first body bytes at the read's end; got \(frames)")
            return
        }
        #expect(String(buffer: firstBytes) == "he" && !first.endStream)
        try upstream.writeInbound(ByteBuffer(string: "llo"))
        frames = harness.responseFrames()
        guard frames.count == 1, case .data(let last) = frames[0], case .byteBuffer(let lastBytes) = last.data else {
            Issue.record("expected one DATA frame; got \(frames)")
            return
        }
        #expect(String(buffer: lastBytes) == "llo" && last.endStream)
    }

    /// Writing a stream's last frame (trailers) may close it at once, and tell its owner so before the owner
    /// flushes: the frames are flushed all the same.
    @Test func theLastFrameIsFlushedWhenWritingItClosesTheStream() throws {
        let harness = try Harness()
        harness.side.closesOnEnd = true
        try harness.sendGET()
        try harness.upstreams[0].writeInbound(
            ByteBuffer(string: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 1\r\n\r\n")
        )
        let frames = harness.responseFrames()
        #expect(frames.count == 3, "\(frames)")
        guard case .headers(let trailers) = frames.last else {
            Issue.record("expected trailers last; got \(frames)")
            return
        }
        #expect(trailers.endStream)
        #expect(trailers.headers.first(name: "x-sum") == "1")
        #expect(harness.side.written.isEmpty)
    }

    /// A GET whose HEADERS did not end the stream and that then sends DATA: the endpoint gets that body
    /// chunked, never as bytes after a head that says there is none (another request, smuggled).
    @Test func aGETWithABodyGoesChunked() throws {
        let harness = try Harness()
        harness.send(Self.head([(":method", "GET"), (":scheme", "http"), (":authority", "api"), (":path", "/")]))
        let smuggled = "GET /admin HTTP/1.1\r\nHost: api\r\n\r\n"
        harness.send(.data(.init(data: .byteBuffer(ByteBuffer(string: smuggled)), endStream: true)))
        let request = try harness.upstreamBytes()
        #expect(request.hasPrefix("GET / HTTP/1.1\r\n"))
        #expect(request.lowercased().contains("transfer-encoding: chunked\r\n"))
        #expect(request.contains("\r\n\r\n\(String(smuggled.utf8.count, radix: 16))\r\nGET /admin"))
        #expect(request.hasSuffix("\r\n0\r\n\r\n"))
    }

    /// A HEAD request answered by the proxy itself gets the head alone (a body would break NIOHTTP2's
    /// content-length check and leave the stream open).
    @Test func aLocalAnswerToHEADHasNoBody() throws {
        let harness = try Harness()
        harness.send(
            Self.head(
                [(":method", "HEAD"), (":scheme", "http"), (":authority", "a"), ("host", "b"), (":path", "/")],
                end: true
            )
        )
        let frames = harness.responseFrames()
        #expect(frames.count == 1, "\(frames)")
        guard case .headers(let head) = frames.first else { return }
        #expect(head.endStream)
        #expect(head.headers.first(name: ":status") == "400")
        #expect(head.headers.first(name: "x-zoneward-error") == "host-mismatch")
        #expect(harness.upstreams.isEmpty)
    }
}
