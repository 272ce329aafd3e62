import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import ZonewardModel

/// The standard gRPC health protocol (`grpc.health.v1.Health/Check`), its two tiny protobuf messages encoded
/// by hand: `HealthCheckRequest {string service = 1}` and `HealthCheckResponse {ServingStatus status = 1}`.
enum GRPCHealth {
    static let path = "/grpc.health.v1.Health/Check"
    /// `HealthCheckResponse.ServingStatus.SERVING`; anything else (UNKNOWN 0, NOT_SERVING 2, SERVICE_UNKNOWN 3)
    /// is unhealthy.
    static let serving: UInt64 = 1
    /// The most response body a check takes (a real answer is 7 bytes).
    static let maxResponseBytes = 4_096

    /// The request as one gRPC message: uncompressed flag, 4-byte big-endian length, then the protobuf (the
    /// field left out when `service` is "", as proto3 encodes a default).
    static func requestMessage(service: String) -> [UInt8] {
        var protobuf: [UInt8] = []
        if !service.isEmpty {
            protobuf.append(0x0A)  // field 1, wire type 2 (length-delimited)
            appendVarint(UInt64(service.utf8.count), to: &protobuf)
            protobuf.append(contentsOf: service.utf8)
        }
        let length = UInt32(protobuf.count)
        return [0, UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
            + protobuf
    }

    static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    /// Reads a varint at `index` (advanced past it); nil when truncated or longer than 10 bytes.
    static func readVarint(_ bytes: ArraySlice<UInt8>, _ index: inout Int) -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while index < bytes.endIndex, shift < 64 {
            let byte = bytes[index]
            index += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        return nil
    }

    /// The `status` of a `HealthCheckResponse` protobuf (0, UNKNOWN, when absent; the last one when
    /// repeated; unknown fields skipped); nil when the bytes are not a well-formed message.
    static func servingStatus(protobuf bytes: ArraySlice<UInt8>) -> UInt64? {
        var status: UInt64 = 0
        var index = bytes.startIndex
        while index < bytes.endIndex {
            guard let key = readVarint(bytes, &index), key >> 3 != 0 else { return nil }
            switch key & 7 {
            case 0:
                guard let value = readVarint(bytes, &index) else { return nil }
                if key >> 3 == 1 { status = value }
            case 1, 5:
                let width = key & 7 == 1 ? 8 : 4
                guard bytes.endIndex - index >= width else { return nil }
                index += width
            case 2:
                guard let length = readVarint(bytes, &index), length <= UInt64(bytes.endIndex - index) else {
                    return nil
                }
                index += Int(length)
            default:
                return nil
            }
        }
        return status
    }

    /// The one message of a response body (5-byte prefix, uncompressed); nil when the body is not exactly one
    /// whole uncompressed message.
    static func message(in body: [UInt8]) -> ArraySlice<UInt8>? {
        guard body.count >= 5, body[0] == 0 else { return nil }
        let length = Int(body[1]) << 24 | Int(body[2]) << 16 | Int(body[3]) << 8 | Int(body[4])
        guard body.count == 5 + length else { return nil }
        return body[5...]
    }

    /// Whether the endpoint is healthy, from what its answer carried: `:status` 200, `grpc-status` 0 and
    /// SERVING. `detail` says why not.
    static func verdict(
        httpStatus: Int?,
        grpcStatus: Int?,
        grpcMessage: String?,
        body: [UInt8]
    ) -> HealthProber.Outcome {
        guard httpStatus == 200 else {
            return .init(
                success: false,
                detail: "gRPC health check answered HTTP \(httpStatus.map(String.init) ?? "?")"
            )
        }
        guard let grpcStatus else {
            return .init(success: false, detail: "gRPC health check answered without grpc-status")
        }
        guard grpcStatus == 0 else {
            let message = grpcMessage.map { ": \($0.prefix(200))" } ?? ""
            return .init(success: false, detail: "gRPC health check answered grpc-status \(grpcStatus)\(message)")
        }
        guard let message = message(in: body), let status = servingStatus(protobuf: message) else {
            return .init(success: false, detail: "gRPC health check answered a malformed HealthCheckResponse")
        }
        let names: [UInt64: String] = [0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"]
        let name = names[status] ?? "status \(status)"
        return .init(success: status == serving, detail: "gRPC health check: \(name)")
    }

    /// The request's header block.
    static func requestHeaders(authority: String, tls: Bool, timeout: Duration) -> HPACKHeaders {
        var headers = HPACKHeaders()
        headers.add(name: ":method", value: "POST")
        headers.add(name: ":scheme", value: tls ? "https" : "http")
        headers.add(name: ":path", value: path)
        headers.add(name: ":authority", value: authority)
        headers.add(name: "content-type", value: "application/grpc")
        headers.add(name: "te", value: "trailers")
        headers.add(name: "user-agent", value: "zoneward-health")
        // The server may give up when the check does.
        headers.add(name: "grpc-timeout", value: "\(max(1, timeout.milliseconds))m")
        return headers
    }
}

extension HealthProber {
    /// One gRPC health check: a new HTTP/2 connection (h2c, or h2 over the service's upstream TLS), one
    /// `Health/Check` stream, then the connection closes. Completes `promise` (the caller bounds it in time).
    static func probeGRPC(
        _ endpoint: UpstreamEndpoint,
        service: String,
        check: HealthCheckConfiguration,
        on loop: any EventLoop,
        promise: EventLoopPromise<Outcome>
    ) -> EventLoopFuture<any Channel> {
        // The TLS and HTTP/2 handlers go in before the connection can read anything (the channel
        // initializer): added after the connect completed, the endpoint's SETTINGS could be read first and
        // dropped, and its later SETTINGS ACK then break the connection (NIOHTTP2 ReceivedBadSettings).
        let multiplexerBox = NIOLoopBoundBox.makeEmptyBox(
            valueType: NIOHTTP2Handler.StreamMultiplexer.self,
            eventLoop: loop
        )
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(TimeAmount(check.timeout))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls = endpoint.tls {
                        try sync.addHandler(tls.makeHandler(host: endpoint.address.host, h2: true))
                    }
                    multiplexerBox.value = try sync.configureHTTP2Pipeline(
                        mode: .client,
                        connectionConfiguration: .init(),
                        streamConfiguration: .init(),
                        inboundStreamInitializer: { stream in stream.close() }
                    )
                    try sync.addHandler(GRPCHealthConnectionHandler(promise: promise))
                }
            }
        let connected = endpoint.connect(with: bootstrap)
        connected.whenFailure { error in promise.succeed(Outcome(success: false, detail: "connect failed: \(error)")) }
        connected.whenSuccess { _ in
            if let multiplexer = multiplexerBox.value {
                let request = GRPCHealthStreamHandler(
                    headers: GRPCHealth.requestHeaders(
                        authority: endpoint.address.description,
                        tls: endpoint.tls != nil,
                        timeout: check.timeout
                    ),
                    message: GRPCHealth.requestMessage(service: service),
                    promise: promise
                )
                let bound = NIOLoopBound(request, eventLoop: loop)
                let opened = loop.makePromise(of: (any Channel).self)
                multiplexer.createStreamChannel(promise: opened) { stream in
                    stream.eventLoop.makeCompletedFuture {
                        try stream.pipeline.syncOperations.addHandler(bound.value)
                    }
                }
                opened.futureResult.whenFailure { error in
                    promise.succeed(Outcome(success: false, detail: "cannot open the health check stream: \(error)"))
                }
            }
        }
        return connected
    }
}

/// The connection's end or error before the answer: unhealthy.
private final class GRPCHealthConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame

    private let promise: EventLoopPromise<HealthProber.Outcome>

    init(promise: EventLoopPromise<HealthProber.Outcome>) {
        self.promise = promise
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.succeed(.init(success: false, detail: "the HTTP/2 connection closed before the health check answered"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.succeed(.init(success: false, detail: "\(error)"))
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension GRPCHealthConnectionHandler: Sendable {}

/// Sends the `Health/Check` request on its stream and judges the answer: head, one message, trailers.
private final class GRPCHealthStreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private let headers: HPACKHeaders
    private let message: [UInt8]
    private let promise: EventLoopPromise<HealthProber.Outcome>
    private var sent = false
    private var httpStatus: Int?
    private var body: [UInt8] = []

    init(headers: HPACKHeaders, message: [UInt8], promise: EventLoopPromise<HealthProber.Outcome>) {
        self.headers = headers
        self.message = message
        self.promise = promise
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { send(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        send(context: context)
        context.fireChannelActive()
    }

    private func send(context: ChannelHandlerContext) {
        guard !sent else { return }
        sent = true
        context.write(wrapOutboundOut(.headers(.init(headers: headers))), promise: nil)
        let data = context.channel.allocator.buffer(bytes: message)
        context.writeAndFlush(wrapOutboundOut(.data(.init(data: .byteBuffer(data), endStream: true))), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let block):
            if httpStatus == nil, let status = H2Headers.status(block.headers) {
                httpStatus = status
                // 1xx interim heads are skipped; the real head follows.
                if (100..<200).contains(status) { httpStatus = nil }
            }
            // Trailers end the stream (or a trailers-only answer: its grpc-status in the head).
            if block.endStream { finish(context: context, trailers: block.headers) }
        case .data(let frame):
            if case .byteBuffer(let buffer) = frame.data {
                guard body.count + buffer.readableBytes <= GRPCHealth.maxResponseBytes else {
                    promise.succeed(.init(success: false, detail: "gRPC health check answer larger than 4 KiB"))
                    context.close(promise: nil)
                    return
                }
                body.append(contentsOf: buffer.readableBytesView)
            }
            if frame.endStream { finish(context: context, trailers: nil) }
        case .rstStream(let code):
            promise.succeed(.init(success: false, detail: "gRPC health check stream reset (\(code))"))
        default:
            break
        }
    }

    private func finish(context: ChannelHandlerContext, trailers: HPACKHeaders?) {
        promise.succeed(
            GRPCHealth.verdict(
                httpStatus: httpStatus,
                grpcStatus: trailers.flatMap(H2Headers.grpcStatus),
                grpcMessage: trailers?.first(name: "grpc-message"),
                body: body
            )
        )
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.succeed(.init(success: false, detail: "the health check stream closed before its answer"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.succeed(.init(success: false, detail: "\(error)"))
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension GRPCHealthStreamHandler: Sendable {}
