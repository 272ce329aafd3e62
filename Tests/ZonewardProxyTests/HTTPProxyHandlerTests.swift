import Logging
import NIOCore
import NIOEmbedded
import Testing
import ZonewardModel

@testable import ZonewardProxy

/// The HTTP proxy handler driven through embedded channels: the client side and every upstream connection
/// share one `EmbeddedEventLoop`, so each test controls every byte and the clock.
@Suite struct HTTPProxyHandlerTests {
    /// One client connection to a proxy with two endpoints in one zone.
    final class Harness {
        let loop = EmbeddedEventLoop()
        let table: RoutingTable
        let client: EmbeddedChannel
        /// Upstream channels in the order they were opened.
        var upstreams: [EmbeddedChannel] = []
        /// Ports whose connections fail.
        var refused: Set<Int> = []
        let service: ServiceConfiguration

        /// - Parameter endpoints: 1 or 2 endpoints (ports 11 and 12).
        init(timeouts: TimeoutConfiguration = .init(), endpoints: Int = 2) throws {
            var configuration = try ZonewardConfiguration.parse(
                yaml: """
                    zones: [{name: a, region: r}]
                    services:
                      - name: web
                        listen: 127.0.0.1:1
                        outlierDetection: {consecutiveFailures: 100}
                        endpoints:
                          - {address: 127.0.0.1:11, zone: a}
                          - {address: 127.0.0.1:12, zone: a}
                    """
            )
            configuration.services[0].timeouts = timeouts
            configuration.services[0].endpoints = Array(configuration.services[0].endpoints.prefix(endpoints))
            service = configuration.services[0]
            table = RoutingTable(
                configuration: configuration,
                sourceZone: "a",
                metrics: ProxyMetrics(),
                logger: Logger(label: "test")
            )
            client = EmbeddedChannel(loop: loop)
            var proxyTimeouts = ProxyTimeouts()
            proxyTimeouts.maxRetries = 2
            let pool = UpstreamPool(eventLoop: loop, timeouts: proxyTimeouts) { [weak self] endpoint, loop in
                guard let self else { return loop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
                if self.refused.contains(endpoint.address.port) {
                    return loop.makeFailedFuture(ChannelError.connectTimeout(.seconds(1)))
                }
                let channel = EmbeddedChannel(loop: self.loop)
                do {
                    try channel.pipeline.syncOperations.addHandler(UpstreamConnection(endpoint: endpoint))
                    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: endpoint.address.port)).wait()
                } catch {
                    return loop.makeFailedFuture(error)
                }
                self.upstreams.append(channel)
                return loop.makeSucceededFuture(channel)
            }
            try client.pipeline.syncOperations.addHandler(
                HTTPProxyHandler(service: service, table: table, pool: pool, scheme: "http")
            )
            try client.connect(to: SocketAddress(ipAddress: "192.0.2.1", port: 40000)).wait()
        }

        func send(_ text: String) throws {
            try client.writeInbound(ByteBuffer(string: text))
        }

        /// Everything the upstream `index` was sent so far.
        func upstreamReceived(_ index: Int) throws -> String {
            var text = ""
            while let buffer = try upstreams[index].readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            return text
        }

        func answer(_ index: Int, _ text: String) throws {
            try upstreams[index].writeInbound(ByteBuffer(string: text))
        }

        /// Everything the client was sent so far.
        func clientReceived() throws -> String {
            var text = ""
            while let buffer = try client.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            return text
        }

        var outstanding: Int { table.endpoints.reduce(0) { $0 + $1.outstandingRequests } }
        var failures: Int { table.endpoints.reduce(0) { $0 + $1.consecutiveFailures.load(ordering: .relaxed) } }
    }

    @Test func relaysARequestAndItsResponse() throws {
        let harness = try Harness()
        try harness.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try harness.upstreamReceived(0).hasPrefix("GET /a HTTP/1.1\r\nHost: x\r\n"))
        #expect(harness.outstanding == 1)
        try harness.answer(0, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        #expect(try harness.clientReceived() == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        #expect(harness.outstanding == 0)
        #expect(harness.client.isActive)
    }

    /// A connect failure is retried on the other endpoint before any byte was sent.
    @Test func retriesAConnectFailureOnAnotherEndpoint() throws {
        let harness = try Harness()
        harness.refused = [11]
        for _ in 0..<3 {  // within the retry budget's floor of 3
            try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            let index = harness.upstreams.count - 1
            #expect(try harness.upstreamReceived(index).hasPrefix("GET / HTTP/1.1"))
            try harness.answer(index, "HTTP/1.1 204 No Content\r\n\r\n")
            #expect(try harness.clientReceived().hasPrefix("HTTP/1.1 204"))
        }
        #expect(harness.upstreams.count == 1)  // the pooled connection to :12 served every request
        #expect(harness.outstanding == 0)
    }

    /// After body bytes went out, a reset is not retried (the endpoint may have acted on them): 502.
    @Test func doesNotRetryAfterBodyBytesWentOut() throws {
        let harness = try Harness()
        try harness.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody")
        #expect(try harness.upstreamReceived(0).hasSuffix("\r\n\r\nbody"))
        try harness.upstreams[0].close().wait()
        let response = try harness.clientReceived()
        #expect(response.hasPrefix("HTTP/1.1 502"))
        #expect(response.contains("X-Zoneward-Error: upstream-reset"))
        #expect(harness.upstreams.count == 1)
        #expect(harness.outstanding == 0)
    }

    /// An idempotent request reset before any response byte is retried elsewhere.
    @Test func retriesAnIdempotentRequestResetBeforeTheResponse() throws {
        let harness = try Harness()
        try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _ = try harness.upstreamReceived(0)
        try harness.upstreams[0].close().wait()
        #expect(harness.upstreams.count == 2)
        #expect(try harness.upstreamReceived(1).hasPrefix("GET / HTTP/1.1"))
        try harness.answer(1, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        #expect(try harness.clientReceived().hasPrefix("HTTP/1.1 200"))
        #expect(harness.outstanding == 0)
    }

    /// A HEAD response announces a length but carries no body; the connection stays usable.
    @Test func headResponsesHaveNoBody() throws {
        let harness = try Harness(endpoints: 1)
        try harness.send("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        _ = try harness.upstreamReceived(0)
        try harness.answer(0, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        #expect(try harness.clientReceived() == "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(harness.upstreams.count == 1)
        #expect(try harness.upstreamReceived(0).hasPrefix("GET / HTTP/1.1"))
    }

    /// 100 Continue and 103 Early Hints are relayed, then the real response.
    @Test func interimResponsesAreRelayed() throws {
        let harness = try Harness()
        try harness.send("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        _ = try harness.upstreamReceived(0)
        try harness.answer(0, "HTTP/1.1 100 Continue\r\n\r\n")
        #expect(try harness.clientReceived() == "HTTP/1.1 100 Continue\r\n\r\n")
        try harness.send("ok")
        #expect(try harness.upstreamReceived(0) == "ok")
        try harness.answer(
            0,
            "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
        )
        #expect(
            try harness.clientReceived()
                == "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
        )
        #expect(harness.outstanding == 0)
    }

    /// A 101 the client did not ask for is a 502, and that connection never returns to the pool.
    @Test func anUnrequestedSwitchIsABadGateway() throws {
        let harness = try Harness()
        try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _ = try harness.upstreamReceived(0)
        try harness.answer(0, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
        #expect(try harness.clientReceived().hasPrefix("HTTP/1.1 502"))
        #expect(!harness.upstreams[0].isActive)
        #expect(harness.outstanding == 0)
    }

    /// A WebSocket handshake answered 101 becomes a tunnel: bytes flow both ways as they are.
    @Test func aWebSocketUpgradeBecomesATunnel() throws {
        let harness = try Harness()
        try harness.send("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        #expect(try harness.upstreamReceived(0).contains("Upgrade: websocket\r\n"))
        try harness.answer(
            0,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nearly"
        )
        #expect(
            try harness.clientReceived()
                == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nearly"
        )
        try harness.send("\u{1}frame-from-client")
        #expect(try harness.upstreamReceived(0) == "\u{1}frame-from-client")
        try harness.answer(0, "\u{2}frame-from-server")
        #expect(try harness.clientReceived() == "\u{2}frame-from-server")
        #expect(harness.outstanding == 0)
        try harness.upstreams[0].close().wait()
        #expect(!harness.client.isActive)
    }

    /// A client that announces a body and withholds it gets 408 after `clientBody`; the endpoint is not
    /// blamed (no failure counted) even though the upstream read timeout is shorter.
    @Test func aClientStallIsNotTheEndpointsFailure() throws {
        var timeouts = TimeoutConfiguration()
        timeouts.clientBody = .seconds(2)
        timeouts.upstreamRead = .seconds(1)
        let harness = try Harness(timeouts: timeouts)
        try harness.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        _ = try harness.upstreamReceived(0)
        harness.loop.advanceTime(by: .seconds(5))
        let response = try harness.clientReceived()
        #expect(response.hasPrefix("HTTP/1.1 408"))
        #expect(response.contains("X-Zoneward-Error: request-body-timeout"))
        #expect(harness.failures == 0)
        #expect(harness.outstanding == 0)
        #expect(!harness.client.isActive)
    }

    /// An endpoint that goes quiet while it owes a response is the endpoint's failure: 504, counted.
    @Test func anUpstreamStallIsAGatewayTimeout() throws {
        var timeouts = TimeoutConfiguration()
        timeouts.upstreamRead = .seconds(1)
        let harness = try Harness(timeouts: timeouts)
        try harness.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        _ = try harness.upstreamReceived(0)
        harness.loop.advanceTime(by: .seconds(2))
        #expect(try harness.clientReceived().hasPrefix("HTTP/1.1 504"))
        #expect(harness.failures == 1)
        #expect(harness.outstanding == 0)
    }

    /// A malformed chunked body is a 400 and releases the endpoint (its outstanding count does not leak).
    @Test func aMalformedChunkedBodyReleasesTheEndpoint() throws {
        let harness = try Harness()
        try harness.send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        #expect(try harness.clientReceived().hasPrefix("HTTP/1.1 400"))
        #expect(harness.outstanding == 0)
        #expect(harness.failures == 0)
    }

    /// After part of a response went out, a local error closes the client: never a second status line.
    @Test func aLocalErrorMidResponseClosesInsteadOfASecondStatusLine() throws {
        let harness = try Harness()
        try harness.send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n")
        _ = try harness.upstreamReceived(0)
        try harness.answer(0, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe")
        try harness.send("zz\r\n")  // not a chunk size: the proxy's own error, after the response started
        let response = try harness.clientReceived()
        #expect(response == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe")
        #expect(!harness.client.isActive)
        #expect(harness.outstanding == 0)
    }

    /// A slowloris head: the 408 comes at `requestHead` however many bytes trickle in.
    @Test func aTricklingHeadGets408AtItsDeadline() throws {
        var timeouts = TimeoutConfiguration()
        timeouts.requestHead = .seconds(2)
        let harness = try Harness(timeouts: timeouts)
        try harness.send("GET / HTTP/1.1\r\n")
        for index in 0..<10 {
            harness.loop.advanceTime(by: .milliseconds(300))
            if harness.client.isActive { try harness.send("X-\(index): y\r\n") }
        }
        #expect(try harness.clientReceived().hasPrefix("HTTP/1.1 408"))
        #expect(!harness.client.isActive)
        #expect(harness.upstreams.isEmpty)
    }

    /// Graceful shutdown: the request in flight finishes, then the connection closes.
    @Test func quiescingFinishesTheRequestInFlight() throws {
        let harness = try Harness()
        try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _ = try harness.upstreamReceived(0)
        harness.client.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(harness.client.isActive)
        try harness.answer(0, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        #expect(try harness.clientReceived().hasSuffix("\r\n\r\nok"))
        #expect(!harness.client.isActive)
    }
}
