import NIOCore
import Testing

@testable import ZonewardProxy

@Suite struct HTTPHeadParserTests {
    let forwarding = ForwardingInfo(clientAddress: "192.0.2.7", scheme: "http")

    func request(_ text: String, trusted: Bool = false) throws(HTTPFramingError) -> (RequestHead, String) {
        let buffer = ByteBuffer(string: text)
        guard let length = HTTPHeadParser.headLength(in: buffer) else { throw .headTooLarge }
        var output = ByteBuffer()
        let head = try HTTPHeadParser.parseRequest(
            buffer.getSlice(at: 0, length: length) ?? buffer,
            forwarding: ForwardingInfo(clientAddress: "192.0.2.7", scheme: "http", trustsPeer: trusted),
            into: &output
        )
        return (head, String(buffer: output))
    }

    func refusal(_ text: String) -> HTTPFramingError? {
        do {
            _ = try request(text)
            return nil
        } catch {
            return error
        }
    }

    @Test func findsTheEndOfTheHead() {
        let buffer = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next")
        #expect(HTTPHeadParser.headLength(in: buffer) == 27)
        #expect(HTTPHeadParser.headLength(in: ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a\r\n")) == nil)
    }

    @Test func forwardsEndToEndHeadersAndRewritesHopByHop() throws {
        let (head, forwarded) = try request(
            "GET /path?q=1 HTTP/1.1\r\nHost: example\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
                + "Keep-Alive: timeout=5\r\nProxy-Authorization: Basic x\r\nTE: trailers\r\nUpgrade: h2c\r\n"
                + "X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n",
            trusted: true
        )
        #expect(head.method == .get)
        #expect(head.keepAlive)
        #expect(head.framing == .none)
        #expect(!head.upgradesToWebSocket)
        #expect(
            forwarded
                == "GET /path?q=1 HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n"
                + "X-Forwarded-For: 198.51.100.1, 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
                + "Forwarded: for=192.0.2.7;proto=http\r\n\r\n"
        )
    }

    /// By default a peer is not trusted: its X-Forwarded-For and Forwarded are replaced, not appended to.
    @Test func untrustedForwardingHeadersAreReplaced() throws {
        let (_, forwarded) = try request(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\nForwarded: for=10.0.0.1\r\n\r\n"
        )
        #expect(
            forwarded
                == "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
                + "Forwarded: for=192.0.2.7;proto=http\r\n\r\n"
        )
        let (_, trusted) = try request(
            "GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=10.0.0.1\r\n\r\n",
            trusted: true
        )
        #expect(trusted.contains("Forwarded: for=10.0.0.1, for=192.0.2.7;proto=http\r\n"))
    }

    /// A WebSocket handshake keeps its Upgrade and Connection headers; other upgrades are stripped.
    @Test func webSocketHandshakesAreForwarded() throws {
        let (head, forwarded) = try request(
            "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        #expect(head.upgradesToWebSocket)
        #expect(forwarded.hasPrefix("GET /chat HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nHost: a\r\n"))
        #expect(forwarded.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"))
        let (h2c, stripped) = try request("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
        #expect(!h2c.upgradesToWebSocket)
        #expect(!stripped.contains("pgrade"))
        let post = try request(
            "POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 1\r\n\r\n"
        )
        #expect(!post.0.upgradesToWebSocket)
    }

    @Test func framesBodies() throws {
        #expect(try request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").0.framing == .contentLength(12))
        #expect(try request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").0.framing == .chunked)
        #expect(
            try request("POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 5\r\nContent-Length: 5\r\n\r\n").0.framing
                == .contentLength(5)
        )
        let (head, forwarded) = try request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        #expect(!head.isIdempotent)
        // The body is relayed as it came, so its framing header stays.
        #expect(forwarded.contains("Transfer-Encoding: chunked\r\n"))
    }

    @Test func http10KeepsAliveOnlyWhenAsked() throws {
        #expect(try request("GET / HTTP/1.0\r\n\r\n").0.keepAlive == false)
        #expect(try request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").0.keepAlive)
        #expect(try request("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").0.keepAlive == false)
    }

    @Test func ipv6ClientsAreQuotedInForwarded() throws {
        var output = ByteBuffer()
        let buffer = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        _ = try HTTPHeadParser.parseRequest(
            buffer,
            forwarding: ForwardingInfo(clientAddress: "::1", scheme: "https"),
            into: &output
        )
        #expect(String(buffer: output).contains("Forwarded: for=\"[::1]\";proto=https\r\n"))
    }

    /// Every way two parsers could disagree about where a request ends is refused.
    @Test(arguments: [
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            HTTPFramingError.contentLengthWithTransferEncoding
        ),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", .conflictingContentLength),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", .invalidContentLength),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", .invalidContentLength),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n", .invalidContentLength),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", .unsupportedTransferEncoding),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            .unsupportedTransferEncoding
        ),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", .unsupportedTransferEncoding),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", .unsupportedTransferEncoding),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n", .obsoleteLineFolding),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\rX-B: 2\r\n\r\n", .bareLineEnding),
        ("GET / HTTP/1.1\nHost: a\n\n", .bareLineEnding),
        ("GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", .bareLineEnding),
        ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", .invalidHeaderName),
        ("GET / HTTP/1.1\r\nHost: a\r\nBad\u{01}Name: 1\r\n\r\n", .invalidHeaderName),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: null\u{00}byte\r\n\r\n", .invalidHeaderValue),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: del\u{7F}\r\n\r\n", .invalidHeaderValue),
        ("GET / HTTP/1.1\r\n\r\n", .missingHost),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", .duplicateHost),
        ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", .invalidRequestLine),
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", .unsupportedVersion),
        ("GET / XTTP/1.1\r\nHost: a\r\n\r\n", .invalidRequestLine),
    ])
    func refusesAmbiguousRequests(text: String, expected: HTTPFramingError) {
        #expect(refusal(text) == expected)
    }

    @Test func refusesOversizedAndOverlongHeads() {
        let many = (0..<101).map { "X-\($0): v\r\n" }.joined()
        #expect(refusal("GET / HTTP/1.1\r\nHost: a\r\n\(many)\r\n") == .tooManyHeaders)
        let huge = "GET / HTTP/1.1\r\nHost: a\r\nX: \(String(repeating: "a", count: 70_000))\r\n\r\n"
        #expect(refusal(huge) == .headTooLarge)
        #expect(HTTPFramingError.headTooLarge.status == 431)
        #expect(HTTPFramingError.unsupportedTransferEncoding.status == 501)
    }

    func response(
        _ text: String,
        head: Bool = false,
        keepAlive: Bool = true,
        http11: Bool = true
    ) throws -> (ResponseHead, String?, Bool) {
        var output = ByteBuffer()
        let (parsed, rewritten, close) = try HTTPHeadParser.parseResponse(
            ByteBuffer(string: text),
            isHeadRequest: head,
            clientKeepAlive: keepAlive,
            clientIsHTTP11: http11,
            into: &output
        )
        return (parsed, rewritten ? String(buffer: output) : nil, close)
    }

    @Test func responseFraming() throws {
        let ok = try response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
        #expect(ok.0.framing == .contentLength(3))
        #expect(ok.0.keepAlive)
        #expect(ok.1 == nil)  // nothing to change: forwarded as is
        #expect(try response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", head: true).0.framing == .none)
        #expect(try response("HTTP/1.1 204 No Content\r\n\r\n").0.framing == .none)
        #expect(try response("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").0.framing == .none)
        #expect(try response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").0.framing == .chunked)
        let untilClose = try response("HTTP/1.1 200 OK\r\n\r\n")
        #expect(untilClose.0.framing == .untilClose)
        #expect(!untilClose.0.keepAlive)
        #expect(untilClose.2)  // the client must be closed too
        #expect(untilClose.1?.hasSuffix("Connection: close\r\n\r\n") == true)
        #expect(try response("HTTP/1.1 100 Continue\r\n\r\n").0.isInterim)
        #expect(try response("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").0.status == 200)
    }

    @Test func responseConnectionHandling() throws {
        let closing = try response("HTTP/1.1 200 OK\r\nConnection: close\r\nKeep-Alive: x\r\nContent-Length: 1\r\n\r\n")
        #expect(!closing.0.keepAlive)
        #expect(closing.1 == "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n")
        #expect(!closing.2)  // the client keeps its connection: the proxy opens another upstream
        let clientCloses = try response("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", keepAlive: false)
        #expect(clientCloses.1 == "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n")
        let http10 = try response("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", http11: false)
        #expect(http10.1 == "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n")
    }

    /// `Connection: keep-alive` alone is this hop's own option when the client connection stays open: the
    /// head goes out unchanged. Anything else in Connection, or a client that closes, still rewrites it.
    @Test func keepAliveConnectionHeaderIsRelayedWhenTrue() throws {
        let text = "HTTP/1.1 200 OK\r\nServer: nginx\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n"
        #expect(try response(text).1 == nil)
        #expect(try response(text, http11: false).1 == nil)  // already says what an HTTP/1.0 client needs
        let closing = try response(text, keepAlive: false)
        #expect(closing.1 == "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 1\r\nConnection: close\r\n\r\n")
        let nominating = try response(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nContent-Length: 1\r\n\r\n"
        )
        #expect(nominating.1 == "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n")
        let withKeepAliveHeader = try response(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 1\r\n\r\n"
        )
        #expect(withKeepAliveHeader.1 == "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n")
    }

    /// Field values are checked eight bytes at a time: every invalid byte is found wherever it sits, and
    /// tabs and obs-text are accepted wherever they sit.
    @Test func fieldValueBytesAtEveryPosition() {
        for length in 0..<24 {
            for position in 0..<max(length, 1) {
                for (bad, valid) in [
                    (UInt8(0), false), (0x1F, false), (0x7F, false), (0x0B, false), (9, true), (0x80, true),
                    (0xFF, true), (0x20, true),
                ] {
                    var value = [UInt8](repeating: UInt8(ascii: "v"), count: length)
                    if length > 0 { value[position] = bad }
                    let ok = value.withUnsafeBytes { HTTPHeadParser.allFieldValueBytes($0, 0, value.count) }
                    #expect(ok == (length == 0 || valid), "byte \(bad) at \(position) of \(length)")
                }
            }
        }
    }

    @Test func forwardedHeadIsCopiedWhole() throws {
        // Many kept lines around dropped ones: runs of adjacent lines are copied together.
        let text =
            "POST /upload HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nTE: x\r\nC: 3\r\nD: 4\r\n"
            + "X-Forwarded-Proto: https\r\nE: 5\r\nContent-Length: 2\r\n\r\n"
        let (head, forwarded) = try request(text)
        #expect(head.framing == .contentLength(2))
        #expect(
            forwarded
                == "POST /upload HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nContent-Length: 2\r\n"
                + "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nForwarded: for=192.0.2.7;proto=http\r\n\r\n"
        )
    }

    @Test func refusesBadResponses() {
        #expect(throws: HTTPFramingError.self) { try response("HTTP/1.1 2000 OK\r\n\r\n") }
        #expect(throws: HTTPFramingError.self) {
            try response("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        }
        #expect(throws: HTTPFramingError.self) { try response("ICY 200 OK\r\n\r\n") }
        // Both framings: never forwarded with both (the client could read either).
        #expect(throws: HTTPFramingError.contentLengthWithTransferEncoding) {
            try response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
        }
    }

    /// 101 is relayed as it came (its Upgrade and Connection headers are for the client); 103 is interim.
    @Test func switchingProtocolsAndEarlyHints() throws {
        let text = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        let switching = try response(text)
        #expect(switching.0.status == 101)
        #expect(!switching.0.isInterim)
        #expect(switching.1 == nil)
        #expect(!switching.2)
        #expect(try response("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n").0.isInterim)
    }
}

@Suite struct ChunkedBodyScannerTests {
    func scan(_ text: String, in pieces: Int = 1) throws -> (taken: Int, complete: Bool) {
        var tracker = BodyTracker(.chunked)
        let bytes = Array(text.utf8)
        var taken = 0
        let size = max(1, bytes.count / pieces)
        var offset = 0
        while offset < bytes.count && !tracker.isComplete {
            let end = min(bytes.count, offset + size)
            taken += try bytes[offset..<end].withUnsafeBytes { try tracker.consume($0) }
            offset = end
        }
        return (taken, tracker.isComplete)
    }

    @Test(arguments: [1, 3, 1000])
    func findsTheEndOfAChunkedBodyInAnyPieces(pieces: Int) throws {
        let body = "5\r\nhello\r\n1A;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n"
        let result = try scan(body + "GET /next HTTP/1.1", in: pieces)
        #expect(result.complete)
        #expect(result.taken == body.utf8.count)
    }

    /// Whitespace after a chunk size is allowed before an extension or the end of the line, nothing else.
    @Test func whitespaceAfterTheChunkSize() throws {
        let body = "5 \r\nhello\r\n3 \t;ext=\"a b\"\r\nabc\r\n0\t\r\n\r\n"
        let result = try scan(body + "GET /next HTTP/1.1")
        #expect(result.complete)
        #expect(result.taken == body.utf8.count)
    }

    @Test func incompleteBodyIsNotComplete() throws {
        #expect(try scan("5\r\nhel").complete == false)
    }

    @Test(arguments: [
        "5\nhello\r\n0\r\n\r\n", "5\r\nhello\n0\r\n\r\n", "zz\r\n", "-5\r\n", "1000000000000000\r\n",
        "5\r\nhelloX\r\n", "0\r\nbad trailer\u{01}\r\n\r\n", "\r\n", "5 5\r\nhello\r\n0\r\n\r\n",
        "5\tx\r\nhello\r\n0\r\n\r\n", "0 0\r\n\r\n",
    ])
    func refusesMalformedChunks(text: String) {
        #expect(throws: HTTPFramingError.invalidChunk) { try scan(text) }
    }

    @Test func contentLengthTracking() throws {
        var tracker = BodyTracker(.contentLength(5))
        let taken = try Array("abcdefgh".utf8).withUnsafeBytes { try tracker.consume($0) }
        #expect(taken == 5)
        #expect(tracker.isComplete)
    }
}
