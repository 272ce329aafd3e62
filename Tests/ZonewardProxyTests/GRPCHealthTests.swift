import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import Synchronization
import Testing
import ZonewardModel

@testable import ZonewardProxy

@Suite struct GRPCHealthCodecTests {
    @Test func theRequestIsOneGRPCMessageWithTheServiceAsField1() {
        #expect(GRPCHealth.requestMessage(service: "orders") == [0, 0, 0, 0, 8, 0x0A, 6] + Array("orders".utf8))
    }

    @Test func anEmptyServiceIsAnEmptyMessage() {
        #expect(GRPCHealth.requestMessage(service: "") == [0, 0, 0, 0, 0])
    }

    @Test func aLongServiceNameHasAMultiByteLength() {
        let name = String(repeating: "s", count: 300)
        let message = GRPCHealth.requestMessage(service: name)
        // 300 = 0b10_0101100: varint AC 02.
        #expect(Array(message.prefix(8)) == [0, 0, 0, 0x01, 0x2F, 0x0A, 0xAC, 0x02])
        #expect(message.count == 5 + 3 + 300)
    }

    @Test(
        arguments: [
            ([0x08, 0x01], 1), ([0x08, 0x02], 2), ([], 0), ([0x08, 0x03], 3),
            // Unknown fields of every wire type are skipped; the last status wins.
            (
                [
                    0x08, 0x02, 0x10, 0x96, 0x01, 0x1A, 0x02, 0x61, 0x62, 0x25, 1, 2, 3, 4, 0x29, 1, 2, 3, 4, 5, 6, 7,
                    8, 0x08, 0x01,
                ], 1
            ),
        ] as [([UInt8], UInt64)]
    )
    func theServingStatusIsDecoded(_ bytes: [UInt8], _ expected: UInt64) {
        #expect(GRPCHealth.servingStatus(protobuf: bytes[...]) == expected)
    }

    @Test(
        arguments: [
            [0x08], [0x08, 0x81], [0x1A, 0x05, 0x61], [0x0B], [0x00, 0x01], [0x25, 1, 2],
            [0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            [0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        ] as [[UInt8]]
    )
    func malformedMessagesAreNil(_ bytes: [UInt8]) {
        #expect(GRPCHealth.servingStatus(protobuf: bytes[...]) == nil)
    }

    @Test func aBodyMustBeExactlyOneUncompressedMessage() {
        #expect(GRPCHealth.message(in: [0, 0, 0, 0, 2, 0x08, 0x01]) == [0x08, 0x01][...])
        #expect(GRPCHealth.message(in: [1, 0, 0, 0, 2, 0x08, 0x01]) == nil)
        #expect(GRPCHealth.message(in: [0, 0, 0, 0, 3, 0x08, 0x01]) == nil)
        #expect(GRPCHealth.message(in: [0, 0, 0, 0, 2, 0x08, 0x01, 0]) == nil)
        #expect(GRPCHealth.message(in: [0, 0, 0]) == nil)
    }

    @Test func onlySERVINGWithGRPCStatus0IsHealthy() {
        let serving: [UInt8] = [0, 0, 0, 0, 2, 0x08, 0x01]
        let notServing: [UInt8] = [0, 0, 0, 0, 2, 0x08, 0x02]
        #expect(GRPCHealth.verdict(httpStatus: 200, grpcStatus: 0, grpcMessage: nil, body: serving).success)
        let down = GRPCHealth.verdict(httpStatus: 200, grpcStatus: 0, grpcMessage: nil, body: notServing)
        #expect(!down.success && down.detail.contains("NOT_SERVING"))
        let unknown = GRPCHealth.verdict(httpStatus: 200, grpcStatus: 5, grpcMessage: "unknown service", body: [])
        #expect(!unknown.success && unknown.detail.contains("grpc-status 5: unknown service"))
        #expect(!GRPCHealth.verdict(httpStatus: 200, grpcStatus: nil, grpcMessage: nil, body: serving).success)
        #expect(!GRPCHealth.verdict(httpStatus: 503, grpcStatus: 0, grpcMessage: nil, body: serving).success)
        #expect(!GRPCHealth.verdict(httpStatus: 200, grpcStatus: 0, grpcMessage: nil, body: [0, 0, 0, 0, 1]).success)
    }
}

/// The prober against a real HTTP/2 server on loopback (NIOHTTP2) that answers `Health/Check` as told.
@Suite struct GRPCHealthProbeTests {
    enum Answer: Sendable {
        case status(UInt8)
        case grpcError(Int)
        case silence
    }

    /// The paths and bodies the server was sent.
    final class Seen: Sendable {
        let requests = Mutex<[(String, [UInt8])]>([])
    }

    /// Serves one answer to every stream; records the paths and bodies it was sent.
    final class Server: Sendable {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let seen = Seen()
        let port: Int
        private let channel: any Channel

        init(answer: Answer) throws {
            let seen = self.seen
            channel = try ServerBootstrap(group: group)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                            mode: .server,
                            connectionConfiguration: .init(),
                            streamConfiguration: .init()
                        ) { stream in
                            stream.eventLoop.makeCompletedFuture {
                                try stream.pipeline.syncOperations.addHandler(HealthStream(answer: answer, seen: seen))
                            }
                        }
                    }
                }
                .bind(host: "127.0.0.1", port: 0).wait()
            port = channel.localAddress?.port ?? 0
        }

        func stop() throws {
            try channel.close().wait()
            try group.syncShutdownGracefully()
        }
    }

    final class HealthStream: ChannelInboundHandler {
        typealias InboundIn = HTTP2Frame.FramePayload
        typealias OutboundOut = HTTP2Frame.FramePayload
        let answer: Answer
        let seen: Seen
        var path = ""
        var body: [UInt8] = []

        init(answer: Answer, seen: Seen) {
            self.answer = answer
            self.seen = seen
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var ended = false
            switch unwrapInboundIn(data) {
            case .headers(let block):
                path = block.headers.first(name: ":path") ?? ""
                ended = block.endStream
            case .data(let frame):
                if case .byteBuffer(let buffer) = frame.data { body += buffer.readableBytesView }
                ended = frame.endStream
            default: break
            }
            guard ended else { return }
            seen.requests.withLock { [path, body] in $0.append((path, body)) }
            switch answer {
            case .silence:
                return
            case .grpcError(let code):
                let head: HPACKHeaders = [
                    ":status": "200", "content-type": "application/grpc", "grpc-status": "\(code)",
                ]
                context.writeAndFlush(wrapOutboundOut(.headers(.init(headers: head, endStream: true))), promise: nil)
            case .status(let status):
                let head: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]
                context.write(wrapOutboundOut(.headers(.init(headers: head))), promise: nil)
                let message = context.channel.allocator.buffer(bytes: [0, 0, 0, 0, 2, 0x08, status])
                context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(message)))), promise: nil)
                let trailers: HPACKHeaders = ["grpc-status": "0"]
                context.writeAndFlush(
                    wrapOutboundOut(.headers(.init(headers: trailers, endStream: true))),
                    promise: nil
                )
            }
        }
    }

    func probe(_ answer: Answer, service: String = "orders") throws -> (HealthProber.Outcome, [(String, [UInt8])]) {
        let server = try Server(answer: answer)
        defer { try? server.stop() }
        let endpoint = UpstreamEndpoint(
            service: "api",
            configuration: .init(address: .init(host: "127.0.0.1", port: server.port), zone: "a")
        )
        let check = HealthCheckConfiguration(grpc: service, timeout: .milliseconds(500))
        let outcome = try HealthProber.probe(endpoint, check: check, on: server.group.next()).wait()
        return (outcome, server.seen.requests.withLock { $0 })
    }

    @Test func servingIsHealthyAndTheRequestNamesTheService() throws {
        let (outcome, seen) = try probe(.status(1))
        #expect(outcome.success, "\(outcome.detail)")
        #expect(seen.count == 1)
        #expect(seen.first?.0 == "/grpc.health.v1.Health/Check")
        #expect(seen.first?.1 == GRPCHealth.requestMessage(service: "orders"))
    }

    @Test func notServingIsUnhealthy() throws {
        let (outcome, _) = try probe(.status(2), service: "")
        #expect(!outcome.success)
        #expect(outcome.detail.contains("NOT_SERVING"))
    }

    @Test func aGRPCErrorIsUnhealthy() throws {
        let (outcome, _) = try probe(.grpcError(12))
        #expect(!outcome.success)
        #expect(outcome.detail.contains("grpc-status 12"))
    }

    @Test func noAnswerWithinTheTimeoutIsUnhealthy() throws {
        let started = ContinuousClock.now
        let (outcome, _) = try probe(.silence)
        #expect(!outcome.success)
        #expect(outcome.detail.contains("no answer within"))
        #expect(ContinuousClock.now - started < .seconds(3))
    }

    @Test func aClosedPortIsUnhealthy() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let endpoint = UpstreamEndpoint(
            service: "api",
            configuration: .init(address: .init(host: "127.0.0.1", port: 1), zone: "a")
        )
        let outcome = try HealthProber.probe(endpoint, check: .init(grpc: ""), on: group.next()).wait()
        #expect(!outcome.success)
    }
}
