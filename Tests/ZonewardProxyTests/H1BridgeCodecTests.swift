import NIOCore
import NIOHPACK
import NIOHTTP1
import Testing

@testable import ZonewardProxy

/// The bridge's HTTP/1.1 side: requests written as bytes, responses read by the strict parser into HTTP/2
/// blocks and body bytes.
@Suite struct H1BridgeCodecTests {
    /// Reads `pieces` (one read each) for one exchange; the events, with bodies joined per read.
    static func read(
        _ pieces: [String],
        isHead: Bool = false
    ) throws(HTTPFramingError) -> (events: [H1ResponseReader.Event], reader: H1ResponseReader) {
        var reader = H1ResponseReader()
        reader.begin(isHeadRequest: isHead)
        var events: [H1ResponseReader.Event] = []
        for piece in pieces {
            reader.append(ByteBuffer(string: piece))
            while let event = try reader.next() { events.append(event) }
        }
        return (events, reader)
    }

    static func body(_ events: [H1ResponseReader.Event]) -> String {
        events.reduce(into: "") { text, event in
            if case .body(let bytes) = event { text += String(buffer: bytes) }
        }
    }

    static func heads(_ events: [H1ResponseReader.Event]) -> [(Int, HPACKHeaders?)] {
        events.compactMap {
            if case .head(let status, let block, _) = $0 { return (status, block) }
            return nil
        }
    }

    static func trailers(_ events: [H1ResponseReader.Event]) -> H1ResponseReader.Trailers? {
        for case .end(let trailers) in events { return trailers }
        return nil
    }

    /// Fields arrive lowercase, hop-by-hop and connection-specific ones dropped (what Connection names too).
    @Test func aHeadBecomesAnHTTP2BlockWithoutConnectionFields() throws {
        let (events, _) = try Self.read([
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\n"
                + "Content-Type: text/plain\r\nProxy-Connection: close\r\nX-Custom-Thing: a b\r\nServer: t\r\n"
                + "Content-Length: 2\r\n\r\nok"
        ])
        let heads = Self.heads(events)
        let block = try #require(heads.first?.1)
        #expect(block.map(\.name) == [":status", "content-type", "x-custom-thing", "server", "content-length"])
        #expect(block.first(name: "x-custom-thing") == "a b")
        #expect(Self.body(events) == "ok")
        #expect(Self.trailers(events) == H1ResponseReader.Trailers.none)
    }

    /// A head HTTP/1.1 allows but HTTP/2 does not (a status past 599) gives no block: the response is
    /// invalid. What the strict parser refuses (a NUL, a name that is not a token) throws.
    @Test func aHeadUnfitForHTTP2GivesNoBlock() throws {
        let (events, _) = try Self.read(["HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n"])
        #expect(Self.heads(events).count == 1)
        #expect(Self.heads(events).first?.1 == nil)
        #expect(throws: HTTPFramingError.self) {
            _ = try Self.read(["HTTP/1.1 200 OK\r\nX-Nul: a\u{0}b\r\nContent-Length: 0\r\n\r\n"])
        }
        #expect(throws: HTTPFramingError.self) {
            _ = try Self.read(["HTTP/1.1 200 OK\r\nbad name: v\r\n\r\n"])
        }
    }

    /// However the bytes are split, the same head, body and trailers come out of a chunked response.
    @Test func aChunkedBodyIsDechunkedWhateverTheSplits() throws {
        let response =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n"
            + "0\r\nGrpc-Status: 0\r\nConnection: x\r\nX-Sum: 9\r\n\r\n"
        for size in [1, 2, 3, 7, 16, response.utf8.count] {
            let bytes = Array(response.utf8)
            let pieces = stride(from: 0, to: bytes.count, by: size).map {
                String(decoding: bytes[$0..<min(bytes.count, $0 + size)], as: UTF8.self)
            }
            let (events, reader) = try Self.read(pieces)
            #expect(Self.body(events) == "hello, world", "pieces of \(size)")
            guard case .fields(let block)? = Self.trailers(events) else {
                Issue.record("pieces of \(size): trailers \(String(describing: Self.trailers(events)))")
                continue
            }
            #expect(block.map(\.name) == ["grpc-status", "x-sum"], "pieces of \(size)")
            #expect(!reader.hasUnreadBytes)
            #expect(!reader.isReading)
        }
    }

    @Test func aBodyWithoutLengthEndsWithTheConnection() throws {
        var (events, reader) = try Self.read(["HTTP/1.1 200 OK\r\n\r\nsome", " more"])
        defer { _ = events }
        #expect(Self.body(events) == "some more")
        #expect(Self.trailers(events) == nil)
        guard case .head(_, _, let keepAlive) = events.first else { return }
        #expect(!keepAlive)
        guard case .end(let trailers)? = reader.connectionClosed() else {
            Issue.record("expected the end at the close")
            return
        }
        #expect(trailers == .none)
        events = []
        #expect(reader.connectionClosed() == nil)
    }

    /// A 1xx head comes first; the final head follows. HEAD, 204 and 304 responses have no body whatever
    /// their head says.
    @Test func interimHeadsAndBodilessResponses() throws {
        var (events, _) = try Self.read(["HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"])
        #expect(Self.heads(events).map(\.0) == [100, 200])
        #expect(Self.body(events) == "x")
        (events, _) = try Self.read(["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"], isHead: true)
        #expect(Self.heads(events).first?.1?.first(name: "content-length") == "5")
        #expect(Self.body(events).isEmpty)
        #expect(Self.trailers(events) == H1ResponseReader.Trailers.none)
        for status in ["204 No Content", "304 Not Modified"] {
            let (events, reader) = try Self.read(["HTTP/1.1 \(status)\r\nContent-Length: 5\r\n\r\n"])
            #expect(Self.trailers(events) == H1ResponseReader.Trailers.none)
            #expect(!reader.isReading)
        }
    }

    /// Bytes past the response are kept unread (the connection is then not reused); nothing is read
    /// without an exchange.
    @Test func bytesPastTheResponseStayUnread() throws {
        let (events, reader) = try Self.read(["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n"])
        #expect(Self.body(events) == "x")
        #expect(reader.hasUnreadBytes)
        var idle = H1ResponseReader()
        idle.append(ByteBuffer(string: "HTTP/1.1 200 OK\r\n\r\n"))
        #expect(try idle.next() == nil)
    }

    /// What the strict parser refuses on the HTTP/1.1 path, it refuses here.
    @Test(arguments: [
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    ])
    func malformedResponsesAreRefused(_ response: String) {
        #expect(throws: HTTPFramingError.self) { _ = try Self.read([response]) }
    }

    /// Trailers are bounded as a head is, however they arrive.
    @Test func trailersWithoutEndAreRefused() {
        let line = "X-Pad: \(String(repeating: "p", count: 1000))\r\n"
        let pieces =
            ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"]
            + Array(repeating: line, count: 70)
        #expect(throws: HTTPFramingError.headTooLarge) { _ = try Self.read(pieces) }
    }

    /// A head trickled in byte by byte is found, and found once.
    @Test func aHeadTrickledInIsRead() throws {
        let response = "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"
        let (events, reader) = try Self.read(response.map { String($0) })
        #expect(Self.heads(events).map(\.0) == [204])
        #expect(!reader.isReading)
    }

    @Test func aHeadTooLargeIsRefused() {
        let big =
            "HTTP/1.1 200 OK\r\n" + String(repeating: "X-Pad: \(String(repeating: "p", count: 1000))\r\n", count: 70)
        #expect(throws: HTTPFramingError.self) { _ = try Self.read([big]) }
    }

    /// Requests: the head as given, a chunked body's chunks and trailers.
    @Test func requestsAreWrittenAsHTTP1() {
        let head = HTTPRequestHead(
            version: .http1_1,
            method: .POST,
            uri: "/a?b",
            headers: ["Host": "api", "Transfer-Encoding": "chunked"]
        )
        var buffer = ByteBuffer()
        H1RequestWriter.head(head, into: &buffer)
        #expect(String(buffer: buffer) == "POST /a?b HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n")
        #expect(H1RequestWriter.isChunked(head))
        #expect(!H1RequestWriter.isChunked(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")))
        buffer.clear()
        H1RequestWriter.chunkStart(300, into: &buffer)
        H1RequestWriter.lastChunk(trailers: ["x-sum": "1"], into: &buffer)
        #expect(String(buffer: buffer) == "12c\r\n0\r\nx-sum: 1\r\n\r\n")
    }
}

extension H1ResponseReader.Event: Equatable {
    public static func == (lhs: Self, rhs: Self) -> Bool {
        switch (lhs, rhs) {
        case (.head(let a, let b, let c), .head(let d, let e, let f)): return a == d && b == e && c == f
        case (.body(let a), .body(let b)): return a == b
        case (.end(let a), .end(let b)): return a == b
        default: return false
        }
    }
}
