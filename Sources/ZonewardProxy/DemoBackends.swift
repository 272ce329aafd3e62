import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import ZonewardModel

/// In-process HTTP backends for the configuration's loopback endpoints, each answering with its zone and
/// address, so `zoneward run --demo-backends` shows zone-aware routing with nothing else installed. The
/// endpoints of an `upstreamProtocol: http2` service speak h2c, and answer gRPC calls too: any method,
/// the identity as the one response message, `grpc-status: 0`.
public enum DemoBackends {
    /// Binds one backend per loopback endpoint of every HTTP service; returns the listening channels.
    public static func start(
        _ configuration: ZonewardConfiguration,
        group: any EventLoopGroup
    ) async throws -> [any Channel] {
        var channels: [any Channel] = []
        var bound: Set<HostPort> = []
        for service in configuration.services where service.wireProtocol == .http {
            for endpoint in service.endpoints where isLoopback(endpoint.address.host) {
                guard bound.insert(endpoint.address).inserted else { continue }
                let body = "service=\(service.name) zone=\(endpoint.zone) endpoint=\(endpoint.address)\n"
                let zone = endpoint.zone
                let http2 = service.upstreamProtocol == .http2
                let bootstrap = ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            let sync = channel.pipeline.syncOperations
                            if http2 {
                                _ = try sync.configureHTTP2Pipeline(
                                    mode: .server,
                                    connectionConfiguration: .init(),
                                    streamConfiguration: .init()
                                ) { stream in
                                    stream.eventLoop.makeCompletedFuture {
                                        try stream.pipeline.syncOperations.addHandler(
                                            DemoH2StreamHandler(body: body, zone: zone)
                                        )
                                    }
                                }
                            } else {
                                try sync.configureHTTPServerPipeline()
                                try sync.addHandler(DemoBackendHandler(body: body, zone: zone))
                            }
                        }
                    }
                do {
                    channels.append(
                        try await bootstrap.bind(host: endpoint.address.host, port: endpoint.address.port).get()
                    )
                } catch {
                    for channel in channels { try? await channel.close() }
                    throw ProxyError.bindFailed(what: "demo backend", address: endpoint.address, underlying: error)
                }
            }
        }
        return channels
    }

    static func isLoopback(_ host: String) -> Bool {
        host.hasPrefix("127.") || host == "::1" || host == "localhost"
    }
}

/// Answers every request with the backend's identity.
private final class DemoBackendHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let body: String
    private let zone: String
    private var keepAlive = true

    init(body: String, zone: String) {
        self.body = body
        self.zone = zone
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            headers.add(name: "Content-Length", value: String(body.utf8.count))
            headers.add(name: "X-Backend-Zone", value: zone)
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))),
                promise: nil
            )
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
            if keepAlive {
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            } else {
                let done = context.eventLoop.makePromise(of: Void.self)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
                let channel = context.channel
                done.futureResult.whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }
}

@available(*, unavailable)
extension DemoBackendHandler: Sendable {}

/// One HTTP/2 stream of a demo backend: once the request ends, the identity as a text body, or for a
/// gRPC call (`content-type: application/grpc…`) as one length-prefixed message followed by trailers with
/// `grpc-status: 0`.
private final class DemoH2StreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private let body: String
    private let zone: String
    private var isGRPC = false

    init(body: String, zone: String) {
        self.body = body
        self.zone = zone
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let headers):
            if let type = headers.headers.first(name: "content-type") {
                isGRPC = type.lowercased().hasPrefix("application/grpc")
            }
            if headers.endStream { respond(context) }
        case .data(let data):
            if data.endStream { respond(context) }
        default:
            break
        }
    }

    private func respond(_ context: ChannelHandlerContext) {
        var head: HPACKHeaders = [":status": "200", "x-backend-zone": zone]
        var payload = context.channel.allocator.buffer(capacity: body.utf8.count + 5)
        if isGRPC {
            head.add(name: "content-type", value: "application/grpc")
            // The gRPC message prefix: not compressed, then the length.
            payload.writeInteger(UInt8(0))
            payload.writeInteger(UInt32(body.utf8.count))
        } else {
            head.add(name: "content-type", value: "text/plain; charset=utf-8")
        }
        payload.writeString(body)
        context.write(wrapOutboundOut(.headers(.init(headers: head))), promise: nil)
        context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(payload), endStream: !isGRPC))), promise: nil)
        if isGRPC {
            let trailers: HPACKHeaders = ["grpc-status": "0"]
            context.write(wrapOutboundOut(.headers(.init(headers: trailers, endStream: true))), promise: nil)
        }
        context.flush()
    }
}

@available(*, unavailable)
extension DemoH2StreamHandler: Sendable {}
