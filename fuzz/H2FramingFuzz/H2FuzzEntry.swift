import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2

/// libFuzzer's entry point for the HTTP/2 side of an `http` listener. The input is what a client sends
/// after the connection preface (which the harness sends first, so inputs are frames): SETTINGS, HEADERS
/// with CONTINUATION, DATA, RST_STREAM, PING, PRIORITY, WINDOW_UPDATE, GOAWAY, in any order and shape.
///
/// The server is built on an EmbeddedChannel in one of two forms, chosen by the first byte's low bit: as the
/// proxy builds it (`H2ServerSettings.relayConnection`: the advertised limits, the windows, the rapid-reset
/// limit, no NIOHTTP2 header validation; the proxy's `H2ClientStreamsHandler`, whose streams get a
/// checking owner), or as a reference, NIOHTTP2 validating header blocks, with its multiplexer and a
/// checking stream handler. Both relay each request's header block through `H2Headers` as `H2StreamProxy`
/// does, and answer it. The first byte also seeds how the input is split into reads. Properties checked on
/// every request, not only "no crash":
/// - the header block sent upstream holds no connection-specific field, exactly one of each forwarding
///   field, and the client's `grpc-timeout` only in canonical form that parses back to the same deadline;
/// - what goes back to the client holds no connection-specific field;
/// - a request head NIOHTTP2 accepts, `H2Headers.isValidFromClient` accepts too, but for a content-length
///   that is not plain digits (the other way round is held by a unit test, `H2ClientValidationTests`);
/// - `H2ClientStreamsHandler` hands a stream's owner frames only until it tells it the stream closed, tells
///   it so once, and, once the connection is gone, has told every owner it made.
/// A broken property stops the run with `fatalError` naming it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzH2Framing(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    let input = UnsafeRawBufferPointer(start: data, count: size)
    H2Fuzz.run(split: input[0], frames: UnsafeRawBufferPointer(rebasing: input[1...]))
    return 0
}

enum H2Fuzz {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    static func run(split: UInt8, frames: UnsafeRawBufferPointer) {
        let channel = EmbeddedChannel()
        var owners: [CheckingStreamOwner] = []
        do {
            let sync = channel.pipeline.syncOperations
            if split & 1 == 0 {
                try sync.addHandler(
                    NIOHTTP2Handler(
                        mode: .server,
                        connectionConfiguration: H2ServerSettings.relayConnection,
                        streamConfiguration: H2ServerSettings.stream
                    )
                )
                try sync.addHandler(
                    H2ClientStreamsHandler { stream in
                        let owner = CheckingStreamOwner(client: stream)
                        owners.append(owner)
                        return owner
                    }
                )
            } else {
                _ = try sync.configureHTTP2Pipeline(
                    mode: .server,
                    connectionConfiguration: H2ServerSettings.connection,
                    streamConfiguration: H2ServerSettings.stream,
                    inboundStreamInitializer: { stream in
                        stream.eventLoop.makeCompletedFuture {
                            try stream.pipeline.syncOperations.addHandler(CheckingStreamHandler())
                        }
                    }
                )
            }
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        } catch {
            fatalError("the server pipeline could not be built: \(error)")
        }
        defer {
            _ = try? channel.finish(acceptAlreadyClosed: true)
            if let open = owners.first(where: { !$0.closed }) {
                fatalError("the connection is gone and stream \(open.id) was not told")
            }
            // The owners hold their streams, which hold the handler, which holds the closure that holds them.
            owners.removeAll()
        }
        var buffer = channel.allocator.buffer(capacity: preface.count + frames.count)
        buffer.writeBytes(preface)
        buffer.writeBytes(frames)
        // Reads of 1 to 64 bytes, their sizes drawn from a generator seeded by the first byte, so frames
        // and header blocks arrive split anywhere.
        var state = UInt32(split) &* 2_654_435_761 | 1
        while buffer.readableBytes > 0 {
            state ^= state << 13
            state ^= state >> 17
            state ^= state << 5
            let length = min(buffer.readableBytes, Int(state % 64) + 1)
            guard let chunk = buffer.readSlice(length: length) else { break }
            do {
                try channel.writeInbound(chunk)
            } catch {
                // A connection error: NIOHTTP2 has written GOAWAY; the proxy closes the connection here.
                break
            }
            channel.embeddedEventLoop.run()
            drainOutbound(channel)
            if !channel.isActive { break }
        }
    }

    /// Takes what the server wrote (frames for the client), so nothing piles up across reads.
    static func drainOutbound(_ channel: EmbeddedChannel) {
        while (try? channel.readOutbound(as: IOData.self)) != nil {}
    }
}

/// A stream's owner under `H2ClientStreamsHandler`: checks what it is handed, relays the head and answers as
/// `CheckingStreamHandler` does, and takes the request's bytes in fits and starts (every third frame it
/// stops taking more until the next), so the handler's window keeping is exercised.
final class CheckingStreamOwner: H2ClientStreamOwner {
    let client: H2ClientStream
    var id: HTTP2StreamID { client.id }
    private(set) var closed = false
    private var answered = false
    private var frames = 0
    private(set) var takesMore = true

    init(client: H2ClientStream) {
        self.client = client
    }

    func receive(_ payload: HTTP2Frame.FramePayload) {
        if closed { fatalError("stream \(id) got a frame after it closed") }
        frames += 1
        if !takesMore {
            takesMore = true
            client.resumeReading()
        } else if frames % 3 == 0 {
            takesMore = false
        }
        guard case .headers(let headers) = payload, !answered else { return }
        answered = true
        for frame in CheckingStreamHandler.answer(headers.headers) { client.write(frame) }
        client.flush()
    }

    func clientReadComplete() {
        if closed { fatalError("stream \(id) heard of a read after it closed") }
    }

    func clientClosed() {
        if closed { fatalError("stream \(id) was told twice that it closed") }
        closed = true
    }

    func clientWritabilityChanged() {}
}

/// Relays each request head through `H2Headers` as the proxy does, checks what would go upstream, and
/// answers with a local response (or gRPC trailers) built by `H2Headers`.
final class CheckingStreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private var answered = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let headers):
            guard !answered else { return }
            answered = true
            // NIOHTTP2 accepted this request head: the proxy's own check (on connections that relay to HTTP/2
            // endpoints) must accept it too.
            // Its content-length aside: the proxy reads that more strictly than NIOHTTP2 (plain digits, copies
            // equal), on purpose.
            var lengthless = HPACKHeaders()
            for (name, value, indexing) in headers.headers where name != "content-length" {
                lengthless.add(name: name, value: value, indexing: indexing)
            }
            if !H2Headers.isValidFromClient(lengthless, trailers: false) {
                fatalError("NIOHTTP2 accepts a request head H2Headers.isValidFromClient refuses: \(headers.headers)")
            }
            for frame in Self.answer(headers.headers) { context.write(wrapOutboundOut(frame), promise: nil) }
            context.flush()
        default:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Checks the request head relayed upstream, and returns the local answer's frames.
    static func answer(_ request: HPACKHeaders) -> [HTTP2Frame.FramePayload] {
        let upstream = H2Headers.requestForUpstream(
            request,
            clientAddress: "192.0.2.7",
            scheme: "http",
            trusted: request.contains(name: "x-trust")
        )
        check(upstream: upstream, from: request)
        let grpc = H2Headers.isGRPC(request)
        let response: HPACKHeaders =
            grpc
            ? H2Headers.grpcTrailers(status: 14, message: "no endpoint", withHead: true)
            : H2Headers.localResponse(status: 503, cause: "no-endpoint", bodyLength: 4)
        let forClient = H2Headers.responseForClient(response)
        for (name, _, _) in forClient where H2Headers.connectionSpecific.contains(name.lowercased()) {
            fatalError("a connection-specific field goes to the client: \(name)")
        }
        var frames: [HTTP2Frame.FramePayload] = [.headers(.init(headers: forClient, endStream: grpc))]
        if !grpc { frames.append(.data(.init(data: .byteBuffer(ByteBuffer(string: "none")), endStream: true))) }
        return frames
    }

    static func check(upstream: HPACKHeaders, from request: HPACKHeaders) {
        for (name, _, _) in upstream {
            if H2Headers.connectionSpecific.contains(name) {
                fatalError("a connection-specific field goes upstream: \(name)")
            }
            if name != name.lowercased() { fatalError("an upper-case field name goes upstream: \(name)") }
        }
        // Indexed upstream: only whole static-table entries, gRPC's content-type, the client's authority, path
        // and user agent (which no endpoint's decoder checks), and the proxy's own values (the forwarding
        // fields when the peer is not trusted: no `x-trust` in the request).
        let trusted = request.contains(name: "x-trust")
        let own: Set<String> = [
            ":method: GET", ":method: POST", ":scheme: http", ":scheme: https", ":path: /", ":path: /index.html",
            "content-type: application/grpc", "accept-encoding: gzip, deflate", "te: trailers",
            "x-forwarded-proto: http",
        ]
        for (name, value, indexing) in upstream where indexing == .indexable {
            let forwardingField =
                !trusted
                && ((name == "x-forwarded-for" && value == "192.0.2.7")
                    || (name == "forwarded" && value == "for=192.0.2.7;proto=http"))
            let opaque = name == ":authority" || name == ":path" || name == "user-agent"
            if !own.contains("\(name): \(value)") && !forwardingField && !opaque {
                fatalError("a client's field would be indexed upstream: \(name)")
            }
        }
        for name in ["x-forwarded-for", "x-forwarded-proto", "forwarded"] where upstream[name].count != 1 {
            fatalError("\(upstream[name].count) \(name) fields go upstream")
        }
        if upstream["te"].contains(where: { $0 != "trailers" }) { fatalError("te other than trailers goes upstream") }
        let timeouts = upstream["grpc-timeout"]
        if timeouts.count > request["grpc-timeout"].count { fatalError("more grpc-timeout fields than sent") }
        for value in timeouts {
            guard let parsed = H2Headers.grpcTimeout(value) else {
                fatalError("a grpc-timeout that does not parse goes upstream: \(value)")
            }
            if H2Headers.formatGrpcTimeout(parsed) != value {
                fatalError("grpc-timeout \(value) is not in canonical form")
            }
        }
        // The parser never traps on any value, and never shortens a deadline when re-formatting it.
        for value in request["grpc-timeout"] {
            if let parsed = H2Headers.grpcTimeout(value),
                let again = H2Headers.grpcTimeout(H2Headers.formatGrpcTimeout(parsed)),
                again < parsed
            {
                fatalError("grpc-timeout \(value) re-formatted is shorter")
            }
        }
    }
}
