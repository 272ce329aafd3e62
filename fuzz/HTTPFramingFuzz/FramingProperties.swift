import NIOCore

/// The properties the fuzzer checks on every input; see `fuzzHTTPFraming` for how an input is read.
enum FramingFuzz {
    static let forwardingIPv4 = ForwardingInfo(clientAddress: "192.0.2.7", scheme: "http")
    static let forwardingIPv6 = ForwardingInfo(clientAddress: "2001:db8::7", scheme: "https")

    /// Reused across inputs, as a connection reuses its scratch across requests: a dirty summary must give
    /// the same answer as a fresh one.
    nonisolated(unsafe) static var reused = HeaderSummary()

    static func check(selector: UInt8, payload: UnsafeRawBufferPointer) {
        let seed = selector >> 5
        switch selector & 3 {
        case 0:
            request(payload, ipv6: selector & 4 != 0, seed: seed)
        case 1:
            response(
                payload,
                isHeadRequest: selector & 4 != 0,
                clientKeepAlive: selector & 8 != 0,
                clientIsHTTP11: selector & 16 != 0,
                seed: seed
            )
        case 2:
            if selector & 4 != 0 {
                guard payload.count >= 2 else { return }
                let length = Int(payload[0]) << 8 | Int(payload[1])
                body(UnsafeRawBufferPointer(rebasing: payload[2...]), framing: .contentLength(length), seed: seed)
            } else {
                body(payload, framing: .chunked, seed: seed)
            }
        default:
            if selector & 4 != 0 {
                upstream(payload, isHeadRequest: selector & 8 != 0, clientIsHTTP11: selector & 16 != 0, seed: seed)
            } else {
                connection(payload, seed: seed)
            }
        }
    }

    static func require(_ condition: Bool, _ property: @autoclosure () -> String) {
        if !condition { fatalError("property broken: \(property())") }
    }

    // MARK: Head length

    /// `headLength` on `buffer`, checked: within the input, ending at the first blank line, unchanged by
    /// the reader index, and found the same way when the bytes arrive in pieces and each scan resumes
    /// where the last one stopped (as HTTPProxyHandler does).
    static func headLength(of buffer: ByteBuffer, seed: UInt8) -> Int? {
        let count = buffer.readableBytes
        let length = HTTPHeadParser.headLength(in: buffer)
        if let length {
            require(length >= 2 && length <= count, "headLength \(length) within the \(count) input bytes")
            let end = buffer.getBytes(at: buffer.readerIndex + length - 2, length: 2)!
            let endsHead =
                end == [10, 10]
                || (length >= 4
                    && buffer.getBytes(at: buffer.readerIndex + length - 4, length: 4)! == [13, 10, 13, 10])
            require(endsHead, "a head ends in LF LF or CRLF CRLF")
            require(
                HTTPHeadParser.headLength(in: buffer.getSlice(at: buffer.readerIndex, length: length - 1)!) == nil,
                "headLength finds the first end of head"
            )
        }
        var shifted = ByteBuffer(bytes: [71, 69, 84])
        shifted.moveReaderIndex(forwardBy: 3)
        shifted.writeImmutableBuffer(buffer)
        require(HTTPHeadParser.headLength(in: shifted) == length, "headLength ignores bytes before the reader index")

        var arrived = ByteBuffer()
        var scanFrom = 0
        var found: Int?
        buffer.withUnsafeReadableBytes { bytes in
            for piece in Pieces(count: bytes.count, seed: seed) where found == nil {
                arrived.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[piece]))
                found = HTTPHeadParser.headLength(in: arrived, scanFrom: scanFrom)
                scanFrom = max(0, arrived.readableBytes - 3)
            }
        }
        require(
            found == length,
            "headLength in pieces \(String(describing: found)) == at once \(String(describing: length))"
        )
        return length
    }

    /// The lowercased names of the `.other` headers in a parsed head.
    static func names(_ fields: HeaderSummary, _ head: ByteBuffer) -> [[UInt8]] {
        fields.lines.filter { $0.kind == .other }.map { line in
            head.getBytes(at: head.readerIndex + line.start, length: line.nameEnd - line.start)!.map(
                HeaderSummary.lower
            )
        }
    }

    /// The lowercased header names a parsed head's Connection header listed.
    static func nominatedNames(_ fields: HeaderSummary, _ head: ByteBuffer) -> Set<[UInt8]> {
        Set(
            fields.nominated.map { token in
                head.getBytes(at: head.readerIndex + token.lowerBound, length: token.count)!.map(HeaderSummary.lower)
            }
        )
    }

    // MARK: Requests

    static func parseRequest(
        _ head: ByteBuffer,
        _ forwarding: ForwardingInfo,
        _ fields: inout HeaderSummary
    ) -> (Result<RequestHead, HTTPFramingError>, ByteBuffer) {
        var output = ByteBuffer()
        do {
            let parsed = try HTTPHeadParser.parseRequest(
                head,
                forwarding: forwarding,
                into: &output,
                scratch: &fields
            )
            return (.success(parsed), output)
        } catch {
            return (.failure(error), output)
        }
    }

    static func same(_ a: RequestHead, _ b: RequestHead) -> Bool {
        a.method == b.method && a.isHTTP11 == b.isHTTP11 && a.framing == b.framing && a.keepAlive == b.keepAlive
    }

    /// A request head that parses gives a forwarded head that parses too, to the same method, version and
    /// framing, with no hop-by-hop header left and exactly one of each forwarding header.
    static func request(_ payload: UnsafeRawBufferPointer, ipv6: Bool, seed: UInt8) {
        let buffer = ByteBuffer(bytes: payload)
        guard let length = headLength(of: buffer, seed: seed) else { return }
        let head = buffer.getSlice(at: buffer.readerIndex, length: length)!
        let forwarding = ipv6 ? forwardingIPv6 : forwardingIPv4
        var fields = HeaderSummary()
        let (result, output) = parseRequest(head, forwarding, &fields)
        let (again, outputAgain) = parseRequest(head, forwarding, &reused)
        switch (result, again) {
        case (.failure(let error), .failure(let errorAgain)):
            require(error == errorAgain, "a reused scratch refuses the same way: \(error) vs \(errorAgain)")
            return
        case (.success(let parsed), .success(let parsedAgain)):
            require(same(parsed, parsedAgain) && output == outputAgain, "a reused scratch parses the same")
        default:
            require(false, "a reused scratch parses the same: \(result) vs \(again)")
        }
        guard case .success(let parsed) = result else { return }
        require(parsed.framing != .untilClose, "a request is never framed until close")
        if case .contentLength(let bodyLength) = parsed.framing { require(bodyLength > 0, "a zero length is no body") }

        require(
            HTTPHeadParser.headLength(in: output) == output.readableBytes,
            "the forwarded head ends where it should"
        )
        var forwardedFields = HeaderSummary()
        switch parseRequest(output, forwarding, &forwardedFields).0 {
        case .success(let forwarded):
            require(
                forwarded.method == parsed.method && forwarded.isHTTP11 == parsed.isHTTP11
                    && forwarded.framing == parsed.framing,
                "the forwarded head reads the same: \(parsed) vs \(forwarded)"
            )
            // Connection headers are removed, so the upstream sees the version's default.
            require(forwarded.keepAlive == parsed.isHTTP11, "the forwarded head has no Connection header")
            let kinds = forwardedFields.lines.map(\.kind)
            require(
                !kinds.contains(.hopByHop) && !kinds.contains(.connection) && forwardedFields.nominated.isEmpty,
                "no hop-by-hop header is forwarded"
            )
            for kind in [HeaderSummary.Kind.forwardedFor, .forwardedProto, .forwarded] {
                require(kinds.filter { $0 == kind }.count == 1, "exactly one \(kind) header is forwarded")
            }
            let named = nominatedNames(fields, head)
            require(
                names(forwardedFields, output).allSatisfy { !named.contains($0) },
                "no header the Connection header named is forwarded"
            )
        case .failure(.tooManyHeaders) where fields.lines.count + 3 > HTTPHeadParser.maxHeaders:
            break  // the three forwarding headers took it over the limit
        case .failure(.headTooLarge) where output.readableBytes > HTTPHeadParser.maxHeadBytes:
            break
        case .failure(let error):
            require(false, "the forwarded head parses, not \(error)")
        }
    }

    // MARK: Responses

    static func parseResponse(
        _ head: ByteBuffer,
        _ flags: (isHeadRequest: Bool, clientKeepAlive: Bool, clientIsHTTP11: Bool),
        _ fields: inout HeaderSummary
    ) -> (Result<(head: ResponseHead, rewritten: Bool, closeClient: Bool), HTTPFramingError>, ByteBuffer) {
        var output = ByteBuffer()
        do {
            let parsed = try HTTPHeadParser.parseResponse(
                head,
                isHeadRequest: flags.isHeadRequest,
                clientKeepAlive: flags.clientKeepAlive,
                clientIsHTTP11: flags.clientIsHTTP11,
                into: &output,
                scratch: &fields
            )
            return (.success(parsed), output)
        } catch {
            return (.failure(error), output)
        }
    }

    static func same(_ a: ResponseHead, _ b: ResponseHead) -> Bool {
        a.status == b.status && a.isHTTP11 == b.isHTTP11 && a.framing == b.framing && a.keepAlive == b.keepAlive
    }

    /// A response head that parses gives a head for the client that parses to the same status, version and
    /// framing, says `Connection: close` exactly when the client is to be closed, and is a fixed point:
    /// framing it again changes nothing.
    static func response(
        _ payload: UnsafeRawBufferPointer,
        isHeadRequest: Bool,
        clientKeepAlive: Bool,
        clientIsHTTP11: Bool,
        seed: UInt8
    ) {
        let flags = (isHeadRequest: isHeadRequest, clientKeepAlive: clientKeepAlive, clientIsHTTP11: clientIsHTTP11)
        let buffer = ByteBuffer(bytes: payload)
        guard let length = headLength(of: buffer, seed: seed) else { return }
        let head = buffer.getSlice(at: buffer.readerIndex, length: length)!
        var fields = HeaderSummary()
        let (result, output) = parseResponse(head, flags, &fields)
        let (again, outputAgain) = parseResponse(head, flags, &reused)
        switch (result, again) {
        case (.failure(let error), .failure(let errorAgain)):
            require(error == errorAgain, "a reused scratch refuses the same way: \(error) vs \(errorAgain)")
            return
        case (.success(let parsed), .success(let parsedAgain)):
            require(
                same(parsed.head, parsedAgain.head) && parsed.rewritten == parsedAgain.rewritten
                    && parsed.closeClient == parsedAgain.closeClient && output == outputAgain,
                "a reused scratch parses the same"
            )
        default:
            require(false, "a reused scratch parses the same: \(result) vs \(again)")
        }
        guard case .success(let parsed) = result else { return }
        let response = parsed.head
        require((100...999).contains(response.status), "a status has three digits")
        if response.status == 101 {
            // Switching Protocols is relayed as it came (the client needs its Upgrade and Connection); the
            // proxy itself decides whether the switch is allowed, and then the connection is a tunnel.
            require(!parsed.rewritten && !parsed.closeClient && response.framing == .none, "101 is relayed as is")
            return
        }
        if response.framing == .untilClose {
            require(!response.keepAlive && parsed.closeClient, "a body until close closes both connections")
        }
        if isHeadRequest || response.status == 204 || response.status == 304 || (100..<200).contains(response.status) {
            require(response.framing == .none, "\(response.status) to HEAD=\(isHeadRequest) has no body")
        }
        if !clientKeepAlive && !response.isInterim { require(parsed.closeClient, "a closing client is closed") }
        if response.isInterim { require(!parsed.closeClient, "an interim response closes nothing") }
        require(parsed.rewritten || output.readableBytes == 0, "nothing is written unless rewritten")

        let forwarded = parsed.rewritten ? output : head
        require(
            HTTPHeadParser.headLength(in: forwarded) == forwarded.readableBytes,
            "the head for the client ends where it should"
        )
        var forwardedFields = HeaderSummary()
        let (reframed, reframedOutput) = parseResponse(forwarded, flags, &forwardedFields)
        switch reframed {
        case .success(let second):
            require(
                second.head.status == response.status && second.head.isHTTP11 == response.isHTTP11
                    && second.head.framing == response.framing && second.closeClient == parsed.closeClient,
                "the head for the client reads the same: \(parsed) vs \(second)"
            )
            require(
                !second.rewritten || reframedOutput == forwarded,
                "framing the client's head again changes nothing"
            )
            require(
                forwardedFields.connectionClose == parsed.closeClient,
                "the client sees Connection: close exactly when it is closed"
            )
            if !clientIsHTTP11 && !parsed.closeClient && !response.isInterim {
                require(forwardedFields.connectionKeepAlive, "an HTTP/1.0 client kept open is told so")
            }
            let named = nominatedNames(fields, head)
            require(
                names(forwardedFields, forwarded).allSatisfy { !named.contains($0) },
                "no header the Connection header named reaches the client"
            )
            let kinds = forwardedFields.lines.map(\.kind)
            require(
                !kinds.contains(.hopByHop) && forwardedFields.nominated.isEmpty
                    && kinds.filter { $0 == .connection }.count <= 1,
                "no hop-by-hop header but the proxy's own Connection reaches the client"
            )
        case .failure(.tooManyHeaders) where fields.lines.count + 1 > HTTPHeadParser.maxHeaders:
            break  // the added Connection header took it over the limit
        case .failure(.headTooLarge) where forwarded.readableBytes > HTTPHeadParser.maxHeadBytes:
            break
        case .failure(let error):
            require(false, "the head for the client parses, not \(error)")
        }
    }

    // MARK: Bodies

    enum BodyOutcome: Equatable {
        case refused(HTTPFramingError)
        case read(taken: Int, complete: Bool)
    }

    /// Feeds `bytes` to a fresh tracker in `pieces`, stopping when the body is complete.
    static func feed(
        _ framing: BodyFraming,
        _ bytes: UnsafeRawBufferPointer,
        _ pieces: some Sequence<Range<Int>>
    ) -> BodyOutcome {
        var tracker = BodyTracker(framing)
        var taken = 0
        for piece in pieces {
            if tracker.isComplete { break }
            let slice = UnsafeRawBufferPointer(rebasing: bytes[piece])
            do {
                let count = try tracker.consume(slice)
                require(count >= 0 && count <= slice.count, "a tracker takes at most what it is given")
                require(tracker.isComplete || count == slice.count, "an unfinished body takes everything")
                taken += count
            } catch {
                return .refused(error)
            }
        }
        return .read(taken: taken, complete: tracker.isComplete)
    }

    /// Where a body ends does not depend on how its bytes arrive, and the body it finds is minimal: its
    /// prefixes are unfinished, never refused.
    static func body(_ bytes: UnsafeRawBufferPointer, framing: BodyFraming, seed: UInt8) {
        let count = bytes.count
        let atOnce = feed(framing, bytes, count > 0 ? [0..<count] : [])
        let byteByByte = feed(framing, bytes, (0..<count).lazy.map { $0..<($0 + 1) })
        let inPieces = feed(framing, bytes, Pieces(count: count, seed: seed))
        require(atOnce == byteByByte, "byte by byte \(byteByByte) == at once \(atOnce)")
        require(atOnce == inPieces, "in pieces \(inPieces) == at once \(atOnce)")
        if case .contentLength(let length) = framing {
            require(atOnce == .read(taken: min(length, count), complete: length <= count), "Content-Length \(length)")
        } else {
            var data: [UInt8] = []
            var trailers: [UInt8] = []
            let reference = referenceChunked(bytes, data: &data, trailers: &trailers)
            require(atOnce == reference, "the scanner \(atOnce) reads chunks as the grammar does: \(reference)")
            if case .read(_, complete: true) = reference {
                // What the HTTP/2 bridge relays of the body: the chunks' data and the trailer lines, however
                // the bytes arrive.
                for pieces in [[0..<count], Array(Pieces(count: count, seed: seed))] {
                    let found = dechunk(bytes, pieces)
                    require(found.data == data, "the data the scanner reports is the chunks' data")
                    require(found.trailers == trailers, "the trailer bytes the scanner reports are the trailer lines")
                }
            }
        }
        guard case .read(let taken, let complete) = atOnce else { return }
        require(taken <= count, "a body is within its bytes")
        guard complete, taken > 0 else { return }
        let body = UnsafeRawBufferPointer(rebasing: bytes[0..<taken])
        require(feed(framing, body, [0..<taken]) == atOnce, "the body alone is the same body")
        let shorter = UnsafeRawBufferPointer(rebasing: bytes[0..<(taken - 1)])
        require(
            feed(framing, shorter, taken > 1 ? [0..<(taken - 1)] : []) == .read(taken: taken - 1, complete: false),
            "a body's prefix is unfinished, not refused"
        )
    }

    /// The chunks' data and the trailer lines `ChunkedBodyScanner.scan(_:found:)` reports, fed `pieces`.
    static func dechunk(
        _ bytes: UnsafeRawBufferPointer,
        _ pieces: [Range<Int>]
    ) -> (data: [UInt8], trailers: [UInt8]) {
        var scanner = ChunkedBodyScanner()
        var data: [UInt8] = []
        var trailers: [UInt8] = []
        for piece in pieces where !scanner.isComplete {
            let slice = UnsafeRawBufferPointer(rebasing: bytes[piece])
            let taken = try? scanner.scan(slice) { range, part in
                require(range.lowerBound >= 0 && range.upperBound <= slice.count, "a reported range is in its bytes")
                switch part {
                case .data: data += slice[range]
                case .trailers: trailers += slice[range]
                }
            }
            require(taken != nil, "a body the grammar reads whole is not refused in pieces")
        }
        return (data, trailers)
    }

    /// A chunked body read by the grammar the scanner means to follow (RFC 9112 §7.1, with whitespace
    /// allowed before an extension or the end of a size line), written independently of the scanner: over
    /// the whole input, by index.
    static func referenceChunked(_ bytes: UnsafeRawBufferPointer) -> BodyOutcome {
        var data: [UInt8] = []
        var trailers: [UInt8] = []
        return referenceChunked(bytes, data: &data, trailers: &trailers)
    }

    /// As above, collecting the chunks' data and the trailer lines (each with its CRLF).
    static func referenceChunked(
        _ bytes: UnsafeRawBufferPointer,
        data: inout [UInt8],
        trailers: inout [UInt8]
    ) -> BodyOutcome {
        let count = bytes.count
        let unfinished = BodyOutcome.read(taken: count, complete: false)
        var index = 0
        /// Reads to the CR of a line whose bytes must pass `valid`, then its LF: nil when the line is fine.
        func lineEnd(_ valid: (UInt8) -> Bool) -> BodyOutcome? {
            while index < count, bytes[index] != 13 {
                guard valid(bytes[index]) else { return .refused(.invalidChunk) }
                index += 1
            }
            guard index + 1 < count else { return unfinished }
            guard bytes[index + 1] == 10 else { return .refused(.invalidChunk) }
            index += 2
            return nil
        }
        while true {
            var size: UInt64 = 0
            let digitsStart = index
            while index < count, let digit = hexDigit(bytes[index]) {
                guard index - digitsStart < 15 else { return .refused(.invalidChunk) }
                size = size * 16 + UInt64(digit)
                index += 1
            }
            guard index < count else { return unfinished }
            guard index > digitsStart else { return .refused(.invalidChunk) }
            while index < count, bytes[index] == 32 || bytes[index] == 9 { index += 1 }
            guard index < count else { return unfinished }
            if bytes[index] == 59 {
                if let outcome = lineEnd(HTTPHeadParser.isFieldValueByte) { return outcome }
            } else if let outcome = lineEnd({ _ in false }) {
                return outcome
            }
            if size == 0 { break }
            guard UInt64(count - index) >= size else { return unfinished }
            data += bytes[index..<(index + Int(size))]
            index += Int(size)
            if let outcome = lineEnd({ _ in false }) { return outcome }
        }
        // Trailer lines, then the blank line.
        while true {
            guard index < count else { return unfinished }
            if bytes[index] == 13 {
                guard index + 1 < count else { return unfinished }
                return bytes[index + 1] == 10 ? .read(taken: index + 2, complete: true) : .refused(.invalidChunk)
            }
            guard HTTPHeadParser.isTokenCharacter(bytes[index]) else { return .refused(.invalidChunk) }
            let lineStart = index
            if let outcome = lineEnd(HTTPHeadParser.isFieldValueByte) { return outcome }
            trailers += bytes[lineStart..<index]
        }
    }

    static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    // MARK: Connections

    /// A request as a parser saw it: its target and its body's length.
    struct Request: CustomStringConvertible {
        var target: String
        var body: Int?
        var description: String { "\(target) \(body.map(String.init) ?? "chunked")" }
    }

    /// A connection's requests read the same whether the bytes arrive at once, byte by byte or in pieces.
    static func connection(_ bytes: UnsafeRawBufferPointer, seed: UInt8) {
        let count = bytes.count
        var atOnce = InboundModel()
        if count > 0 { atOnce.receive(bytes) }
        var byteByByte = InboundModel()
        for index in 0..<count { byteByByte.receive(UnsafeRawBufferPointer(rebasing: bytes[index..<(index + 1)])) }
        var inPieces = InboundModel()
        for piece in Pieces(count: count, seed: seed) {
            inPieces.receive(UnsafeRawBufferPointer(rebasing: bytes[piece]))
        }
        let expected = atOnce.finish()
        require(byteByByte.finish() == expected, "byte by byte reads the same requests as at once")
        require(inPieces.finish() == expected, "in pieces reads the same requests as at once")
        require(atOnce.consumed + atOnce.inbound.readableBytes == count, "every byte is accounted for")

        // No smuggling: a parser upstream reads the forwarded bytes as the same requests with the same
        // bodies. It may refuse something the proxy let through (then the requests before agree), but it
        // never sees another request or another body length.
        let ours = atOnce.completeRequests
        let (theirs, failed) = llhttpRequests(in: atOnce.forwarded)
        let agree =
            theirs.count <= ours.count
            && zip(theirs, ours).allSatisfy { $0.target == $1.target && ($1.body == nil || $0.body == $1.body) }
        require(
            agree && (failed || theirs.count == ours.count),
            "llhttp reads the forwarded requests as the proxy does\(failed ? ", up to its error" : ""): "
                + "\(theirs) vs \(ours)"
        )
    }
}

extension FramingFuzz {
    /// An upstream's response (interim heads, then the final head and its body) reads the same whether the
    /// bytes arrive at once, byte by byte or in pieces.
    static func upstream(_ bytes: UnsafeRawBufferPointer, isHeadRequest: Bool, clientIsHTTP11: Bool, seed: UInt8) {
        let count = bytes.count
        let model = { UpstreamModel(isHeadRequest: isHeadRequest, clientIsHTTP11: clientIsHTTP11) }
        var atOnce = model()
        if count > 0 { atOnce.receive(bytes) }
        var byteByByte = model()
        for index in 0..<count { byteByByte.receive(UnsafeRawBufferPointer(rebasing: bytes[index..<(index + 1)])) }
        var inPieces = model()
        for piece in Pieces(count: count, seed: seed) {
            inPieces.receive(UnsafeRawBufferPointer(rebasing: bytes[piece]))
        }
        let expected = atOnce.finish()
        require(byteByByte.finish() == expected, "byte by byte reads the same response as at once")
        require(inPieces.finish() == expected, "in pieces reads the same response as at once")
    }
}

/// What UpstreamConnection does with an upstream's bytes during one exchange: gather the head (resuming the
/// scan where the last one stopped), frame it for the client, skip interim heads, follow the body.
struct UpstreamModel {
    enum Event: Equatable {
        case head(status: Int, framing: BodyFraming, closeClient: Bool, bytes: [UInt8])
        case body(length: Int)
        case refused(HTTPFramingError)
        case waitingForHead(buffered: Int)
        case inBody(taken: Int)
    }

    let isHeadRequest: Bool
    let clientIsHTTP11: Bool
    var head: ByteBuffer?
    var scanFrom = 0
    var body: BodyTracker?
    var bodyTaken = 0
    var events: [Event] = []
    var ended = false
    var fields = HeaderSummary()

    init(isHeadRequest: Bool, clientIsHTTP11: Bool) {
        self.isHeadRequest = isHeadRequest
        self.clientIsHTTP11 = clientIsHTTP11
    }

    mutating func receive(_ bytes: UnsafeRawBufferPointer) {
        guard !ended else { return }
        var buffer = ByteBuffer(bytes: bytes)
        do {
            try process(&buffer)
        } catch {
            events.append(.refused(error))
            ended = true
        }
    }

    private mutating func process(_ buffer: inout ByteBuffer) throws(HTTPFramingError) {
        while buffer.readableBytes > 0, !ended {
            if var tracker = body {
                let taken = try buffer.withUnsafeReadableBytes { bytes throws(HTTPFramingError) in
                    try tracker.consume(bytes)
                }
                body = tracker
                buffer.moveReaderIndex(forwardBy: taken)
                bodyTaken += taken
                if tracker.isComplete {
                    events.append(.body(length: bodyTaken))
                    ended = true
                    return
                }
                continue
            }
            if head == nil {
                head = buffer
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            } else {
                head?.writeBuffer(&buffer)
            }
            guard var pending = head else { return }
            guard let length = HTTPHeadParser.headLength(in: pending, scanFrom: scanFrom) else {
                if pending.readableBytes > HTTPHeadParser.maxHeadBytes { throw .headTooLarge }
                scanFrom = max(0, pending.readableBytes - 3)
                return
            }
            let headBytes = pending.readSlice(length: length)!
            buffer = pending
            head = nil
            scanFrom = 0
            var rewritten = ByteBuffer()
            let (response, didRewrite, closeClient) = try HTTPHeadParser.parseResponse(
                headBytes,
                isHeadRequest: isHeadRequest,
                clientKeepAlive: true,
                clientIsHTTP11: clientIsHTTP11,
                into: &rewritten,
                scratch: &fields
            )
            let forwarded = didRewrite ? rewritten : headBytes
            events.append(
                .head(
                    status: response.status,
                    framing: response.framing,
                    closeClient: closeClient,
                    bytes: forwarded.getBytes(at: forwarded.readerIndex, length: forwarded.readableBytes)!
                )
            )
            if response.isInterim { continue }
            let tracker = BodyTracker(response.framing)
            if tracker.isComplete {
                events.append(.body(length: 0))
                ended = true
                return
            }
            body = tracker
            bodyTaken = 0
        }
    }

    /// The events, and what the exchange was waiting for when the bytes ran out.
    mutating func finish() -> [Event] {
        if !ended {
            events.append(body == nil ? .waitingForHead(buffered: head?.readableBytes ?? 0) : .inBody(taken: bodyTaken))
        }
        return events
    }
}

/// What HTTPProxyHandler does with a client's bytes, without the upstream: skip empty lines, find the head
/// (resuming the scan where the last one stopped), parse it, follow its body, repeat.
struct InboundModel {
    enum Event: Equatable {
        case head(length: Int, method: RequestHead.Method, framing: BodyFraming)
        case body(length: Int)
        case refused(status: Int)
        case waitingForHead(buffered: Int)
        case inBody(taken: Int)
    }

    var inbound = ByteBuffer()
    var scanFrom = 0
    var body: BodyTracker?
    var bodyTaken = 0
    var events: [Event] = []
    var closed = false
    var consumed = 0
    var fields = HeaderSummary()
    /// What the proxy sends upstream: each forwarded head and the body bytes after it.
    var forwarded = ByteBuffer()

    mutating func receive(_ bytes: UnsafeRawBufferPointer) {
        guard !closed else { return }
        inbound.writeBytes(bytes)
        process()
    }

    /// The target of each forwarded request, in order.
    var targets: [String] = []

    /// Each complete request: its target, and its body's length unless chunked (llhttp counts a chunked
    /// body's data, the proxy its bytes).
    var completeRequests: [FramingFuzz.Request] {
        var requests: [FramingFuzz.Request] = []
        var framing = BodyFraming.none
        for event in events {
            switch event {
            case .head(_, _, let headFraming): framing = headFraming
            case .body(let length):
                requests.append(.init(target: targets[requests.count], body: framing == .chunked ? nil : length))
            default: break
            }
        }
        return requests
    }

    private mutating func process() {
        while !closed {
            if var tracker = body {
                let taken: Int
                do {
                    taken = try inbound.withUnsafeReadableBytes { bytes throws(HTTPFramingError) in
                        try tracker.consume(bytes)
                    }
                } catch {
                    refuse(error.status)
                    return
                }
                var bodyBytes = inbound.readSlice(length: taken)!
                forwarded.writeBuffer(&bodyBytes)
                consumed += taken
                bodyTaken += taken
                guard tracker.isComplete else {
                    body = tracker
                    return
                }
                events.append(.body(length: bodyTaken))
                body = nil
                bodyTaken = 0
                continue
            }
            guard inbound.readableBytes > 0 else { return }
            while inbound.readableBytes >= 2, inbound.getInteger(at: inbound.readerIndex, as: UInt16.self) == 0x0D0A {
                inbound.moveReaderIndex(forwardBy: 2)
                consumed += 2
                scanFrom = 0
            }
            guard let length = HTTPHeadParser.headLength(in: inbound, scanFrom: scanFrom) else {
                if inbound.readableBytes > HTTPHeadParser.maxHeadBytes {
                    refuse(431)
                } else {
                    scanFrom = max(0, inbound.readableBytes - 3)
                }
                return
            }
            let head = inbound.readSlice(length: length)!
            consumed += length
            scanFrom = 0
            var (result, output) = FramingFuzz.parseRequest(head, FramingFuzz.forwardingIPv4, &fields)
            switch result {
            case .success(let request) where request.method == .connect:
                refuse(405)
            case .success(let request):
                let requestLine = head.getString(at: head.readerIndex, length: head.readableBytes)!
                targets.append(String(requestLine.split(separator: " ", maxSplits: 2)[1]))
                forwarded.writeBuffer(&output)
                events.append(.head(length: length, method: request.method, framing: request.framing))
                body = BodyTracker(request.framing)
                bodyTaken = 0
            case .failure(let error):
                refuse(error.status)
            }
        }
    }

    private mutating func refuse(_ status: Int) {
        events.append(.refused(status: status))
        closed = true
    }

    /// The events, and what the connection was waiting for when the bytes ran out.
    mutating func finish() -> [Event] {
        if !closed {
            events.append(body == nil ? .waitingForHead(buffered: inbound.readableBytes) : .inBody(taken: bodyTaken))
        }
        return events
    }
}

/// Splits `0..<count` into consecutive pieces whose sizes a small generator picks from the seed: all sizes
/// up to 1, 2, 3, 7, 16, 64, 512 or 4096 bytes.
struct Pieces: Sequence, IteratorProtocol {
    static let limits = [1, 2, 3, 7, 16, 64, 512, 4096]
    let count: Int
    let limit: Int
    var state: UInt64
    var offset = 0

    init(count: Int, seed: UInt8) {
        self.count = count
        limit = Self.limits[Int(seed) % Self.limits.count]
        state = (UInt64(seed) &+ 1) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(count)
        if state == 0 { state = 1 }
    }

    mutating func next() -> Range<Int>? {
        guard offset < count else { return nil }
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        let size = 1 + Int(state % UInt64(limit))
        let end = Swift.min(count, offset + size)
        defer { offset = end }
        return offset..<end
    }
}
