import NIOCore
import NIOEmbedded
import NIOHTTP1

extension FramingFuzz {
    /// How llhttp (NIOHTTP1's parser, the kind of parser upstreams run) reads a byte stream of requests: the
    /// target and body length of each complete request, and whether it stopped at an error.
    static func llhttpRequests(in stream: ByteBuffer) -> (requests: [Request], failed: Bool) {
        let channel = EmbeddedChannel(
            handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .fireError))
        )
        var failed = false
        do {
            try channel.writeInbound(stream)
        } catch {
            failed = true
        }
        var requests: [Request] = []
        var current = Request(target: "", body: 0)
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head(let head): current = Request(target: head.uri, body: 0)
            case .body(let bytes): current.body! += bytes.readableBytes
            case .end: requests.append(current)
            }
        }
        _ = try? channel.finish()
        return (requests, failed)
    }
}
