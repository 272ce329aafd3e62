import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@testable import ZonewardProxy

/// Client connections of `http2` services run NIOHTTP2 without its header-block validation, and
/// `H2ClientStreamsHandler` checks each block with `H2Headers.isValidFromClient` instead. These tests hold
/// that check to NIOHTTP2's: the same bytes go to a server built as the proxy builds it and to a NIOHTTP2
/// server that validates, and both must accept and refuse the same streams.
@Suite struct H2ClientValidationTests {
    /// Records the streams `H2ClientStreamsHandler` hands over, and their frames.
    final class RecordingOwner: H2ClientStreamOwner {
        let id: HTTP2StreamID
        var frames: [HTTP2Frame.FramePayload] = []
        var closed = false
        let takesMore = true

        init(id: HTTP2StreamID) { self.id = id }
        func receive(_ payload: HTTP2Frame.FramePayload) { frames.append(payload) }
        func clientReadComplete() {}
        func clientClosed() { closed = true }
        func clientWritabilityChanged() {}
    }

    /// A client, the proxy's server (`relayConnection` and the streams handler) and NIOHTTP2's validating
    /// server, fed the same bytes.
    final class Trio {
        let client = EmbeddedChannel()
        let ours = EmbeddedChannel()
        let reference = EmbeddedChannel()
        var owners: [HTTP2StreamID: RecordingOwner] = [:]
        var sides: [HTTP2StreamID: H2ClientStream] = [:]
        var referenceFrames: [HTTP2StreamID: [HTTP2Frame.FramePayload]] = [:]
        var referenceResets: Set<HTTP2StreamID> = []

        init() throws {
            var unvalidated = NIOHTTP2Handler.ConnectionConfiguration()
            unvalidated.headerBlockValidation = .disabled
            unvalidated.contentLengthValidation = .disabled
            try client.pipeline.syncOperations.addHandler(
                NIOHTTP2Handler(mode: .client, connectionConfiguration: unvalidated)
            )
            try ours.pipeline.syncOperations.addHandler(
                NIOHTTP2Handler(
                    mode: .server,
                    connectionConfiguration: H2ServerSettings.relayConnection,
                    streamConfiguration: H2ServerSettings.stream
                )
            )
            try ours.pipeline.syncOperations.addHandler(
                H2ClientStreamsHandler { [unowned self] stream in
                    let owner = RecordingOwner(id: stream.id)
                    self.owners[stream.id] = owner
                    self.sides[stream.id] = stream
                    return owner
                }
            )
            try reference.pipeline.syncOperations.addHandler(
                NIOHTTP2Handler(
                    mode: .server,
                    connectionConfiguration: H2ServerSettings.connection,
                    streamConfiguration: H2ServerSettings.stream
                )
            )
            for channel in [client, ours, reference] {
                try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            }
            try carry()
        }

        /// The client's bytes to both servers, and the proxy's server's back to the client (its peer); what
        /// the reference server passes on and resets, recorded.
        func carry() throws {
            for _ in 0..<10 {
                var moved = false
                while let bytes = try client.readOutbound(as: ByteBuffer.self) {
                    moved = true
                    // A stream error is reported to the pipeline's end, which EmbeddedChannel throws: expected.
                    _ = try? ours.writeInbound(bytes)
                    ours.pipeline.fireChannelReadComplete()
                    _ = try? reference.writeInbound(bytes)
                    reference.pipeline.fireChannelReadComplete()
                }
                while let bytes = try ours.readOutbound(as: ByteBuffer.self) {
                    moved = true
                    _ = try? client.writeInbound(bytes)
                }
                if !moved { break }
            }
            while let frame = try? reference.readInbound(as: HTTP2Frame.self) {
                referenceFrames[frame.streamID, default: []].append(frame.payload)
            }
            while let bytes = try reference.readOutbound(as: ByteBuffer.self) {
                for (stream, type) in Self.frameHeaders(bytes) where type == 3 { referenceResets.insert(stream) }
            }
        }

        func send(_ headers: HPACKHeaders, on stream: HTTP2StreamID, endStream: Bool) throws {
            client.write(
                HTTP2Frame(streamID: stream, payload: .headers(.init(headers: headers, endStream: endStream))),
                promise: nil
            )
            client.flush()
            try carry()
        }

        func sendData(_ text: String, on stream: HTTP2StreamID, endStream: Bool) throws {
            let data = HTTP2Frame.FramePayload.Data(data: .byteBuffer(ByteBuffer(string: text)), endStream: endStream)
            client.write(HTTP2Frame(streamID: stream, payload: .data(data)), promise: nil)
            client.flush()
            try carry()
        }

        /// (stream, type) of each whole frame in `bytes`, skipping the server's.
        static func frameHeaders(_ bytes: ByteBuffer) -> [(HTTP2StreamID, UInt8)] {
            var bytes = bytes
            var found: [(HTTP2StreamID, UInt8)] = []
            while bytes.readableBytes >= 9, let high = bytes.readInteger(as: UInt8.self),
                let low = bytes.readInteger(as: UInt16.self), let type = bytes.readInteger(as: UInt8.self),
                bytes.readInteger(as: UInt8.self) != nil, let id = bytes.readInteger(as: UInt32.self)
            {
                found.append((HTTP2StreamID(Int(id & 0x7FFF_FFFF)), type))
                bytes.moveReaderIndex(forwardBy: min(bytes.readableBytes, Int(high) << 16 | Int(low)))
            }
            return found
        }
    }

    /// A deterministic generator of header blocks, valid and malformed in the ways that matter.
    struct Blocks {
        var state: UInt64

        mutating func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }

        mutating func pick(_ pool: [String]) -> String { pool[next(pool.count)] }

        static let pseudoNames = [
            ":method", ":scheme", ":path", ":authority", ":status", ":protocol", ":", ":Method", ":foo",
        ]
        static let regularNames = [
            "x-a", "user-agent", "te", "connection", "keep-alive", "proxy-connection", "transfer-encoding",
            "upgrade", "http2-settings", "X-Up", "a b", "x\u{7F}", "x\u{1}", "x:y", "content-type", "accept", "(x)",
        ]
        static let values = [
            "GET", "POST", "CONNECT", "http", "https", "/", "", "/a b", "trailers", "Trailers", "gzip", "a\rb",
            "a\nb", "a\u{0}b", " pad", "pad\t", "\u{7F}", "h\u{1}", "ü", "example.com:443", "x\tz", "*",
        ]

        mutating func field(pseudo: Bool) -> (String, String) {
            (pick(pseudo ? Self.pseudoNames : Self.regularNames), pick(Self.values))
        }

        /// A request head: mostly a valid one with a field dropped, doubled or added; sometimes anything.
        mutating func head() -> [(String, String)] {
            var fields: [(String, String)]
            if next(10) < 7 {
                let method = pick(["GET", "POST", "CONNECT", "GET"])
                fields = [(":method", method), (":scheme", "http"), (":path", "/p"), (":authority", "a:1")]
                if method == "CONNECT", next(2) == 0 { fields = [(":method", method), (":authority", "a:443")] }
                switch next(4) {
                case 0: fields.remove(at: next(fields.count))
                case 1: fields.insert(fields[next(fields.count)], at: next(fields.count + 1))
                default: break
                }
                fields.append(("user-agent", "t"))
            } else {
                fields = []
            }
            for _ in 0..<next(4) { fields.insert(field(pseudo: next(3) == 0), at: next(fields.count + 1)) }
            return fields
        }

        /// Trailers: regular fields, sometimes a pseudo-header field.
        mutating func trailers() -> [(String, String)] {
            (0..<(1 + next(3))).map { _ in field(pseudo: next(6) == 0) }
        }
    }

    static func block(_ fields: [(String, String)]) -> HPACKHeaders {
        var headers = HPACKHeaders()
        for (name, value) in fields { headers.add(name: name, value: value) }
        return headers
    }

    /// 2,000 request heads, each on its own stream, in batches of 40 per connection (accepted streams stay
    /// open): the proxy's server hands over exactly the streams NIOHTTP2's validating server accepts.
    @Test func requestHeadsAreJudgedAsNIOHTTP2Judges() throws {
        var blocks = Blocks(state: 0x5EED)
        var accepted = 0
        for _ in 0..<50 {
            let trio = try Trio()
            for index in 0..<40 {
                let id = HTTP2StreamID(2 * index + 1)
                let fields = blocks.head()
                try trio.send(Self.block(fields), on: id, endStream: true)
                let theirs = trio.referenceFrames[id] != nil
                let ours = trio.owners[id] != nil
                #expect(ours == theirs, "\(fields): NIOHTTP2 \(theirs ? "accepts" : "refuses"), the proxy does not")
                #expect(ours == H2Headers.isValidFromClient(Self.block(fields), trailers: false))
                if theirs { accepted += 1 }
            }
        }
        // Both kinds were tried.
        #expect(accepted > 150)
        #expect(accepted < 1_850)
    }

    /// 600 trailer blocks after valid heads: accepted and refused alike, a refused one resetting the stream
    /// and closing it for its owner.
    @Test func trailersAreJudgedAsNIOHTTP2Judges() throws {
        var blocks = Blocks(state: 0x7A11)
        var refused = 0
        for _ in 0..<15 {
            let trio = try Trio()
            for index in 0..<40 {
                let id = HTTP2StreamID(2 * index + 1)
                try trio.send(
                    Self.block([(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "a")]),
                    on: id,
                    endStream: false
                )
                let fields = blocks.trailers()
                try trio.send(Self.block(fields), on: id, endStream: true)
                let theirs = (trio.referenceFrames[id]?.count ?? 0) == 2
                let owner = try #require(trio.owners[id])
                let ours = owner.frames.count == 2
                #expect(ours == theirs, "\(fields): NIOHTTP2 \(theirs ? "accepts" : "refuses"), the proxy does not")
                #expect(owner.closed == !ours)
                if !theirs {
                    refused += 1
                    #expect(trio.referenceResets.contains(id))
                }
            }
        }
        #expect(refused > 60)
        #expect(refused < 540)
    }

    static let headCases: [([(String, String)], Bool)] = [
        ([(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "a")], true),
        ([(":method", "CONNECT"), (":authority", "a:443")], true),
        ([(":method", "CONNECT"), (":authority", "a:443"), (":path", "/")], false),
        ([(":method", "GET"), (":scheme", "https"), (":authority", "a")], false),
        ([(":method", "GET"), (":scheme", "https"), (":path", "")], false),
        ([(":method", "GET"), (":scheme", "https"), (":path", "/"), ("x", "1"), (":authority", "a")], false),
        ([(":method", "GET"), (":method", "GET"), (":scheme", "https"), (":path", "/")], false),
        ([(":method", "GET"), (":scheme", "https"), (":path", "/a b")], false),
        ([(":method", "GET"), (":scheme", "https"), (":path", "/"), ("X-Up", "1")], false),
        ([(":method", "GET"), (":scheme", "https"), (":path", "/"), ("x", "a\r\nb: c")], false),
        ([(":method", "GET"), (":scheme", "https"), (":path", "/"), ("transfer-encoding", "chunked")], false),
        ([(":method", "GET"), (":scheme", "https"), (":path", "/"), ("te", "gzip")], false),
        ([(":method", "GET"), (":scheme", "https"), (":path", "/"), ("te", "trailers")], true),
        ([(":method", "GET"), (":scheme", "https"), (":path", "/"), (":status", "200")], false),
        ([(":method", "GET"), (":scheme", "https"), (":path", "/"), (":protocol", "websocket")], false),
    ]

    @Test(arguments: headCases)
    func requestHeads(_ fields: [(String, String)], valid: Bool) {
        #expect(H2Headers.isValidFromClient(Self.block(fields), trailers: false) == valid)
    }

    @Test func trailersHaveNoPseudoHeaderAndNoForbiddenField() {
        #expect(H2Headers.isValidFromClient(Self.block([("grpc-status", "0"), ("te", "x")]), trailers: true))
        #expect(!H2Headers.isValidFromClient(Self.block([(":path", "/")]), trailers: true))
        #expect(!H2Headers.isValidFromClient(Self.block([("connection", "close")]), trailers: true))
    }

    /// A frame NIOHTTP2 refuses from an owner (DATA after its END_STREAM) resets the stream and tells the
    /// owner, instead of leaving the stream open.
    @Test func aFrameNIOHTTP2RefusesResetsTheStream() throws {
        let trio = try Trio()
        try trio.send(
            Self.block([(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "a")]),
            on: 1,
            endStream: false
        )
        let owner = try #require(trio.owners[1])
        let side = try #require(trio.sides[1])
        side.write(.headers(.init(headers: [":status": "200"], endStream: true)))
        side.write(.data(.init(data: .byteBuffer(ByteBuffer(string: "late")))))
        side.flush()
        var resets: [UInt8] = []
        while let bytes = try trio.ours.readOutbound(as: ByteBuffer.self) {
            resets += Self.Trio.frameHeaders(bytes).filter { $0.0 == 1 }.map(\.1)
        }
        #expect(resets.contains(3), "RST_STREAM on stream 1: \(resets)")
        #expect(owner.closed)
    }

    /// What a request sends after its head: DATA (its text, and whether it ends the stream) or trailers.
    enum Then {
        case data(String, end: Bool)
        case trailers
    }

    static let lengthCases: [(lengths: [String], endsHead: Bool, then: [Then], valid: Bool)] = [
        (["5"], false, [.data("hello", end: true)], true),
        (["5"], false, [.data("hel", end: false), .data("lo", end: true)], true),
        (["5"], false, [.data("hello", end: false), .trailers], true),
        (["5"], false, [.data("hel", end: true)], false),
        (["5"], false, [.data("hello!", end: true)], false),
        (["5"], false, [.data("hello!", end: false)], false),
        (["5"], false, [.data("hel", end: false), .trailers], false),
        (["5"], true, [], false),
        (["0"], true, [], true),
        (["0"], false, [.data("", end: true)], true),
        (["0"], false, [.data("x", end: true)], false),
        (["5", "5"], false, [.data("hello", end: true)], true),
        (["5", "6"], false, [.data("hello", end: true)], false),
        ([], false, [.data("any length", end: true)], true),
    ]

    /// A request's DATA must add up to its content-length (RFC 9113 §8.1.1). NIOHTTP2 does not check that on
    /// the proxy's connections (`relayConnection`); the streams handler does, and resets the same streams
    /// NIOHTTP2's checking server resets.
    @Test(arguments: lengthCases)
    func requestBodiesAreHeldToTheirContentLength(
        lengths: [String],
        endsHead: Bool,
        then: [Then],
        valid: Bool
    ) throws {
        let trio = try Trio()
        var fields = [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "a")]
        for length in lengths { fields.append(("content-length", length)) }
        try trio.send(Self.block(fields), on: 1, endStream: endsHead)
        for step in then {
            switch step {
            case .data(let text, let end): try trio.sendData(text, on: 1, endStream: end)
            case .trailers: try trio.send(Self.block([("x-sum", "1")]), on: 1, endStream: true)
            }
        }
        let accepted = trio.owners[1].map { !$0.closed || $0.frames.count == 1 + then.count } ?? false
        #expect(accepted == valid, "ours")
        #expect(trio.referenceResets.contains(1) == !valid, "NIOHTTP2's")
        if valid { #expect(trio.owners[1]?.frames.count == 1 + then.count) }
    }

    /// Content-length values NIOHTTP2 reads leniently (a sign, a list, spaces) are refused: a length the
    /// proxy and its endpoint could read differently is how requests are smuggled.
    @Test(arguments: ["+5", "5, 5", "5,5", " 5", "-0", "", "0x5", "5.0", "1234567890123456789"])
    func contentLengthIsPlainDigits(_ value: String) throws {
        let fields = [(":method", "POST"), (":scheme", "http"), (":path", "/"), ("content-length", value)]
        #expect(!H2Headers.isValidFromClient(Self.block(fields), trailers: false))
        let trio = try Trio()
        try trio.send(Self.block(fields), on: 1, endStream: false)
        #expect(trio.owners[1] == nil)
    }

    /// More malformed blocks than the limit within the window end the connection with GOAWAY
    /// ENHANCE_YOUR_CALM, as NIOHTTP2 ends one whose streams err too often.
    @Test func manyMalformedBlocksEndTheConnection() throws {
        let trio = try Trio()
        var goAway = false
        var caught: (any Error)?
        for index in 0...H2Limits.maxMalformedBlocks {
            trio.client.write(
                HTTP2Frame(
                    streamID: HTTP2StreamID(2 * index + 1),
                    payload: .headers(.init(headers: Self.block([(":method", "GET")]), endStream: true))
                ),
                promise: nil
            )
            trio.client.flush()
            while let bytes = try trio.client.readOutbound(as: ByteBuffer.self) {
                do {
                    try trio.ours.writeInbound(bytes)
                } catch {
                    caught = error
                }
            }
            while let bytes = try trio.ours.readOutbound(as: ByteBuffer.self) {
                if Self.Trio.frameHeaders(bytes).contains(where: { $0.1 == 7 }) { goAway = true }
                // The client hears its streams reset, so it opens more than its 100 concurrent.
                _ = try? trio.client.writeInbound(bytes)
            }
            #expect(goAway == (index == H2Limits.maxMalformedBlocks))
        }
        #expect(caught is NIOHTTP2Errors.ExcessiveStreamErrors)
        #expect(H2ConnectionGuard.reason(try #require(caught)) == "misbehaving")
    }
}
