import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Frames HTTP/1.1 messages directly on `ByteBuffer`: finds the end of a head, validates it strictly,
/// works out the body's framing, and rewrites only the hop-by-hop and forwarding headers.
///
/// Everything else is relayed as bytes. Strictness is the point: anything two parsers could read two
/// ways (both Content-Length and Transfer-Encoding, conflicting lengths, a coding other than a final
/// `chunked`, obsolete line folding, bare CR or LF, invalid bytes, oversized heads) is refused.
public enum HTTPHeadParser {
    /// The largest head accepted; larger is 431.
    public static let maxHeadBytes = 64 * 1024
    /// The most header lines accepted; more is 431.
    public static let maxHeaders = 100

    private static let cr: UInt8 = 13
    private static let lf: UInt8 = 10

    /// The length of the head at the start of `buffer`'s readable bytes, through its blank line, or nil
    /// when it is not complete yet. A head ending in a bare `LF LF` is returned too, for the parser to refuse.
    ///
    /// - Parameter scanFrom: where a previous call stopped looking, to avoid rescanning.
    public static func headLength(in buffer: ByteBuffer, scanFrom: Int = 0) -> Int? {
        buffer.withUnsafeReadableBytes { bytes in
            var index = max(scanFrom, 1)
            let count = bytes.count
            while index < count {
                guard let base = bytes.baseAddress,
                    let found = memchr(base + index, Int32(lf), count - index)
                else { return nil }
                let position = base.distance(to: UnsafeRawPointer(found))
                if bytes[position - 1] == lf {
                    return position + 1
                }
                if position >= 3, bytes[position - 1] == cr, bytes[position - 2] == lf, bytes[position - 3] == cr {
                    return position + 1
                }
                index = position + 1
            }
            return nil
        }
    }

    // MARK: Requests

    /// Parses a request head (exactly the bytes `headLength` found) and writes the head to forward upstream
    /// into `output`: the request line and every end-to-end header as they came, hop-by-hop headers removed,
    /// X-Forwarded-For and Forwarded extended, X-Forwarded-Proto set.
    public static func parseRequest(
        _ head: ByteBuffer,
        forwarding: ForwardingInfo,
        into output: inout ByteBuffer
    ) throws(HTTPFramingError) -> RequestHead {
        var scratch = HeaderSummary()
        return try parseRequest(head, forwarding: forwarding, into: &output, scratch: &scratch)
    }

    /// As `parseRequest(_:forwarding:into:)`, reusing `scratch`'s storage across requests of a connection.
    static func parseRequest(
        _ head: ByteBuffer,
        forwarding: ForwardingInfo,
        into output: inout ByteBuffer,
        scratch fields: inout HeaderSummary
    ) throws(HTTPFramingError) -> RequestHead {
        guard head.readableBytes <= maxHeadBytes else { throw .headTooLarge }
        fields.reset()
        return try head.withUnsafeReadableBytes { bytes throws(HTTPFramingError) in
            var scanner = LineScanner(bytes: bytes)
            let requestLine = try scanner.nextLine()
            let (method, isHTTP11) = try parseRequestLine(bytes, requestLine)
            try fields.scan(&scanner, bytes)
            let framing: BodyFraming
            if fields.transferEncodingCount > 0 {
                if fields.contentLength != nil { throw .contentLengthWithTransferEncoding }
                guard fields.transferEncodingCount == 1, fields.transferEncodingIsChunked, isHTTP11 else {
                    throw .unsupportedTransferEncoding
                }
                framing = .chunked
            } else if let length = fields.contentLength {
                framing = length > 0 ? .contentLength(length) : .none
            } else {
                framing = .none
            }
            if isHTTP11 && fields.hostCount == 0 { throw .missingHost }
            if fields.hostCount > 1 { throw .duplicateHost }
            let keepAlive = isHTTP11 ? !fields.connectionClose : (fields.connectionKeepAlive && !fields.connectionClose)
            // RFC 6455 §4.1: a WebSocket handshake is a GET with `Upgrade: websocket` and `Connection: Upgrade`.
            // Upgrade is hop-by-hop, so it is forwarded only for this one protocol the proxy can tunnel.
            let upgradesToWebSocket =
                isHTTP11 && method == .get && fields.upgradeIsWebSocket && fields.connectionUpgrade
                && framing == .none

            // The forwarded head: request line, kept headers, then the forwarding headers, copied in one
            // pass into memory reserved once (a ByteBuffer write per line and per added header cost about
            // 280 instructions each), with runs of adjacent kept lines copied together.
            let trusted = forwarding.trustsPeer
            var bound = bytes.count + 64 + forwarding.clientBytes.count + forwarding.middle.count
            bound += forwarding.forwardedElement.count
            if trusted {
                for line in fields.lines where line.kind == .forwardedFor || line.kind == .forwarded {
                    bound += line.value.count + 2
                }
            }
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { out in
                var writer = HeadWriter(out: out, from: bytes)
                writer.copy(requestLine.start..<requestLine.end + 2)
                if upgradesToWebSocket { writer.append("Connection: Upgrade\r\nUpgrade: websocket\r\n") }
                var hasForwarded = false
                for line in fields.lines {
                    switch line.kind {
                    case .hopByHop, .upgrade, .connection, .forwardedProto, .forwardedFor:
                        continue
                    case .forwarded:
                        hasForwarded = true
                        continue
                    case .other where fields.isNominatedByConnection(line, bytes):
                        continue
                    default:
                        writer.copy(line.start..<line.end + 2)
                    }
                }
                // Earlier hops' values first, in order, then this hop's; an untrusted peer's are replaced, so
                // a client cannot make the endpoint believe it comes from elsewhere.
                writer.append("X-Forwarded-For: ")
                for line in fields.lines where line.kind == .forwardedFor && trusted {
                    writer.copy(line.value)
                    writer.append(", ")
                }
                writer.append(forwarding.clientBytes)
                writer.append(forwarding.middle)
                if hasForwarded && trusted {
                    for line in fields.lines where line.kind == .forwarded {
                        writer.copy(line.value)
                        writer.append(", ")
                    }
                }
                writer.append(forwarding.forwardedElement)
                return writer.finish()
            }
            return RequestHead(
                method: method,
                isHTTP11: isHTTP11,
                framing: framing,
                keepAlive: keepAlive,
                upgradesToWebSocket: upgradesToWebSocket
            )
        }
    }

    private static func parseRequestLine(
        _ bytes: UnsafeRawBufferPointer,
        _ line: LineScanner.Line
    ) throws(HTTPFramingError) -> (RequestHead.Method, Bool) {
        var index = line.start
        while index < line.end, isTokenCharacter(bytes[index]) { index += 1 }
        let methodEnd = index
        guard methodEnd > line.start, index < line.end, bytes[index] == 32 else { throw .invalidRequestLine }
        index += 1
        let targetStart = index
        while index < line.end, bytes[index] > 32, bytes[index] < 127 { index += 1 }
        guard index > targetStart, index < line.end, bytes[index] == 32 else { throw .invalidRequestLine }
        index += 1
        let isHTTP11 = try parseVersion(bytes, from: index, to: line.end)
        return (method(bytes, line.start, methodEnd), isHTTP11)
    }

    /// `HTTP/1.1` → true, `HTTP/1.0` → false; another `HTTP/x.y` is unsupported; anything else invalid.
    private static func parseVersion(
        _ bytes: UnsafeRawBufferPointer,
        from start: Int,
        to end: Int
    ) throws(HTTPFramingError) -> Bool {
        guard end - start == 8,
            bytes[start] == 72, bytes[start + 1] == 84, bytes[start + 2] == 84, bytes[start + 3] == 80,
            bytes[start + 4] == 47, bytes[start + 6] == 46,
            (48...57).contains(bytes[start + 5]), (48...57).contains(bytes[start + 7])
        else { throw .invalidRequestLine }
        guard bytes[start + 5] == 49 else { throw .unsupportedVersion }
        switch bytes[start + 7] {
        case 49: return true
        case 48: return false
        default: throw .unsupportedVersion
        }
    }

    private static func method(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> RequestHead.Method {
        func matches(_ name: StaticString) -> Bool {
            guard name.utf8CodeUnitCount == end - start else { return false }
            return name.withUTF8Buffer { name in
                for offset in 0..<name.count where name[offset] != bytes[start + offset] { return false }
                return true
            }
        }
        switch end - start {
        case 3: return matches("GET") ? .get : matches("PUT") ? .put : .other
        case 4: return matches("POST") ? .post : matches("HEAD") ? .head : .other
        case 5: return matches("PATCH") ? .patch : matches("TRACE") ? .trace : .other
        case 6: return matches("DELETE") ? .delete : .other
        case 7: return matches("OPTIONS") ? .options : matches("CONNECT") ? .connect : .other
        default: return .other
        }
    }

    // MARK: Responses

    /// Parses a response head. When the head must change on its way to the client (hop-by-hop headers to
    /// drop, or a Connection header to add) the new head is written to `output` and `rewritten` is true;
    /// otherwise the original bytes can be forwarded as they are.
    ///
    /// - Parameters:
    ///   - isHeadRequest: the request was HEAD, so the response has no body whatever it says.
    ///   - clientKeepAlive: the client asked to keep its connection open.
    ///   - clientIsHTTP11: the client spoke HTTP/1.1 (an HTTP/1.0 client needs `Connection: keep-alive`).
    public static func parseResponse(
        _ head: ByteBuffer,
        isHeadRequest: Bool,
        clientKeepAlive: Bool,
        clientIsHTTP11: Bool,
        into output: inout ByteBuffer
    ) throws(HTTPFramingError) -> (head: ResponseHead, rewritten: Bool, closeClient: Bool) {
        var scratch = HeaderSummary()
        return try parseResponse(
            head,
            isHeadRequest: isHeadRequest,
            clientKeepAlive: clientKeepAlive,
            clientIsHTTP11: clientIsHTTP11,
            into: &output,
            scratch: &scratch
        )
    }

    /// As `parseResponse(_:isHeadRequest:clientKeepAlive:clientIsHTTP11:into:)`, reusing `scratch`.
    static func parseResponse(
        _ head: ByteBuffer,
        isHeadRequest: Bool,
        clientKeepAlive: Bool,
        clientIsHTTP11: Bool,
        into output: inout ByteBuffer,
        scratch fields: inout HeaderSummary
    ) throws(HTTPFramingError) -> (head: ResponseHead, rewritten: Bool, closeClient: Bool) {
        guard head.readableBytes <= maxHeadBytes else { throw .headTooLarge }
        return try head.withUnsafeReadableBytes { bytes throws(HTTPFramingError) in
            let (response, statusLine) = try parseResponseHead(bytes, isHeadRequest: isHeadRequest, fields: &fields)
            let status = response.status
            let framing = response.framing
            let interim = response.isInterim
            let closeClient = !interim && (!clientKeepAlive || framing == .untilClose)
            // 101 Switching Protocols keeps its Upgrade and Connection headers: the client needs them. The
            // caller decides whether the switch is allowed.
            if status == 101 { return (response, false, false) }

            // A Connection header that says only `keep-alive` is relayed as it is when the client connection
            // stays open: it is then this hop's own control option (RFC 9110 §7.6.1 lets an intermediary
            // replace Connection with its own), and the head goes out unchanged, with no copy. nginx and most
            // servers send it on every response.
            let keepsAliveAsSaid =
                !interim && !closeClient && fields.connectionKeepAlive && !fields.connectionClose
                && !fields.connectionUpgrade && fields.nominated.isEmpty
            let addConnection: StaticString? =
                interim
                ? nil
                : closeClient
                    ? "Connection: close\r\n"
                    : (clientIsHTTP11 || keepsAliveAsSaid ? nil : "Connection: keep-alive\r\n")
            func drops(_ line: HeaderSummary.HeaderLine) -> Bool {
                fields.isHopByHop(line, bytes) && !(keepsAliveAsSaid && line.kind == .connection)
            }
            guard fields.lines.contains(where: drops) || addConnection != nil else {
                return (response, false, closeClient)
            }
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: bytes.count + 32) { out in
                var writer = HeadWriter(out: out, from: bytes)
                writer.copy(statusLine.start..<statusLine.end + 2)
                for line in fields.lines where !drops(line) {
                    writer.copy(line.start..<line.end + 2)
                }
                if let addConnection { writer.append(addConnection) }
                writer.append("\r\n")
                return writer.finish()
            }
            return (response, true, closeClient)
        }
    }

    /// A response head's status line and fields (into `fields`, reset first), and the framing of the body
    /// that follows: none for HEAD, 1xx, 204 and 304, else chunked, a length, or until the close. Shared by
    /// the HTTP/1.1 path (which relays the head's bytes) and the HTTP/2 bridge (which reads its fields).
    static func parseResponseHead(
        _ bytes: UnsafeRawBufferPointer,
        isHeadRequest: Bool,
        fields: inout HeaderSummary
    ) throws(HTTPFramingError) -> (ResponseHead, statusLine: LineScanner.Line) {
        fields.reset()
        var scanner = LineScanner(bytes: bytes)
        let statusLine = try scanner.nextLine()
        let (status, isHTTP11) = try parseStatusLine(bytes, statusLine)
        try fields.scan(&scanner, bytes)
        var framing: BodyFraming
        var reusable = isHTTP11 ? !fields.connectionClose : (fields.connectionKeepAlive && !fields.connectionClose)
        if isHeadRequest || (100..<200).contains(status) || status == 204 || status == 304 {
            framing = .none
        } else if fields.transferEncodingCount > 0 {
            // A length beside a coding may be read differently by the client: refuse it (502).
            if fields.contentLength != nil { throw .contentLengthWithTransferEncoding }
            if fields.transferEncodingIsChunked && fields.transferEncodingCount == 1 {
                framing = .chunked
            } else {
                framing = .untilClose
            }
        } else if let length = fields.contentLength {
            framing = length > 0 ? .contentLength(length) : .none
        } else {
            framing = .untilClose
        }
        if framing == .untilClose { reusable = false }
        return (ResponseHead(status: status, isHTTP11: isHTTP11, framing: framing, keepAlive: reusable), statusLine)
    }

    private static func parseStatusLine(
        _ bytes: UnsafeRawBufferPointer,
        _ line: LineScanner.Line
    ) throws(HTTPFramingError) -> (Int, Bool) {
        guard line.end - line.start >= 12, bytes[line.start + 8] == 32 else { throw .invalidStatusLine }
        let isHTTP11: Bool
        do {
            isHTTP11 = try parseVersion(bytes, from: line.start, to: line.start + 8)
        } catch .unsupportedVersion {
            throw .unsupportedVersion
        } catch {
            throw .invalidStatusLine
        }
        var status = 0
        for offset in 9..<12 {
            let digit = bytes[line.start + offset]
            guard (48...57).contains(digit) else { throw .invalidStatusLine }
            status = status * 10 + Int(digit - 48)
        }
        guard status >= 100, line.end - line.start == 12 || bytes[line.start + 12] == 32 else {
            throw .invalidStatusLine
        }
        for index in (line.start + 12)..<line.end where !isFieldValueByte(bytes[index]) {
            throw .invalidStatusLine
        }
        return (status, isHTTP11)
    }

    // MARK: Bytes

    /// RFC 9110 tchar (`HTTPTokens`).
    @inline(__always)
    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        HTTPTokens.isTokenCharacter(byte)
    }

    /// HTAB, SP, VCHAR, obs-text.
    @inline(__always)
    static func isFieldValueByte(_ byte: UInt8) -> Bool {
        byte == 9 || (byte >= 32 && byte != 127)
    }

    /// Whether every byte in `start..<end` is a field value byte, eight at a time: a word with no byte
    /// below 0x20 and none equal to 0x7F is all valid; a word with one (a tab, or an invalid byte) is checked
    /// byte by byte. A quarter of the per-byte loop's instructions on ordinary values.
    static func allFieldValueBytes(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Bool {
        var index = start
        if let base = bytes.baseAddress {
            let ones: UInt64 = 0x0101_0101_0101_0101
            let highs: UInt64 = 0x8080_8080_8080_8080
            while end - index >= 8 {
                let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: index, as: UInt64.self))
                // Any byte < 0x20, or any byte equal to 0x7F (the classic "has less than" and "has zero"
                // tests; both exact about whether such a byte exists).
                let below = (word &- ones &* 0x20) & ~word & highs
                let del = word ^ (ones &* 0x7F)
                let hasDel = (del &- ones) & ~del & highs
                if below | hasDel != 0 {
                    for position in index..<(index + 8) where !isFieldValueByte(bytes[position]) { return false }
                }
                index += 8
            }
        }
        for position in index..<end where !isFieldValueByte(bytes[position]) { return false }
        return true
    }
}

/// Copies pieces of a head, and added text, into memory reserved for the whole result. Adjacent source
/// ranges are merged and copied with one memcpy.
struct HeadWriter {
    let out: UnsafeMutableRawBufferPointer
    let from: UnsafeRawBufferPointer
    private(set) var written = 0
    /// A source range not copied yet, extended while the next range starts where it ends.
    private var pending: Range<Int> = 0..<0

    init(out: UnsafeMutableRawBufferPointer, from: UnsafeRawBufferPointer) {
        self.out = out
        self.from = from
    }

    /// Copies `range` of the source (bounds checked: never past the reserved memory).
    mutating func copy(_ range: Range<Int>) {
        if !pending.isEmpty && pending.upperBound == range.lowerBound {
            pending = pending.lowerBound..<range.upperBound
            return
        }
        flush()
        pending = range
    }

    mutating func append(_ text: StaticString) {
        flush()
        text.withUTF8Buffer { place(UnsafeRawBufferPointer($0)) }
    }

    mutating func append(_ bytes: [UInt8]) {
        flush()
        bytes.withUnsafeBytes { place($0) }
    }

    /// The number of bytes written.
    mutating func finish() -> Int {
        flush()
        return written
    }

    private mutating func flush() {
        guard !pending.isEmpty else { return }
        let range = pending
        pending = 0..<0
        place(UnsafeRawBufferPointer(rebasing: from[range]))
    }

    private mutating func place(_ bytes: UnsafeRawBufferPointer) {
        let count = min(bytes.count, out.count - written)
        guard count > 0, let target = out.baseAddress, let source = bytes.baseAddress else { return }
        (target + written).copyMemory(from: source, byteCount: count)
        written += count
    }
}

/// Splits a head into CRLF-terminated lines, refusing bare CR and bare LF.
struct LineScanner {
    struct Line {
        /// First byte of the line.
        var start: Int
        /// Index of the line's CR.
        var end: Int
    }

    let bytes: UnsafeRawBufferPointer
    var position = 0

    init(bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// The next line, or nil at the blank line that ends the head.
    mutating func nextLineOrEnd() throws(HTTPFramingError) -> Line? {
        let line = try nextLine()
        return line.start == line.end ? nil : line
    }

    mutating func nextLine() throws(HTTPFramingError) -> Line {
        let start = position
        let count = bytes.count
        // memchr for the CR, then for an LF before it, instead of a byte loop: a third of the parser's
        // instructions went to finding line ends. Same verdicts: a line ends at its first CR, which must be
        // followed by LF, and holds no LF.
        guard start < count, let base = bytes.baseAddress,
            let found = memchr(base + start, 13, count - start)
        else { throw .bareLineEnding }
        let index = base.distance(to: UnsafeRawPointer(found))
        if index > start, memchr(base + start, 10, index - start) != nil { throw .bareLineEnding }
        guard index + 1 < count, bytes[index + 1] == 10 else { throw .bareLineEnding }
        position = index + 2
        return Line(start: start, end: index)
    }
}

/// What the proxy needs from a head's header lines, gathered in one pass.
struct HeaderSummary {
    enum Kind: Equatable {
        case hopByHop, upgrade, contentLength, transferEncoding, host, forwardedFor, forwardedProto, forwarded
        case connection, other
    }

    struct HeaderLine {
        var start: Int
        var end: Int
        var nameEnd: Int
        var value: Range<Int>
        var kind: Kind
    }

    var lines: [HeaderLine] = []
    var contentLength: Int?
    var transferEncodingCount = 0
    var transferEncodingIsChunked = false
    var hostCount = 0
    var connectionClose = false
    var connectionKeepAlive = false
    /// Connection lists `upgrade`.
    var connectionUpgrade = false
    /// There is exactly one Upgrade header, and it says `websocket`.
    var upgradeIsWebSocket = false
    var upgradeCount = 0
    /// Header names listed in Connection (other than close and keep-alive): hop-by-hop for this message.
    var nominated: [Range<Int>] = []

    /// Empties the summary, keeping its storage for the next head.
    mutating func reset() {
        lines.removeAll(keepingCapacity: true)
        nominated.removeAll(keepingCapacity: true)
        contentLength = nil
        transferEncodingCount = 0
        transferEncodingIsChunked = false
        hostCount = 0
        connectionClose = false
        connectionKeepAlive = false
        connectionUpgrade = false
        upgradeIsWebSocket = false
        upgradeCount = 0
    }

    mutating func scan(_ scanner: inout LineScanner, _ bytes: UnsafeRawBufferPointer) throws(HTTPFramingError) {
        if lines.capacity < 16 { lines.reserveCapacity(16) }
        while let line = try scanner.nextLineOrEnd() {
            guard lines.count < HTTPHeadParser.maxHeaders else { throw .tooManyHeaders }
            let first = bytes[line.start]
            if first == 32 || first == 9 { throw .obsoleteLineFolding }
            var index = line.start
            while index < line.end, HTTPHeadParser.isTokenCharacter(bytes[index]) { index += 1 }
            guard index > line.start, index < line.end, bytes[index] == 58 else { throw .invalidHeaderName }
            let nameEnd = index
            index += 1
            while index < line.end, bytes[index] == 32 || bytes[index] == 9 { index += 1 }
            var valueEnd = line.end
            while valueEnd > index, bytes[valueEnd - 1] == 32 || bytes[valueEnd - 1] == 9 { valueEnd -= 1 }
            guard HTTPHeadParser.allFieldValueBytes(bytes, index, valueEnd) else { throw .invalidHeaderValue }
            let kind = Self.classify(bytes, line.start, nameEnd)
            let header = HeaderLine(
                start: line.start,
                end: line.end,
                nameEnd: nameEnd,
                value: index..<valueEnd,
                kind: kind
            )
            try record(header, bytes)
            lines.append(header)
        }
    }

    private mutating func record(_ header: HeaderLine, _ bytes: UnsafeRawBufferPointer) throws(HTTPFramingError) {
        switch header.kind {
        case .contentLength:
            let value = header.value
            guard !value.isEmpty, value.count <= 18 else { throw .invalidContentLength }
            var length = 0
            for index in value {
                let digit = bytes[index]
                guard (48...57).contains(digit) else { throw .invalidContentLength }
                length = length * 10 + Int(digit - 48)
            }
            if let existing = contentLength, existing != length { throw .conflictingContentLength }
            contentLength = length
        case .transferEncoding:
            transferEncodingCount += 1
            transferEncodingIsChunked = Self.equalsIgnoringCase(bytes, header.value, "chunked")
        case .host:
            hostCount += 1
        case .upgrade:
            upgradeCount += 1
            upgradeIsWebSocket = upgradeCount == 1 && Self.equalsIgnoringCase(bytes, header.value, "websocket")
        case .connection:
            // Comma-separated tokens.
            var tokenStart = header.value.lowerBound
            for index in header.value.lowerBound...header.value.upperBound
            where index == header.value.upperBound || bytes[index] == 44 {
                var start = tokenStart
                var end = index
                while start < end, bytes[start] == 32 || bytes[start] == 9 { start += 1 }
                while end > start, bytes[end - 1] == 32 || bytes[end - 1] == 9 { end -= 1 }
                tokenStart = index + 1
                guard start < end else { continue }
                if Self.equalsIgnoringCase(bytes, start..<end, "close") {
                    connectionClose = true
                } else if Self.equalsIgnoringCase(bytes, start..<end, "keep-alive") {
                    connectionKeepAlive = true
                } else if Self.equalsIgnoringCase(bytes, start..<end, "upgrade") {
                    connectionUpgrade = true
                } else {
                    nominated.append(start..<end)
                }
            }
        default:
            break
        }
    }

    /// True for Connection, Keep-Alive, TE, Trailer, Upgrade, Proxy-* and the fields Connection names.
    func isHopByHop(_ line: HeaderLine, _ bytes: UnsafeRawBufferPointer) -> Bool {
        line.kind == .hopByHop || line.kind == .upgrade || line.kind == .connection
            || isNominatedByConnection(line, bytes)
    }

    /// True when a Connection header named this line's field: it is hop-by-hop for this message.
    func isNominatedByConnection(_ line: HeaderLine, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !nominated.isEmpty, line.kind == .other else { return false }
        let nameLength = line.nameEnd - line.start
        for token in nominated where token.count == nameLength {
            var same = true
            for offset in 0..<nameLength
            where Self.lower(bytes[token.lowerBound + offset]) != Self.lower(bytes[line.start + offset]) {
                same = false
                break
            }
            if same { return true }
        }
        return false
    }

    private static func classify(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Kind {
        let name = start..<end
        switch end - start {
        case 2: return equalsIgnoringCase(bytes, name, "te") ? .hopByHop : .other
        case 4: return equalsIgnoringCase(bytes, name, "host") ? .host : .other
        case 7:
            if equalsIgnoringCase(bytes, name, "upgrade") { return .upgrade }
            return equalsIgnoringCase(bytes, name, "trailer") ? .hopByHop : .other
        case 9: return equalsIgnoringCase(bytes, name, "forwarded") ? .forwarded : .other
        case 10:
            if equalsIgnoringCase(bytes, name, "connection") { return .connection }
            return equalsIgnoringCase(bytes, name, "keep-alive") ? .hopByHop : .other
        case 14: return equalsIgnoringCase(bytes, name, "content-length") ? .contentLength : .other
        case 15: return equalsIgnoringCase(bytes, name, "x-forwarded-for") ? .forwardedFor : .other
        case 17:
            if equalsIgnoringCase(bytes, name, "transfer-encoding") { return .transferEncoding }
            if equalsIgnoringCase(bytes, name, "x-forwarded-proto") { return .forwardedProto }
            return hasProxyPrefix(bytes, start, end) ? .hopByHop : .other
        default:
            return hasProxyPrefix(bytes, start, end) ? .hopByHop : .other
        }
    }

    /// `Proxy-*` headers (Proxy-Connection, Proxy-Authorization, …) are for this hop only.
    private static func hasProxyPrefix(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Bool {
        end - start > 6 && equalsIgnoringCase(bytes, start..<(start + 6), "proxy-")
    }

    @inline(__always)
    static func lower(_ byte: UInt8) -> UInt8 {
        byte >= 65 && byte <= 90 ? byte | 0x20 : byte
    }

    /// Compares bytes with a lowercase ASCII literal, ignoring case.
    static func equalsIgnoringCase(
        _ bytes: UnsafeRawBufferPointer,
        _ range: Range<Int>,
        _ literal: StaticString
    ) -> Bool {
        guard range.count == literal.utf8CodeUnitCount else { return false }
        return literal.withUTF8Buffer { literal in
            var offset = 0
            for index in range {
                if lower(bytes[index]) != literal[offset] { return false }
                offset += 1
            }
            return true
        }
    }
}
