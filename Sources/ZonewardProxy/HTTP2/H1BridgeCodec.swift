import NIOCore
import NIOHPACK
import NIOHTTP1

/// The HTTP/2 bridge's side of an HTTP/1.1 connection to an endpoint: requests written as bytes, and
/// responses read by the proxy's own strict parser (`HTTPHeadParser`, `ChunkedBodyScanner`: the ones the
/// HTTP/1.1 path uses, and fuzzes) straight into what the HTTP/2 client is sent.
///
/// NIO's HTTP/1.1 client codec did this before: llhttp, a `String` for every field's name and value, an
/// `HTTPHeaders` for each head, a validator and an encoder in the pipeline, and a handler hop for each
/// part; about 37,000 of 146,000 instructions per bridged stream in `PROTO=h2h1 bench/callgrind-proxy.sh`.
/// Here a response's fields go from its bytes to the HTTP/2 block in one pass, the names of the common ones
/// as string constants, and body bytes are slices of what was read.
enum H1RequestWriter {
    /// A request head, as `BridgeHeaders.requestForHTTP1` made it: HTTP/1.1, its fields as they are. Its
    /// parts were validated when the client's HTTP/2 stream opened (`H2Headers.isValidFromClient`: no CR, LF
    /// or NUL in a value, names tokens, a path without controls or spaces) or are the proxy's own.
    static func head(_ head: HTTPRequestHead, into buffer: inout ByteBuffer) {
        buffer.writeString(head.method.rawValue)
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(head.uri)
        buffer.writeStaticString(" HTTP/1.1\r\n")
        fields(head.headers, into: &buffer)
    }

    /// Field lines, and the empty line that ends them.
    private static func fields(_ headers: HTTPHeaders, into buffer: inout ByteBuffer) {
        for (name, value) in headers {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
    }

    /// Whether the head frames its body as chunks.
    static func isChunked(_ head: HTTPRequestHead) -> Bool {
        head.headers["transfer-encoding"].contains { $0.lowercased() == "chunked" }
    }

    /// A chunk's size line (the data follows it, then `chunkEnd`).
    static func chunkStart(_ size: Int, into buffer: inout ByteBuffer) {
        buffer.writeString(String(size, radix: 16))
        buffer.writeStaticString("\r\n")
    }

    static let chunkEnd: StaticString = "\r\n"

    /// The last chunk, the trailer fields, and the empty line that ends a chunked body.
    static func lastChunk(trailers: HTTPHeaders?, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("0\r\n")
        fields(trailers ?? [:], into: &buffer)
    }
}

/// Reads the responses of one HTTP/1.1 connection, one exchange at a time, into what the bridged HTTP/2
/// stream needs. Pull-based: `next()` gives one event at a time, so a caller may start the next exchange
/// (`begin`) from an event's handling without reentering the reader.
struct H1ResponseReader {
    /// What a response's trailer section becomes for the HTTP/2 client.
    enum Trailers: Equatable {
        case none
        /// The fields, lowercase, connection-specific ones dropped.
        case fields(HPACKHeaders)
        /// A field no HTTP/2 client may be sent (`H2Headers.isValidFromUpstream`).
        case unfit
    }

    enum Event {
        /// A response head: its status, its fields as an HTTP/2 block (nil when one is unfit for HTTP/2), and
        /// whether the endpoint keeps the connection for another exchange after this response (final heads).
        case head(status: Int, block: HPACKHeaders?, keepAlive: Bool)
        case body(ByteBuffer)
        case end(Trailers)
    }

    private enum State {
        /// No exchange: bytes now are a response nobody asked for.
        case idle
        /// A status line is expected (at the start, and after a 1xx head).
        case head
        case length(remaining: Int)
        case chunked(ChunkedBodyScanner)
        case untilClose
        /// The body is complete: `.end` is next.
        case complete
    }

    private var state = State.idle
    private var isHeadRequest = false
    /// Bytes read and not yet taken: part of a head, or the rest of a read.
    private var unread: ByteBuffer?
    private var fields = HeaderSummary()
    /// A chunked body's trailer lines so far (at most `HTTPHeadParser.maxHeadBytes`, as a head).
    private var trailerBytes: ByteBuffer?
    /// Where the search for the end of a head still incomplete goes on (no rescanning of a trickled head).
    private var headScanFrom = 0

    /// Whether an exchange is under way.
    var isReading: Bool {
        if case .idle = state { return false }
        return true
    }

    /// Whether bytes were read that no exchange has taken.
    var hasUnreadBytes: Bool { (unread?.readableBytes ?? 0) > 0 }

    /// A request went out: its response is next. A HEAD request's has no body whatever its head says.
    mutating func begin(isHeadRequest: Bool) {
        self.isHeadRequest = isHeadRequest
        state = .head
        trailerBytes = nil
        headScanFrom = 0
    }

    /// Bytes read from the endpoint.
    mutating func append(_ bytes: ByteBuffer) {
        if var buffer = unread, buffer.readableBytes > 0 {
            var bytes = bytes
            buffer.writeBuffer(&bytes)
            unread = buffer
        } else {
            unread = bytes
        }
    }

    /// The next event the bytes read so far complete; nil when more bytes are needed, or when no exchange
    /// is under way. Throws for a response the strict parser refuses.
    mutating func next() throws(HTTPFramingError) -> Event? {
        while true {
            switch state {
            case .idle:
                return nil
            case .head:
                return try readHead()
            case .length(let remaining):
                guard var buffer = unread, buffer.readableBytes > 0,
                    let body = buffer.readSlice(length: min(remaining, buffer.readableBytes))
                else { return nil }
                unread = buffer
                state = remaining == body.readableBytes ? .complete : .length(remaining: remaining - body.readableBytes)
                return .body(body)
            case .chunked(var scanner):
                guard var buffer = unread, buffer.readableBytes > 0 else { return nil }
                let (taken, body) = try Self.dechunk(buffer, &scanner, trailers: &trailerBytes)
                buffer.moveReaderIndex(forwardBy: taken)
                unread = buffer
                state = scanner.isComplete ? .complete : .chunked(scanner)
                if let body { return .body(body) }
            case .untilClose:
                guard let buffer = unread, buffer.readableBytes > 0 else { return nil }
                unread = nil
                return .body(buffer)
            case .complete:
                state = .idle
                // Nothing held while the connection waits in its pool.
                if let buffer = unread, buffer.readableBytes == 0 { unread = nil }
                return .end(try trailers())
            }
        }
    }

    /// The connection closed: `.end` for a body that ends so, else nil (the response is cut short, or none
    /// was under way).
    mutating func connectionClosed() -> Event? {
        guard case .untilClose = state else { return nil }
        state = .idle
        return .end(.none)
    }

    private mutating func readHead() throws(HTTPFramingError) -> Event? {
        guard var buffer = unread else { return nil }
        guard let length = HTTPHeadParser.headLength(in: buffer, scanFrom: headScanFrom) else {
            if buffer.readableBytes > HTTPHeadParser.maxHeadBytes { throw .headTooLarge }
            // The blank line may start in the last three bytes.
            headScanFrom = max(0, buffer.readableBytes - 3)
            return nil
        }
        headScanFrom = 0
        guard length <= HTTPHeadParser.maxHeadBytes, let head = buffer.readSlice(length: length) else {
            throw .headTooLarge
        }
        unread = buffer
        let isHeadRequest = self.isHeadRequest
        let (response, block) = try head.withUnsafeReadableBytes { bytes throws(HTTPFramingError) in
            let (response, _) = try HTTPHeadParser.parseResponseHead(
                bytes,
                isHeadRequest: isHeadRequest,
                fields: &fields
            )
            return (response, Self.block(status: response.status, fields, bytes))
        }
        switch response.framing {
        case _ where response.status < 200: state = .head
        case .none: state = .complete
        case .contentLength(let length): state = .length(remaining: length)
        case .chunked: state = .chunked(ChunkedBodyScanner())
        case .untilClose:
            // A coding other than one final `chunked` (`gzip, chunked`, `chunked` twice): the HTTP/1.1 path
            // relays it with its Transfer-Encoding, but HTTP/2 cannot carry one, and the client would take
            // the coded bytes for the content.
            if fields.transferEncodingCount > 0 { throw .unsupportedTransferEncoding }
            state = .untilClose
        }
        return .head(status: response.status, block: block, keepAlive: response.keepAlive)
    }

    /// The head's fields as an HTTP/2 block: `:status`, then each field but the hop-by-hop ones (those the
    /// HTTP/1.1 path drops: Connection and what it names, Keep-Alive, TE, Trailer, Upgrade, Proxy-*) and
    /// Transfer-Encoding, names lowercased. Nil when a field is unfit for HTTP/2.
    private static func block(status: Int, _ fields: HeaderSummary, _ bytes: UnsafeRawBufferPointer) -> HPACKHeaders? {
        var pairs = [(":status", String(status))]
        appendRelayed(fields, bytes, to: &pairs)
        // Made a block at once: `HPACKHeaders.add` checks each name for non-ASCII bytes through
        // `String.UTF8View`, about 340 instructions a field, and these names are tokens (the parser's check).
        let block = HPACKHeaders(pairs)
        // What HTTP/2 asks of a response head (`H2Headers.isValidFromUpstream`) holds by construction but the
        // status: names are lowercased tokens after `:status`; values hold no control byte but tab (so no
        // CR, LF or NUL) and no surrounding whitespace (the parser's checks and trimming). Checking it all
        // again cost about 1,800 instructions a bridged stream; debug builds (every test) still do.
        assert(!(100...599).contains(status) || H2Headers.isValidFromUpstream(block, trailers: false))
        return (100...599).contains(status) ? block : nil
    }

    /// Appends the fields that go to the HTTP/2 client (`relayed`) as HTTP/2 fields: names lowercased,
    /// values without surrounding whitespace.
    private static func appendRelayed(
        _ fields: HeaderSummary,
        _ bytes: UnsafeRawBufferPointer,
        to pairs: inout [(String, String)]
    ) {
        pairs.reserveCapacity(pairs.count + fields.lines.count)
        for line in fields.lines where relayed(line, fields, bytes) {
            pairs.append(
                (
                    H2Headers.lowercaseName(UnsafeRawBufferPointer(rebasing: bytes[line.start..<line.nameEnd])),
                    String(decoding: UnsafeRawBufferPointer(rebasing: bytes[line.value]), as: UTF8.self)
                )
            )
        }
    }

    /// Whether a field goes to the HTTP/2 client: not hop-by-hop (those the HTTP/1.1 path drops: Connection
    /// and what it names, Keep-Alive, TE, Trailer, Upgrade, Proxy-*), and not connection-specific in HTTP/2
    /// (Transfer-Encoding, HTTP2-Settings).
    private static func relayed(
        _ line: HeaderSummary.HeaderLine,
        _ fields: HeaderSummary,
        _ bytes: UnsafeRawBufferPointer
    ) -> Bool {
        guard line.kind != .transferEncoding, !fields.isHopByHop(line, bytes) else { return false }
        let name = UnsafeRawBufferPointer(rebasing: bytes[line.start..<line.nameEnd])
        return H2Headers.field(name.assumingMemoryBound(to: UInt8.self)) != .connectionSpecific
    }

    /// The data of the chunks among `buffer`'s bytes (a slice when in one piece), and how many bytes the
    /// body took; trailer lines are kept in `trailers`.
    private static func dechunk(
        _ buffer: ByteBuffer,
        _ scanner: inout ChunkedBodyScanner,
        trailers: inout ByteBuffer?
    ) throws(HTTPFramingError) -> (taken: Int, body: ByteBuffer?) {
        var ranges: [Range<Int>] = []
        var tooLarge = false
        let taken = try buffer.withUnsafeReadableBytes { bytes throws(HTTPFramingError) in
            try scanner.scan(bytes) { range, part in
                switch part {
                case .data: ranges.append(range)
                case .trailers:
                    var kept = trailers ?? ByteBuffer()
                    kept.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[range]))
                    trailers = kept
                    if kept.readableBytes > HTTPHeadParser.maxHeadBytes { tooLarge = true }
                }
            }
        }
        // Trailers are bounded as a head is: an endpoint does not get to grow them without end.
        if tooLarge { throw .headTooLarge }
        guard let first = ranges.first else { return (taken, nil) }
        if ranges.count == 1 {
            return (taken, buffer.getSlice(at: buffer.readerIndex + first.lowerBound, length: first.count))
        }
        var body = ByteBuffer()
        body.reserveCapacity(ranges.reduce(0) { $0 + $1.count })
        for range in ranges {
            if let slice = buffer.getSlice(at: buffer.readerIndex + range.lowerBound, length: range.count) {
                body.writeImmutableBuffer(slice)
            }
        }
        return (taken, body)
    }

    /// The trailer lines read, as an HTTP/2 trailers block.
    private mutating func trailers() throws(HTTPFramingError) -> Trailers {
        guard var lines = trailerBytes, lines.readableBytes > 0 else { return .none }
        trailerBytes = nil
        lines.writeStaticString("\r\n")
        let block = try lines.withUnsafeReadableBytes { bytes throws(HTTPFramingError) -> HPACKHeaders? in
            var scanner = LineScanner(bytes: bytes)
            fields.reset()
            try fields.scan(&scanner, bytes)
            var pairs: [(String, String)] = []
            Self.appendRelayed(fields, bytes, to: &pairs)
            let block = HPACKHeaders(pairs)
            return H2Headers.isValidFromUpstream(block, trailers: true) ? block : nil
        }
        guard let block else { return .unfit }
        return block.isEmpty ? .none : .fields(block)
    }
}
