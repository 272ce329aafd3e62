import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import Testing
import ZonePlannerTesting

@testable import ZonewardProxy

@Suite struct H2HeadersTests {
    @Test func connectionSpecificFieldsAreDroppedAndTEKeptOnlyAsTrailers() {
        let request: HPACKHeaders = [
            ":method": "POST", ":path": "/pkg.Svc/Call", ":scheme": "http", ":authority": "api",
            "connection": "keep-alive", "keep-alive": "timeout=5", "proxy-connection": "x",
            "transfer-encoding": "chunked", "upgrade": "h2c", "te": "trailers", "content-type": "application/grpc",
        ]
        let out = H2Headers.requestForUpstream(request, clientAddress: "10.0.0.7", scheme: "http", trusted: false)
        for name in ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"] {
            #expect(out.first(name: name) == nil, "\(name) must not be forwarded")
        }
        #expect(out[canonicalForm: "te"] == ["trailers"])
        #expect(out.first(name: ":path") == "/pkg.Svc/Call")
        #expect(out.first(name: "content-type") == "application/grpc")
        let gzip = H2Headers.requestForUpstream(
            ["te": "gzip"],
            clientAddress: "1.2.3.4",
            scheme: "http",
            trusted: false
        )
        #expect(gzip.first(name: "te") == nil)
    }

    /// HTTP/1.1 names (tokens) become HTTP/2's lowercase ones, whether common (a constant) or rare (a copy);
    /// field kinds are told apart whatever the case.
    @Test func namesAreLoweredAndToldApartInAnyCase() {
        let names = [
            "Content-Type", "CONTENT-LENGTH", "Server", "date", "X-Custom-Thing", "x-already", "Set-Cookie",
            "content-encoding", "Content-Encodinh",
        ]
        for name in names {
            let lowered = Array(name.utf8).withUnsafeBytes { H2Headers.lowercaseName($0) }
            #expect(lowered == name.lowercased(), "\(name)")
        }
        #expect(H2Headers.field("Transfer-Encoding") == .connectionSpecific)
        #expect(H2Headers.field("X-FORWARDED-PROTO") == .xForwardedProto)
        #expect(H2Headers.field("TE") == .te)
        #expect(H2Headers.field("Tf") == .regular)
        #expect(H2Headers.field("Forwarded") == .forwarded)
        #expect(H2Headers.field(":path") == .pseudo)
        #expect(H2Headers.field("") == .regular)
        #expect(H2Headers.field("Connection") == .connectionSpecific)
        #expect(H2Headers.field("Connectiom") == .regular)
    }

    @Test func pseudoHeadersStayFirst() {
        let request: HPACKHeaders = [":method": "GET", ":path": "/", ":scheme": "http", ":authority": "a", "x": "y"]
        let out = H2Headers.requestForUpstream(request, clientAddress: "1.2.3.4", scheme: "http", trusted: false)
        let names = out.map(\.name)
        let lastPseudo = names.lastIndex { $0.hasPrefix(":") } ?? -1
        let firstRegular = names.firstIndex { !$0.hasPrefix(":") } ?? names.count
        #expect(lastPseudo < firstRegular)
    }

    @Test func forwardingFieldsOfAnUntrustedPeerAreReplaced() {
        let request: HPACKHeaders = [
            "x-forwarded-for": "6.6.6.6", "forwarded": "for=6.6.6.6", "x-forwarded-proto": "https",
        ]
        let out = H2Headers.requestForUpstream(request, clientAddress: "10.0.0.7", scheme: "http", trusted: false)
        #expect(out[canonicalForm: "x-forwarded-for"] == ["10.0.0.7"])
        #expect(out.first(name: "forwarded") == "for=10.0.0.7;proto=http")
        #expect(out[canonicalForm: "x-forwarded-proto"] == ["http"])
    }

    @Test func forwardingFieldsOfATrustedPeerAreExtended() {
        let request: HPACKHeaders = ["x-forwarded-for": "198.51.100.9", "forwarded": "for=198.51.100.9"]
        let out = H2Headers.requestForUpstream(request, clientAddress: "::1", scheme: "https", trusted: true)
        #expect(out.first(name: "x-forwarded-for") == "198.51.100.9, ::1")
        #expect(out.first(name: "forwarded") == #"for=198.51.100.9, for="[::1]";proto=https"#)
    }

    @Test func responsesLoseConnectionSpecificFields() {
        let response: HPACKHeaders = [":status": "200", "connection": "close", "grpc-status": "0"]
        let out = H2Headers.responseForClient(response)
        #expect(out.first(name: "connection") == nil)
        #expect(out.first(name: "grpc-status") == "0")
        #expect(H2Headers.status(out) == 200)
        #expect(H2Headers.grpcStatus(out) == 0)
    }

    @Test(arguments: [
        ("connection", H2Headers.Field.connectionSpecific), ("Keep-Alive", .connectionSpecific),
        ("TRANSFER-ENCODING", .connectionSpecific), ("upgrade", .connectionSpecific),
        ("proxy-connection", .connectionSpecific), ("http2-settings", .connectionSpecific), ("te", .te),
        ("TE", .te), ("x-forwarded-for", .xForwardedFor), ("X-Forwarded-Proto", .xForwardedProto),
        ("forwarded", .forwarded), ("grpc-timeout", .grpcTimeout), (":path", .pseudo), ("", .regular),
        ("connectiom", .regular), ("content-type", .contentType), ("Content-Type", .contentType),
        ("content-typf", .regular), ("x-forwarded-fox", .regular), ("t", .regular),
    ])
    func fieldsAreToldByName(_ name: String, _ expected: H2Headers.Field) {
        #expect(H2Headers.field(name) == expected)
    }

    /// `requestForUpstream` relays names as they are: the HTTP/1.1 bridge lowercases them first (HTTP/2
    /// clients' are lowercase, or refused by `isValidFromClient`).
    @Test func anUppercaseNameFromTheBridgeIsLowercasedAndIPv6IsBracketed() throws {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
        head.headers.add(name: "Host", value: "api")
        head.headers.add(name: "X-Custom", value: "v")
        let block = try #require(BridgeHeaders.requestForHTTP2(head, scheme: "https"))
        let out = H2Headers.requestForUpstream(
            block,
            clientAddress: "2001:db8::1",
            scheme: "https",
            trusted: false
        )
        #expect(out.first(name: "x-custom") == "v")
        #expect(!out.contains { $0.name == "X-Custom" })
        #expect(out.first(name: "forwarded") == #"for="[2001:db8::1]";proto=https"#)
        #expect(out.first(name: "x-forwarded-proto") == "https")
    }

    @Test func upstreamBlocksAreValidated() {
        #expect(H2Headers.isValidFromUpstream([":status": "200", "content-type": "text/plain"], trailers: false))
        #expect(H2Headers.isValidFromUpstream(["grpc-status": "0", "grpc-message": "a b"], trailers: true))
        #expect(H2Headers.isValidFromUpstream([:], trailers: true))
        #expect(!H2Headers.isValidFromUpstream([:], trailers: false), "a head needs :status")
        #expect(!H2Headers.isValidFromUpstream([":status": "200"], trailers: true), "no pseudo-field in trailers")
        #expect(!H2Headers.isValidFromUpstream([":status": "200", ":status": "204"], trailers: false))
        #expect(!H2Headers.isValidFromUpstream(["a": "b", ":status": "200"], trailers: false))
        #expect(!H2Headers.isValidFromUpstream([":status": "200", ":method": "GET"], trailers: false))
        for bad in ["a\rb", "a\nb", "a\u{0}b", " a", "a ", "\ta", "a\t"] {
            #expect(
                !H2Headers.isValidFromUpstream([":status": "200", "x": bad], trailers: false),
                "\(bad.debugDescription)"
            )
        }
        for bad in ["X-Upper", "bad name", "bad:name", "", "é"] {
            #expect(
                !H2Headers.isValidFromUpstream([":status": "200", bad: "v"], trailers: false),
                "\(bad.debugDescription)"
            )
        }
        #expect(H2Headers.isValidFromUpstream([":status": "200", "x": "", "y": "a\tb c"], trailers: false))
        for status in ["0200", "abc", "20", "600", "101"] {
            #expect(!H2Headers.isValidFromUpstream([":status": status], trailers: false), "\(status)")
        }
        #expect(H2Headers.isValidFromUpstream([":status": "103"], trailers: false))
        #expect(!H2Headers.isValidFromUpstream([":status": "103"], trailers: false, endStream: true))
        #expect(H2Headers.isValidFromUpstream([":status": "204"], trailers: false, endStream: true))
    }

    @Test(arguments: [
        ("1S", TimeAmount.seconds(1)), ("100m", .milliseconds(100)), ("5u", .microseconds(5)),
        ("7n", .nanoseconds(7)), ("2M", .seconds(120)), ("1H", .seconds(3600)), ("99999999S", .seconds(99_999_999)),
        ("0m", .milliseconds(0)),
    ])
    func grpcTimeoutParses(_ text: String, _ expected: TimeAmount) {
        #expect(H2Headers.grpcTimeout(text) == expected)
    }

    /// Malformed values are ignored (nil), never trapped on: too many digits, no unit, signs, spaces, a
    /// unit alone, huge hours (capped, no overflow).
    @Test(arguments: ["", "S", "1", "123456789S", "-1S", "+1S", " 1S", "1 S", "1s", "1.5S", "1SS", "１S", "1\u{0}"])
    func badGrpcTimeoutsAreNil(_ text: String) {
        #expect(H2Headers.grpcTimeout(text) == nil)
    }

    /// Forwarded upstream, grpc-timeout is canonical (or gone), and no value a client chose is indexed in the
    /// HPACK table many clients share but its authority and user agent: otherwise only the proxy's own values
    /// and whole static-table entries are.
    @Test func grpcTimeoutIsRewrittenAndNothingIsIndexed() {
        let good = H2Headers.requestForUpstream(
            [
                ":method": "PUT", ":scheme": "http", ":path": "/a", ":authority": "api", "grpc-timeout": "1500m",
                "x-a": "b", "content-type": "application/grpc+json", "te": "trailers", "user-agent": "grpc-go/1.0",
            ],
            clientAddress: "1.2.3.4",
            scheme: "http",
            trusted: false
        )
        #expect(good.first(name: "grpc-timeout") == "1500000u")
        let indexed = good.filter { $0.indexable == .indexable }.map { "\($0.name): \($0.value)" }
        #expect(
            indexed == [
                ":scheme: http", ":path: /a", ":authority: api", "te: trailers", "user-agent: grpc-go/1.0",
                "x-forwarded-for: 1.2.3.4", "x-forwarded-proto: http", "forwarded: for=1.2.3.4;proto=http",
            ]
        )
        // A trusted peer's chain is its own: not indexed (its request had no `forwarded`: that one is ours).
        let chained = H2Headers.requestForUpstream(
            [":method": "GET", "x-forwarded-for": "9.9.9.9", "content-type": "application/grpc"],
            clientAddress: "1.2.3.4",
            scheme: "https",
            trusted: true
        )
        let chainIndexed = chained.filter { $0.indexable == .indexable }.map(\.name)
        #expect(chainIndexed == [":method", "content-type", "x-forwarded-proto", "forwarded"])
        for bad in ["bad", "1", "123456789S", "-5m"] {
            let out = H2Headers.requestForUpstream(
                ["grpc-timeout": bad],
                clientAddress: "1.2.3.4",
                scheme: "http",
                trusted: false
            )
            #expect(out.first(name: "grpc-timeout") == nil, "\(bad) must not be forwarded")
        }
        var secret = HPACKHeaders()
        secret.add(name: "authorization", value: "Bearer x", indexing: .neverIndexed)
        let kept = H2Headers.requestForUpstream(secret, clientAddress: "1.2.3.4", scheme: "http", trusted: false)
        #expect(kept.contains { $0.name == "authorization" && $0.indexable == .neverIndexed })
    }

    /// The authority, path and user agent are indexed upstream only when the client indexed them.
    @Test func opaqueFieldsFollowTheClientsIndexing() {
        var request = HPACKHeaders()
        request.add(name: ":method", value: "GET", indexing: .indexable)
        request.add(name: ":scheme", value: "https", indexing: .indexable)
        request.add(name: ":path", value: "/users/7", indexing: .nonIndexable)
        request.add(name: ":authority", value: "api", indexing: .neverIndexed)
        request.add(name: "user-agent", value: "curl/8", indexing: .nonIndexable)
        let out = H2Headers.requestForUpstream(request, clientAddress: "1.2.3.4", scheme: "https", trusted: false)
        #expect(
            out.filter { $0.name.hasPrefix(":") || $0.name == "user-agent" }.map(\.indexable) == [
                .indexable, .indexable, .nonIndexable, .neverIndexed, .nonIndexable,
            ]
        )
        let simple: HPACKHeaders = [
            ":method": "GET", ":scheme": "http", ":path": "/a", ":authority": "api", "user-agent": "h2load",
        ]
        let fast = H2Headers.requestForUpstream(simple, clientAddress: "1.2.3.4", scheme: "http", trusted: false)
        #expect(
            fast.map { "\($0.name): \($0.value)" } == [
                ":method: GET", ":scheme: http", ":path: /a", ":authority: api", "user-agent: h2load",
                "x-forwarded-for: 1.2.3.4", "x-forwarded-proto: http", "forwarded: for=1.2.3.4;proto=http",
            ]
        )
        #expect(fast.allSatisfy { $0.indexable == .indexable })
    }

    /// A client's trailers go upstream indexed by the proxy's rule, whatever the client's encoder chose (the
    /// upstream table is shared); never-indexed stays so, connection-specific fields go.
    @Test func clientTrailersAreNotIndexedUpstream() {
        var trailers = HPACKHeaders()
        trailers.add(name: "x-checksum", value: "abc", indexing: .indexable)
        trailers.add(name: "x-secret", value: "s", indexing: .neverIndexed)
        trailers.add(name: "connection", value: "close", indexing: .indexable)
        let out = H2Headers.trailersForUpstream(trailers)
        #expect(out.map(\.name) == ["x-checksum", "x-secret"])
        #expect(out.map(\.indexable) == [.nonIndexable, .neverIndexed])
    }

    @Test(arguments: [
        (TimeAmount.nanoseconds(5), "5n"), (.milliseconds(100), "100000u"), (.seconds(100), "100000m"),
        (.seconds(99_999_999), "99999999S"), (.seconds(200_000_000), "3333334M"), (.nanoseconds(-3), "0n"),
    ])
    func grpcTimeoutsAreFormattedInTheFinestUnitThatFits(_ timeout: TimeAmount, _ expected: String) {
        #expect(H2Headers.formatGrpcTimeout(timeout) == expected)
        #expect(H2Headers.grpcTimeout(expected) != nil)
    }

    @Test func hugeHoursDoNotOverflow() {
        let value = H2Headers.grpcTimeout("99999999H")
        #expect(value != nil)
        #expect((value?.nanoseconds ?? -1) > 0)
    }

    @Test(arguments: [
        ("application/grpc", true), ("application/grpc+proto", true), ("application/grpc; charset=x", true),
        ("APPLICATION/GRPC", true), ("application/grpc-web", false), ("application/json", false),
        ("application/grp", false), ("", false), ("xpplication/grpc", false),
    ])
    func grpcIsRecognisedByContentType(_ type: String, _ expected: Bool) {
        #expect(H2Headers.isGRPC(["content-type": type]) == expected)
        var facts = H2Headers.RequestFacts()
        let request: HPACKHeaders = [":method": "POST", ":path": "/", ":scheme": "http", "content-type": type]
        _ = H2Headers.requestForUpstream(request, forwarding: Self.forwarding, facts: &facts)
        #expect(facts.isGRPC == expected)
    }

    static let forwarding = H2Headers.Forwarding(clientAddress: "10.0.0.7", scheme: "http", trusted: false)

    /// What the relay reads of a request comes from the pass that builds its upstream block: the first
    /// `content-type` and well-formed `grpc-timeout`, and whether it is HEAD.
    @Test func requestFactsAreReadWhileTheBlockIsBuilt() {
        var facts = H2Headers.RequestFacts()
        let request: HPACKHeaders = [
            ":method": "HEAD", ":path": "/", ":scheme": "http", "grpc-timeout": "soon", "grpc-timeout": "2S",
            "grpc-timeout": "5S", "content-type": "application/grpc", "content-type": "text/plain",
        ]
        _ = H2Headers.requestForUpstream(request, forwarding: Self.forwarding, facts: &facts)
        #expect(facts.isHead)
        #expect(facts.isGRPC)
        #expect(facts.grpcTimeout == .seconds(2))

        var plain = H2Headers.RequestFacts()
        let get: HPACKHeaders = [":method": "GET", ":path": "/HEAD", ":scheme": "http", "x-method": "HEAD"]
        _ = H2Headers.requestForUpstream(get, forwarding: Self.forwarding, facts: &plain)
        #expect(!plain.isHead)
        #expect(!plain.isGRPC)
        #expect(plain.grpcTimeout == nil)
    }

    /// A request relayed as the client sent it (its own block, the proxy's fields appended) is the block
    /// built field by field, facts included, on thousands of generated requests.
    @Test func aRequestRelayedAsSentIsTheRebuiltOne() {
        let fields: [(String, [String])] = [
            (":method", ["GET", "POST", "HEAD", "PUT"]), (":scheme", ["http", "https"]),
            (":path", ["/", "/index.html", "/pkg.Svc/Call"]), (":authority", ["api", "api:8080"]),
            ("user-agent", ["grpc-go/1.60", "curl/8"]), ("content-type", ["application/grpc", "text/plain"]),
            ("te", ["trailers", "Trailers", "gzip"]), ("grpc-timeout", ["1S", "soon"]),
            ("accept-encoding", ["gzip, deflate", "br"]), ("x-forwarded-for", ["6.6.6.6"]),
            ("forwarded", ["for=6.6.6.6"]), ("x-forwarded-proto", ["https"]), ("connection", ["close"]),
            ("x-custom", ["a", "b"]), ("grpc-accept-encoding", ["gzip"]),
        ]
        let indexings: [HPACKIndexing] = [.indexable, .nonIndexable, .neverIndexed]
        var random = SplitMix64(state: 0x5EED_0009)
        var relayedAsSent = 0
        for _ in 0..<3_000 {
            var request = HPACKHeaders()
            for _ in 0..<Int.random(in: 0...8, using: &random) {
                let (name, values) = fields.randomElement(using: &random)!
                let indexing = indexings.randomElement(using: &random)!
                // Mostly indexed, as clients send their fields.
                request.add(
                    name: name,
                    value: values.randomElement(using: &random)!,
                    indexing: Int.random(in: 0..<4, using: &random) == 0 ? indexing : .indexable
                )
            }
            for trusted in [false, true] {
                let forwarding = H2Headers.Forwarding(clientAddress: "10.0.0.7", scheme: "http", trusted: trusted)
                var facts = H2Headers.RequestFacts()
                var rebuiltFacts = H2Headers.RequestFacts()
                let out = H2Headers.requestForUpstream(request, forwarding: forwarding, facts: &facts)
                let rebuilt = H2Headers.requestRebuilt(request, forwarding: forwarding, facts: &rebuiltFacts)
                #expect(
                    Array(out.map { "\($0.name)=\($0.value) \($0.indexable)" })
                        == Array(rebuilt.map { "\($0.name)=\($0.value) \($0.indexable)" })
                )
                #expect(facts == rebuiltFacts)
                if out.count == request.count + 3 { relayedAsSent += 1 }
            }
        }
        #expect(relayedAsSent > 100, "requests relayed unchanged were generated")
    }

    /// What the relay reads of a response comes from the pass that validates it.
    @Test func responseFactsAreReadWhileTheBlockIsValidated() {
        var facts = H2Headers.ResponseFacts()
        let head: HPACKHeaders = [":status": "204", "content-length": "0", "connection": "close"]
        #expect(H2Headers.isValidFromUpstream(head, trailers: false, facts: &facts))
        #expect(facts == H2Headers.ResponseFacts(contentLength: 0, status: 204, hasConnectionSpecific: true))

        var plain = H2Headers.ResponseFacts()
        #expect(H2Headers.isValidFromUpstream([":status": "200", "server": "x"], trailers: false, facts: &plain))
        #expect(plain == H2Headers.ResponseFacts(contentLength: nil, status: 200, hasConnectionSpecific: false))

        var trailers = H2Headers.ResponseFacts()
        #expect(H2Headers.isValidFromUpstream(["grpc-status": "0", "te": "x"], trailers: true, facts: &trailers))
        #expect(trailers.status == nil)
        #expect(!trailers.hasConnectionSpecific)
    }

    final class CountingFlush: H2Flushable {
        var flushes = 0
        /// Run by the flush: what a connection's flush may do to the set that flushes it.
        var onFlush: () -> Void = {}
        func flush() {
            flushes += 1
            onFlush()
        }
    }

    /// A flush that uses the set again (NIOHTTP2 closes a stream, the stream's end closes a drained upstream
    /// connection, whose `channelInactive` flushes the set): no overlapping access (a trap in debug builds
    /// when the set was a struct stored in its handler), and what it inserted is flushed too.
    @Test func aFlushSetMayBeUsedByTheFlushesItRuns() {
        let set = H2FlushSet()
        let first = CountingFlush()
        let second = CountingFlush()
        let third = CountingFlush()
        first.onFlush = {
            set.insert(second)
            set.flushAll()
            set.insert(third)
        }
        set.insert(first)
        set.flushAll()
        #expect([first.flushes, second.flushes, third.flushes] == [1, 1, 1])
    }

    @Test func aFlushSetFlushesEachConnectionOnce() {
        let first = CountingFlush()
        let second = CountingFlush()
        let set = H2FlushSet()
        set.insert(first)
        set.insert(second)
        set.insert(first)
        set.flushAll()
        #expect(first.flushes == 1)
        #expect(second.flushes == 1)
        set.flushAll()
        #expect(first.flushes == 1, "flushed sets are empty")
    }

    @Test(arguments: ["", "abc", "20", "2000", "-10", "999", "099x", "+20", "600", "099"])
    func badStatusesAreNil(_ text: String) {
        #expect(H2Headers.status([":status": text]) == nil)
    }

    /// `:status` is read from the block's first field: anywhere else, the block is malformed.
    @Test func theStatusIsTheFirstField() {
        #expect(H2Headers.status([":status": "204", "x": "1"]) == 204)
        #expect(H2Headers.status(["x": "1", ":status": "204"]) == nil)
        #expect(H2Headers.status([:]) == nil)
        #expect(!H2Headers.isValidFromUpstream(["x": "1", ":status": "204"], trailers: false))
    }

    @Test(arguments: ["", "x", "-1", "1234", "1 "])
    func badGrpcStatusesAreNil(_ text: String) {
        #expect(H2Headers.grpcStatus(["grpc-status": text]) == nil)
    }

    @Test func trailersOnlyCarriesTheHead() {
        let only = H2Headers.grpcTrailers(status: 14, message: "upstream stream reset", withHead: true)
        #expect(only.first(name: ":status") == "200")
        #expect(only.first(name: "content-type") == "application/grpc")
        #expect(H2Headers.grpcStatus(only) == 14)
        let trailers = H2Headers.grpcTrailers(status: 4, message: "deadline", withHead: false)
        #expect(trailers.first(name: ":status") == nil)
        #expect(trailers.first(name: "grpc-message") == "deadline")
    }
}

@Suite struct H2PoolAccountingTests {
    @Test func aConnectionTakesStreamsUpToThePeersLimit() {
        var slots = H2StreamSlots()
        slots.maxConcurrent = 2
        #expect(slots.hasCapacity)
        slots.active = 2
        #expect(!slots.hasCapacity)
        slots.active = 1
        #expect(slots.hasCapacity)
        slots.maxConcurrent = 0
        #expect(!slots.hasCapacity)
    }

    @Test func aDrainingConnectionTakesNoStreamAndClosesWhenEmpty() {
        var slots = H2StreamSlots()
        slots.active = 3
        slots.draining = true
        #expect(!slots.hasCapacity)
        #expect(!slots.isDrained)
        slots.active = 0
        #expect(slots.isDrained)
    }

    @Test func aClosedConnectionTakesNothing() {
        var slots = H2StreamSlots()
        slots.closed = true
        #expect(!slots.hasCapacity)
    }

    /// The pool's reservations against a real (embedded) connection: slots are taken and given back, GOAWAY
    /// stops new streams and a lowered SETTINGS_MAX_CONCURRENT_STREAMS is respected.
    @Test func thePoolCountsStreamsPerConnection() throws {
        let loop = EmbeddedEventLoop()
        let pool = H2UpstreamPool(eventLoop: loop, timeouts: ProxyTimeouts())
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .client))
        let endpoint = UpstreamEndpoint(
            service: "api",
            configuration: .init(address: .init(host: "127.0.0.1", port: 1), zone: "a")
        )
        let connection = H2UpstreamConnection(endpoint: endpoint, channel: channel)
        connection.becameReady()
        pool.maxConcurrentStreamsChanged(connection, to: 2)
        #expect(connection.slots.hasCapacity)
        connection.slots.active = 2
        #expect(!connection.slots.hasCapacity)
        pool.streamEnded(on: connection)
        #expect(connection.slots.active == 1)
        pool.goAwayReceived(connection, lastStreamID: HTTP2StreamID(1))
        #expect(connection.goAwayLastStreamID == HTTP2StreamID(1))
        #expect(!connection.slots.hasCapacity)
        pool.streamEnded(on: connection)
        pool.streamEnded(on: connection)
        #expect(connection.slots.active == 0)
        _ = try? channel.finish()
    }
}

@Suite struct H2ListenerTests {
    func buffer(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    @Test func thePrefaceIsRecognisedByteByByte() {
        let preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        for length in 0..<preface.utf8.count {
            let prefix = String(decoding: Array(preface.utf8).prefix(length), as: UTF8.self)
            #expect(H2Listener.detect(buffer(prefix)) == .undecided)
        }
        #expect(H2Listener.detect(buffer(preface)) == .http2)
        #expect(H2Listener.detect(buffer(preface + "\0\0\0\u{4}")) == .http2)
        #expect(H2Listener.detect(buffer("GET / HTTP/1.1\r\n")) == .other)
        #expect(H2Listener.detect(buffer("PRI * HTTP/1.1")) == .other)
        #expect(H2Listener.detect(buffer("P")) == .undecided)
        #expect(H2Listener.detect(buffer("\u{16}\u{3}\u{1}")) == .other)
    }

    /// The sniffer hands the first bytes, split however they arrive, to what it installs, then leaves.
    @Test(arguments: [true, false])
    func theSnifferInstallsTheRightHandlerAndReplaysTheBytes(http2: Bool) throws {
        let channel = EmbeddedChannel()
        var chosen: String?
        let sniffer = H2PrefaceSniffer(timeout: .seconds(10)) { _ in
            chosen = "h2"
        } otherwise: { _ in
            chosen = "h1"
        }
        try channel.pipeline.syncOperations.addHandler(sniffer)
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        let text = http2 ? "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nrest" : "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        let bytes = Array(text.utf8)
        try channel.writeInbound(ByteBuffer(bytes: bytes.prefix(1)))
        if http2 { #expect(chosen == nil) }
        try channel.writeInbound(ByteBuffer(bytes: bytes.dropFirst()))
        #expect(chosen == (http2 ? "h2" : "h1"))
        var replayed = ByteBuffer()
        while var part = try channel.readInbound(as: ByteBuffer.self) { replayed.writeBuffer(&part) }
        #expect(replayed == ByteBuffer(bytes: bytes))
        #expect(throws: (any Error).self) { try channel.pipeline.syncOperations.handler(type: H2PrefaceSniffer.self) }
        _ = try? channel.finish()
    }

    @Test func aSilentConnectionIsClosedAtTheDeadlineAndCounted() throws {
        let channel = EmbeddedChannel()
        final class Count { var value = 0 }
        let timeouts = Count()
        let sniffer = H2PrefaceSniffer(
            timeout: .seconds(10),
            onTimeout: { timeouts.value += 1 },
            onHTTP2: { _ in },
            otherwise: { _ in }
        )
        try channel.pipeline.syncOperations.addHandler(sniffer)
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(channel.isActive)
        #expect(timeouts.value == 0)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
        #expect(timeouts.value == 1)
    }

    /// Abuse NIOHTTP2 reports ends the connection (and is counted by reason); one stream's error does not.
    @Test func onlyConnectionEndingErrorsCloseTheConnection() {
        #expect(H2ConnectionGuard.reason(NIOHTTP2Errors.excessiveRSTFrames()) == "rapid-reset")
        #expect(H2ConnectionGuard.reason(NIOHTTP2Errors.excessiveEmptyDataFrames()) == "flood")
        #expect(H2ConnectionGuard.reason(NIOHTTP2Errors.excessivelyLargeHeaderBlock()) == "header-too-large")
        #expect(H2ConnectionGuard.reason(NIOHTTP2Errors.streamClosed(streamID: 1, errorCode: .cancel)) == nil)
        #expect(H2ConnectionGuard.reason(NIOHTTP2Errors.noSuchStream(streamID: 3)) == nil)
    }

    @Test func theClientConnectionAdvertisesItsLimits() {
        let settings = H2Listener.serverConnectionConfiguration.initialSettings
        #expect(settings.contains { $0.parameter == .maxConcurrentStreams && $0.value == 100 })
        #expect(settings.contains { $0.parameter == .maxHeaderListSize && $0.value == 65_536 })
        // Header blocks and content-length are checked by H2ClientStreamsHandler instead
        // (H2ClientValidationTests).
        #expect(H2Listener.serverConnectionConfiguration.headerBlockValidation == .disabled)
        #expect(H2Listener.serverConnectionConfiguration.contentLengthValidation == .disabled)
        let stream = H2Listener.serverStreamConfiguration
        #expect(stream.streamResetFrameRateLimit.maximumCount == H2Limits.maxResetsPerSecond)
        #expect(stream.streamResetFrameRateLimit.windowLength == .seconds(1))
    }
}

@Suite struct HTTPTokensTests {
    /// The bitmaps hold RFC 9110's tchar, and the lowercase one the same but A–Z.
    @Test func tokenCharactersAreTchar() {
        let tchar = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        for byte in UInt8.min...UInt8.max {
            #expect(HTTPTokens.isTokenCharacter(byte) == tchar.contains(byte), "byte \(byte)")
            let uppercase = (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            #expect(HTTPTokens.isLowercaseTokenCharacter(byte) == (tchar.contains(byte) && !uppercase), "byte \(byte)")
        }
    }
}

@Suite struct H2StreamTableTests {
    final class Stream {
        let id: Int
        init(_ id: Int) { self.id = id }
    }

    @Test func streamsAreFoundByIDInAnyOrderOfArrival() {
        var table = H2StreamTable<Stream>()
        #expect(table.isEmpty)
        for id in [1, 3, 9, 5, 7, 11] { table[HTTP2StreamID(id)] = Stream(id) }
        #expect(table.count == 6)
        #expect(table.values.map(\.id) == [1, 3, 5, 7, 9, 11])
        for id in [1, 3, 5, 7, 9, 11] { #expect(table[HTTP2StreamID(id)]?.id == id) }
        for id in [0, 2, 4, 13, 101] { #expect(table[HTTP2StreamID(id)] == nil) }
    }

    @Test func aStreamIsReplacedAndRemoved() {
        var table = H2StreamTable<Stream>()
        for id in [1, 3, 5] { table[HTTP2StreamID(id)] = Stream(id) }
        table[3] = Stream(33)
        #expect(table.count == 3)
        #expect(table[3]?.id == 33)
        table[3] = nil
        table[4] = nil
        #expect(table.values.map(\.id) == [1, 5])
        #expect(table[3] == nil)
        table[1] = nil
        table[5] = nil
        #expect(table.isEmpty)
        table[7] = Stream(7)
        #expect(table.values.map(\.id) == [7])
    }

    /// The table agrees with a dictionary over a long random run of inserts and removals.
    @Test func itAgreesWithADictionary() {
        var table = H2StreamTable<Stream>()
        var reference: [Int: Stream] = [:]
        var random = SplitMix64(state: 0x5EED_0010)
        for _ in 0..<5_000 {
            let id = Int.random(in: 0..<64, using: &random)
            if Bool.random(using: &random) {
                let stream = Stream(id)
                table[HTTP2StreamID(id)] = stream
                reference[id] = stream
            } else {
                table[HTTP2StreamID(id)] = nil
                reference[id] = nil
            }
            let probe = Int.random(in: 0..<64, using: &random)
            #expect(table[HTTP2StreamID(probe)] === reference[probe])
        }
        #expect(table.values.map(\.id) == reference.keys.sorted())
    }
}
