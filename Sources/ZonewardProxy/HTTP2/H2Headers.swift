import NIOCore
import NIOHPACK

/// The pure parts of relaying HTTP/2 header blocks: which fields are connection-specific, the forwarding
/// fields the proxy sets, and what gRPC says in them (`grpc-timeout`, `grpc-status`).
enum H2Headers {
    /// Fields that describe one hop's connection (RFC 9113 §8.2.2): never forwarded.
    static let connectionSpecific: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "http2-settings",
    ]

    /// What relaying does with a field, by its name.
    enum Field: Equatable {
        case pseudo, regular, connectionSpecific, te, xForwardedFor, xForwardedProto, forwarded, grpcTimeout
        case contentType
    }

    /// The field `name` is, told by its length and then its bytes, ASCII case-insensitively: no lowercased
    /// copy and no hashing. (The `Set` lookup of a lowercased copy per field cost about 3,000 of 342,000
    /// instructions per proxied stream in `PROTO=h2 bench/callgrind-proxy.sh`; comparing through
    /// `String.UTF8View` instead of the contiguous bytes, about 300 instructions a field, 2,400 a bridged
    /// stream in `PROTO=h2h1`.)
    static func field(_ name: String) -> Field {
        utf8Bytes(of: name, field)
    }

    @inline(__always)
    static func field(_ name: UnsafeBufferPointer<UInt8>) -> Field {
        guard let first = name.first else { return .regular }
        if first == UInt8(ascii: ":") { return .pseudo }
        switch name.count {
        case 2: return equalsLowercase(name, "te") ? .te : .regular
        case 7: return equalsLowercase(name, "upgrade") ? .connectionSpecific : .regular
        case 9: return equalsLowercase(name, "forwarded") ? .forwarded : .regular
        case 10:
            return equalsLowercase(name, "connection") || equalsLowercase(name, "keep-alive")
                ? .connectionSpecific : .regular
        case 12:
            if equalsLowercase(name, "grpc-timeout") { return .grpcTimeout }
            return equalsLowercase(name, "content-type") ? .contentType : .regular
        case 14: return equalsLowercase(name, "http2-settings") ? .connectionSpecific : .regular
        case 15: return equalsLowercase(name, "x-forwarded-for") ? .xForwardedFor : .regular
        case 16: return equalsLowercase(name, "proxy-connection") ? .connectionSpecific : .regular
        case 17:
            if equalsLowercase(name, "transfer-encoding") { return .connectionSpecific }
            return equalsLowercase(name, "x-forwarded-proto") ? .xForwardedProto : .regular
        default: return .regular
        }
    }

    /// Whether `text` equals `lowercase` (ASCII, lowercase, as long as `text`), ignoring ASCII case in
    /// `text`.
    @inline(__always)
    static func equalsLowercase(_ text: UnsafeBufferPointer<UInt8>, _ lowercase: StaticString) -> Bool {
        guard text.count == lowercase.utf8CodeUnitCount else { return false }
        let expected = lowercase.utf8Start
        for index in 0..<text.count {
            let byte = text[index]
            let folded = byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte
            guard folded == expected[index] else { return false }
        }
        return true
    }

    /// A field name read from HTTP/1.1 bytes (a token: ASCII), lowercased, as HTTP/2 sends it: a constant
    /// for the fields HTTP/1.1 endpoints send most (no new string), else a new string. (`String.lowercased()`
    /// on every field of a bridged response cost about 1,800 instructions a stream in `PROTO=h2h1
    /// bench/callgrind-proxy.sh`.)
    static func lowercaseName(_ bytes: UnsafeRawBufferPointer) -> String {
        let name = bytes.assumingMemoryBound(to: UInt8.self)
        if let index = commonNames.firstIndex(where: { equalsLowercase(name, $0.bytes) }) {
            return commonNames[index].name
        }
        return String(unsafeUninitializedCapacity: name.count) { out in
            for index in 0..<name.count {
                let byte = name[index]
                out[index] = byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte
            }
            return name.count
        }
    }

    /// Each twice: to compare with, and the string literal to hand out (immortal: no allocation, no
    /// reference counting).
    private static let commonNames: [(bytes: StaticString, name: String)] = [
        ("date", "date"), ("vary", "vary"), ("etag", "etag"), ("server", "server"), ("expires", "expires"),
        ("location", "location"), ("set-cookie", "set-cookie"), ("content-type", "content-type"),
        ("cache-control", "cache-control"), ("last-modified", "last-modified"), ("accept-ranges", "accept-ranges"),
        ("content-length", "content-length"), ("content-encoding", "content-encoding"),
    ]

    /// The forwarding fields for a client, fixed for its connection: `x-forwarded-for` and `forwarded` as
    /// added for this client (its own hop), and `x-forwarded-proto`.
    struct Forwarding {
        let clientAddress: String
        let scheme: String
        let trusted: Bool
        /// `for=<address>;proto=<scheme>`, the address quoted and bracketed when IPv6 (RFC 7239 §6).
        let forwardedElement: String

        init(clientAddress: String, scheme: String, trusted: Bool) {
            self.clientAddress = clientAddress
            self.scheme = scheme
            self.trusted = trusted
            let isIPv6 = clientAddress.utf8.contains(UInt8(ascii: ":"))
            let node = isIPv6 ? "\"[\(clientAddress)]\"" : clientAddress
            self.forwardedElement = "for=\(node);proto=\(scheme)"
        }
    }

    /// The request's fields as sent upstream: connection-specific ones dropped (`te` kept only as
    /// `trailers`), and the forwarding fields set as the HTTP/1.1 path sets them: `x-forwarded-for` and
    /// `forwarded` extended for a peer `trusted` by `forwardedFor` and replaced for anyone else, and
    /// `x-forwarded-proto` the scheme the client used.
    ///
    /// Many clients share one upstream connection, and so its HPACK table: what a client chose is sent
    /// without indexing (`upstreamIndexing`); `grpc-timeout` is re-written in canonical form, or dropped when
    /// malformed. Names arrive lowercase (`isValidFromClient` refuses others; the HTTP/1.1 bridge lowercases
    /// them) and are relayed as they are.
    static func requestForUpstream(
        _ headers: HPACKHeaders,
        clientAddress: String,
        scheme: String,
        trusted: Bool
    )
        -> HPACKHeaders
    {
        var facts = RequestFacts()
        return requestForUpstream(
            headers,
            forwarding: Forwarding(clientAddress: clientAddress, scheme: scheme, trusted: trusted),
            facts: &facts
        )
    }

    /// What the relay needs to know of a request head, read in the pass that builds its upstream block
    /// (`requestForUpstream(_:forwarding:facts:)`): looking each up with `HPACKHeaders.first(name:)` cost
    /// about 1,500 instructions a stream in `PROTO=h2 bench/callgrind-proxy.sh`.
    struct RequestFacts: Equatable {
        /// The first `content-type` is gRPC's (`isGRPCContentType`).
        var isGRPC = false
        /// `:method` is `HEAD`.
        var isHead = false
        /// The first well-formed `grpc-timeout`.
        var grpcTimeout: TimeAmount?
        fileprivate var contentTypeSeen = false

        /// Takes what a field tells of the request: the first `content-type`'s, and a `:method` of HEAD.
        fileprivate mutating func note(_ kind: Field, _ name: String, _ value: String) {
            switch kind {
            case .contentType where !contentTypeSeen:
                contentTypeSeen = true
                isGRPC = isGRPCContentType(value)
            case .pseudo where value == "HEAD" && name == ":method":
                isHead = true
            default:
                break
            }
        }
    }

    /// As `requestForUpstream(_:clientAddress:scheme:trusted:)`, and what `facts` holds of the request.
    static func requestForUpstream(
        _ headers: HPACKHeaders,
        forwarding: Forwarding,
        facts: inout RequestFacts
    ) -> HPACKHeaders {
        guard var out = relayedAsSent(headers, facts: &facts) else {
            facts = RequestFacts()
            return requestRebuilt(headers, forwarding: forwarding, facts: &facts)
        }
        out.reserveCapacity(out.count + 3)
        out.add(name: "x-forwarded-for", value: forwarding.clientAddress, indexing: .indexable)
        out.add(name: "x-forwarded-proto", value: forwarding.scheme, indexing: .indexable)
        out.add(name: "forwarded", value: forwarding.forwardedElement, indexing: .indexable)
        return out
    }

    /// The client's block itself, when every field of it goes upstream as the client sent it, encoded as
    /// the client encoded it (a client's usual request: its pseudo-header fields, user agent, gRPC's
    /// `content-type` and `te`); nil when one is dropped, rewritten or encoded otherwise
    /// (`requestRebuilt` then builds the block). The proxy's own fields are appended to it. (Each field
    /// added to a new block costs `HPACKHeaders.add`'s check of its name for non-ASCII bytes through
    /// `String.UTF8View`, about 340 instructions a field, 1,700 a request in `PROTO=h2
    /// bench/callgrind-proxy.sh`; the names are tokens already, `isValidFromClient`.)
    private static func relayedAsSent(_ headers: HPACKHeaders, facts: inout RequestFacts) -> HPACKHeaders? {
        for (name, value, indexing) in headers {
            let kind = field(name)
            facts.note(kind, name, value)
            switch kind {
            case .connectionSpecific, .xForwardedProto, .xForwardedFor, .forwarded, .grpcTimeout:
                return nil
            case .te:
                guard value == "trailers", indexing != .nonIndexable else { return nil }
                continue
            case .contentType, .pseudo, .regular:
                break
            }
            guard upstreamIndexing(name, value, client: indexing) == indexing else { return nil }
        }
        return headers
    }

    /// `requestForUpstream(_:forwarding:facts:)`'s block built field by field: what any request gets, and
    /// what `relayedAsSent` stands for when it applies (a unit test holds the two equal).
    static func requestRebuilt(
        _ headers: HPACKHeaders,
        forwarding: Forwarding,
        facts: inout RequestFacts
    ) -> HPACKHeaders {
        var out = HPACKHeaders()
        out.reserveCapacity(headers.count + 3)
        var forwardedFor: [String] = []
        var forwarded: [String] = []
        for (name, value, indexing) in headers {
            let kind = field(name)
            facts.note(kind, name, value)
            switch kind {
            case .connectionSpecific, .xForwardedProto:
                continue
            case .te:
                if value.lowercased() == "trailers" {
                    out.add(
                        name: "te",
                        value: "trailers",
                        indexing: indexing == .neverIndexed ? .neverIndexed : .indexable
                    )
                }
            case .xForwardedFor:
                if forwarding.trusted { forwardedFor.append(value) }
            case .forwarded:
                if forwarding.trusted { forwarded.append(value) }
            case .grpcTimeout:
                if let timeout = grpcTimeout(value) {
                    if facts.grpcTimeout == nil { facts.grpcTimeout = timeout }
                    out.add(name: "grpc-timeout", value: formatGrpcTimeout(timeout), indexing: .nonIndexable)
                }
            case .contentType, .pseudo, .regular:
                out.add(name: name, value: value, indexing: upstreamIndexing(name, value, client: indexing))
            }
        }
        // The proxy's own values are indexed: after a client's first request each is one byte upstream.
        if forwardedFor.isEmpty {
            out.add(name: "x-forwarded-for", value: forwarding.clientAddress, indexing: .indexable)
        } else {
            forwardedFor.append(forwarding.clientAddress)
            out.add(name: "x-forwarded-for", value: forwardedFor.joined(separator: ", "), indexing: .nonIndexable)
        }
        out.add(name: "x-forwarded-proto", value: forwarding.scheme, indexing: .indexable)
        if forwarded.isEmpty {
            out.add(name: "forwarded", value: forwarding.forwardedElement, indexing: .indexable)
        } else {
            forwarded.append(forwarding.forwardedElement)
            out.add(name: "forwarded", value: forwarded.joined(separator: ", "), indexing: .nonIndexable)
        }
        return out
    }

    /// How a client's field is encoded upstream. A value a client chose is not indexed: an endpoint whose
    /// decoder refuses a value without entering it in its table (grpc-core does, for a bad `grpc-timeout`)
    /// would fall out of step with the proxy's encoder and misread every later request on the connection,
    /// other clients' too. Indexed are the values that match an entry of RFC 7541's static table whole
    /// (`:method: GET`, `:scheme: http`, …: one byte, and the dynamic table is left as it is), gRPC's fixed
    /// `content-type`, and a client's `:authority`, `:path` and `user-agent` when the client indexed them:
    /// no endpoint's decoder checks those, and they repeat from request to request. A field the client
    /// marked never-indexed stays so. (Sent without indexing, each value is Huffman-coded afresh: with the
    /// forwarding fields, about 1,700 instructions per field, 8 fields of a typical request, in `PROTO=h2
    /// bench/callgrind-proxy.sh`; indexing the authority and user agent took 146,870 to 141,343 instructions
    /// per stream.)
    @inline(__always)
    static func upstreamIndexing(_ name: String, _ value: String, client: HPACKIndexing) -> HPACKIndexing {
        if client == .neverIndexed { return .neverIndexed }
        // By length first: unequal Swift strings compare slowly, and most names match none of these.
        let fixed: Bool
        switch name.utf8.count {
        case 5:
            // A path: an opaque string to every decoder (grpc-core's too); a gRPC method's repeats on every
            // call. Indexed when the client indexed it, whatever its value.
            fixed = name == ":path" && (client == .indexable || value == "/" || value == "/index.html")
        case 7:
            fixed =
                (name == ":method" && (value == "GET" || value == "POST"))
                || (name == ":scheme" && (value == "http" || value == "https"))
        case 10:
            // A client's authority and user agent: the same on every request of a client, and opaque strings
            // to every decoder (grpc-core's too). Indexed when the client indexed them.
            fixed = client == .indexable && (name == ":authority" || name == "user-agent")
        case 12: fixed = name == "content-type" && value == "application/grpc"
        case 15: fixed = name == "accept-encoding" && value == "gzip, deflate"
        default: fixed = false
        }
        return fixed ? .indexable : .nonIndexable
    }

    /// A client's trailers as sent upstream: connection-specific fields dropped, and indexed as
    /// `upstreamIndexing` says (not as the client's encoder chose: the upstream HPACK table is shared).
    static func trailersForUpstream(_ headers: HPACKHeaders) -> HPACKHeaders {
        var out = HPACKHeaders()
        out.reserveCapacity(headers.count)
        for (name, value, indexing) in headers where field(name) != .connectionSpecific {
            out.add(name: name, value: value, indexing: upstreamIndexing(name, value, client: indexing))
        }
        return out
    }

    /// A response header block (or trailers) as sent to the client: connection-specific fields dropped.
    static func responseForClient(_ headers: HPACKHeaders) -> HPACKHeaders {
        guard headers.contains(where: { field($0.name) == .connectionSpecific }) else { return headers }
        var out = HPACKHeaders()
        for (name, value, indexing) in headers where field(name) != .connectionSpecific {
            out.add(name: name, value: value, indexing: indexing)
        }
        return out
    }

    /// Whether a header block an endpoint sent may be relayed (RFC 9113 §8.2, §8.3): names are lowercase
    /// tokens; values hold no NUL, CR or LF and no leading or trailing space or tab; pseudo-header fields
    /// come first, and only `:status`, once, in a response head (`trailers: false`), none in trailers; that
    /// status is three digits, not 101, and a 1xx head does not end the stream (`endStream`).
    ///
    /// Upstream connections run NIOHTTP2 without its header-block validation: requests sent there were
    /// validated when the client's NIOHTTP2 received them, and this one pass stands for NIOHTTP2's on
    /// responses, so each block is checked once instead of twice (NIOHTTP2's validation, per block sent and
    /// received, cost about 38,000 of 342,000 instructions per proxied stream).
    static func isValidFromUpstream(_ headers: HPACKHeaders, trailers: Bool, endStream: Bool = false) -> Bool {
        var facts = ResponseFacts()
        return isValidFromUpstream(headers, trailers: trailers, endStream: endStream, facts: &facts)
    }

    /// What the relay needs to know of an endpoint's header block, read in the pass that validates it
    /// (`isValidFromUpstream(_:trailers:endStream:facts:)`): reading `:status` again, and scanning the block
    /// again for fields to drop, cost about 1,200 instructions a stream in `PROTO=h2 bench/callgrind-proxy.sh`.
    struct ResponseFacts: Equatable {
        /// A head's `content-length` (plain digits, every copy the same, else the block is malformed).
        var contentLength: Int?
        /// A head's `:status`; nil for trailers.
        var status: Int?
        /// The block holds connection-specific fields, which `responseForClient` drops.
        var hasConnectionSpecific = false
    }

    /// As `isValidFromUpstream(_:trailers:endStream:)`, and what `facts` holds of the block.
    static func isValidFromUpstream(
        _ headers: HPACKHeaders,
        trailers: Bool,
        endStream: Bool = false,
        facts: inout ResponseFacts
    ) -> Bool {
        var regularSeen = false
        var statusSeen = false
        for (name, value, _) in headers {
            var isLength = false
            let valid = utf8Bytes(of: name) { name -> Bool in
                guard let first = name.first else { return false }
                if first == UInt8(ascii: ":") {
                    guard !trailers, !regularSeen, !statusSeen, equals(name, ":status") else { return false }
                    statusSeen = true
                    return true
                }
                regularSeen = true
                for byte in name where !HTTPTokens.isLowercaseTokenCharacter(byte) { return false }
                isLength = !trailers && name.count == 14 && equals(name, "content-length")
                if !isLength, field(name) == .connectionSpecific { facts.hasConnectionSpecific = true }
                return true
            }
            guard valid, utf8Bytes(of: value, isValidValue) else { return false }
            if isLength, !declare(value, into: &facts.contentLength) { return false }
        }
        guard !trailers else { return true }
        // A head's `:status` is three digits, 100–599 (not 101: no upgrade in HTTP/2, RFC 9113 §8.6), and an
        // informational one never ends the stream (§8.1).
        guard statusSeen, let status = status(headers), status != 101 else { return false }
        facts.status = status
        return status >= 200 || !endStream
    }

    /// Whether a header block a client sent may be relayed: what NIOHTTP2's request validation checks
    /// (RFC 9113 §8.2, §8.3.1), in one pass over contiguous UTF-8. Names are lowercase tokens, and none is
    /// `connection`, `keep-alive`, `proxy-connection`, `transfer-encoding` or `upgrade`; values hold no NUL,
    /// CR or LF; `te` is only `trailers`. A request head (`trailers: false`) starts with its pseudo-header
    /// fields, each once and each value free of controls, space and DEL: `:method`, `:scheme` and a non-empty
    /// `:path`, `:authority` optional; a CONNECT has `:method` and `:authority` only (no extended CONNECT:
    /// the proxy does not offer it). Trailers have no pseudo-header field. A head's `content-length` is plain
    /// digits, every copy the same (`contentLength` takes it).
    ///
    /// Client connections run NIOHTTP2 without its header-block validation, which checked each request it
    /// received and, again, each response the proxy sent, though those were checked already when their
    /// endpoint's block arrived (`isValidFromUpstream`) or built here: about 20,000 of 218,000 instructions
    /// per proxied stream in `PROTO=h2 bench/callgrind-proxy.sh`. A unit test holds this check to
    /// NIOHTTP2's on thousands of generated blocks.
    static func isValidFromClient(_ headers: HPACKHeaders, trailers: Bool) -> Bool {
        var declared: Int?
        return isValidFromClient(headers, trailers: trailers, contentLength: &declared)
    }

    /// As `isValidFromClient(_:trailers:)`, and a request head's `content-length` (plain digits, every copy
    /// the same, else the block is malformed) into `contentLength`.
    static func isValidFromClient(_ headers: HPACKHeaders, trailers: Bool, contentLength: inout Int?) -> Bool {
        var regularSeen = false
        // Bits of the pseudo-header fields seen: :path 1, :method 2, :scheme 4, :authority 8.
        var seen: UInt8 = 0
        var isConnect = false
        for (name, value, _) in headers {
            var isLength = false
            let valid = utf8Bytes(of: name) { name -> Bool in
                guard let first = name.first else { return false }
                if first == UInt8(ascii: ":") {
                    guard !trailers, !regularSeen else { return false }
                    let bit: UInt8
                    switch name.count {
                    case 5 where equals(name, ":path"): bit = 1
                    case 7 where equals(name, ":method"): bit = 2
                    case 7 where equals(name, ":scheme"): bit = 4
                    case 10 where equals(name, ":authority"): bit = 8
                    default: return false
                    }
                    guard seen & bit == 0 else { return false }
                    seen |= bit
                    let clean = utf8Bytes(of: value) { value in !value.contains { $0 <= 0x20 || $0 == 0x7F } }
                    guard clean else { return false }
                    if bit == 1 && value.isEmpty { return false }
                    if bit == 2 { isConnect = value == "CONNECT" }
                    return true
                }
                regularSeen = true
                for byte in name where !HTTPTokens.isLowercaseTokenCharacter(byte) { return false }
                isLength = !trailers && name.count == 14 && equals(name, "content-length")
                return true
            }
            guard valid else { return false }
            if name.utf8.first == UInt8(ascii: ":") { continue }
            switch field(name) {
            case .connectionSpecific where name != "http2-settings": return false
            case .te where !trailers && value != "trailers": return false
            default: break
            }
            guard utf8Bytes(of: value, { !$0.contains { $0 <= 0x0D && ($0 == 0 || $0 == 0x0A || $0 == 0x0D) } }) else {
                return false
            }
            if isLength, !declare(value, into: &contentLength) { return false }
        }
        guard !trailers else { return true }
        // CONNECT: :method and :authority, nothing else; any other method: :method, :scheme and :path.
        return isConnect ? seen == 2 | 8 : seen & 7 == 7
    }

    /// Takes a `content-length` value into `declared`: 1 to 18 ASCII digits (RFC 9110 §8.6), and the same as
    /// any copy before it. False otherwise: stricter than NIOHTTP2, which also takes `+5` and `5, 5`, since a
    /// length the proxy and its endpoint could read differently is how requests are smuggled.
    private static func declare(_ value: String, into declared: inout Int?) -> Bool {
        let parsed = utf8Bytes(of: value) { bytes -> Int? in
            guard (1...18).contains(bytes.count) else { return nil }
            var length = 0
            for byte in bytes {
                let digit = byte &- UInt8(ascii: "0")
                guard digit < 10 else { return nil }
                length = length * 10 + Int(digit)
            }
            return length
        }
        guard let parsed, declared == nil || declared == parsed else { return false }
        declared = parsed
        return true
    }

    /// A message's DATA adds up to the `content-length` it declared, when it declared one (RFC 9113 §8.1.1).
    /// The proxy's connections run NIOHTTP2 without its own check (`contentLengthValidation`), which read the
    /// field out of every header block again, sent and received: about 5,900 of 159,000 instructions per
    /// proxied stream in `PROTO=h2 bench/callgrind-proxy.sh`. The field is read in the pass that validates
    /// the block (`isValidFromClient`, `isValidFromUpstream`), and each stream counts its DATA here.
    struct DeclaredLength {
        /// DATA bytes still to come; nil when no length was declared.
        private(set) var remaining: Int?

        init(_ declared: Int?) { remaining = declared }

        /// Counts a DATA frame's bytes: false when they go past the declared length.
        mutating func take(_ bytes: Int) -> Bool {
            guard let left = remaining else { return true }
            guard bytes <= left else { return false }
            remaining = left - bytes
            return true
        }

        /// Whether the message may end here: all the length it declared came.
        var mayEnd: Bool { remaining == nil || remaining == 0 }
    }

    /// A field value holds no NUL, CR or LF and starts and ends with no space or tab (RFC 9113 §8.2.1).
    @inline(__always)
    private static func isValidValue(_ value: UnsafeBufferPointer<UInt8>) -> Bool {
        if let first = value.first, first == 0x20 || first == 0x09 { return false }
        if let last = value.last, last == 0x20 || last == 0x09 { return false }
        // Most bytes are above CR: one comparison each.
        for byte in value where byte <= 0x0D && (byte == 0 || byte == 0x0A || byte == 0x0D) { return false }
        return true
    }

    /// Whether `bytes` are the literal's, byte for byte: a loop over two buffers, where comparing with the
    /// literal's `String.UTF8View` (`elementsEqual`) cost about 350 instructions a name, 2,000 a stream.
    @inline(__always)
    private static func equals(_ bytes: UnsafeBufferPointer<UInt8>, _ literal: StaticString) -> Bool {
        guard bytes.count == literal.utf8CodeUnitCount else { return false }
        return literal.withUTF8Buffer { literal in
            for index in 0..<literal.count where bytes[index] != literal[index] { return false }
            return true
        }
    }

    /// Runs `body` on a string's UTF-8 bytes in place (HPACK's strings are native and contiguous: no copy),
    /// which checks byte by byte far faster than through `String.UTF8View`'s index.
    @inline(__always)
    private static func utf8Bytes<R>(of string: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        var string = string
        return string.withUTF8(body)
    }

    /// Whether a request is gRPC: `content-type: application/grpc` or `application/grpc+…`/`;…`.
    static func isGRPC(_ headers: HPACKHeaders) -> Bool {
        guard let type = headers.first(name: "content-type") else { return false }
        return isGRPCContentType(type)
    }

    /// Whether a `content-type` value is gRPC's: `application/grpc`, `application/grpc+…` or `…;…`, in any case.
    static func isGRPCContentType(_ value: String) -> Bool {
        utf8Bytes(of: value) { bytes in
            let prefix: StaticString = "application/grpc"
            guard bytes.count >= prefix.utf8CodeUnitCount,
                equalsLowercase(UnsafeBufferPointer(rebasing: bytes[..<prefix.utf8CodeUnitCount]), prefix)
            else { return false }
            guard bytes.count > prefix.utf8CodeUnitCount else { return true }
            let next = bytes[prefix.utf8CodeUnitCount]
            return next == UInt8(ascii: "+") || next == UInt8(ascii: ";")
        }
    }

    /// The `:status` of a response block; nil when absent or not three digits, 100–599. Read from the
    /// block's first field: pseudo-header fields come first (RFC 9113 §8.3), and a block with `:status`
    /// elsewhere is malformed (`isValidFromUpstream` refuses it). (`HPACKHeaders.first(name:)` and `Int(_:)`
    /// cost about 1,000 instructions a response head.)
    static func status(_ headers: HPACKHeaders) -> Int? {
        guard let first = headers.first, first.name == ":status" else { return nil }
        return utf8Bytes(of: first.value) { bytes -> Int? in
            guard bytes.count == 3 else { return nil }
            var value = 0
            for byte in bytes {
                let digit = byte &- UInt8(ascii: "0")
                guard digit < 10 else { return nil }
                value = value * 10 + Int(digit)
            }
            return (100...599).contains(value) ? value : nil
        }
    }

    /// The `grpc-status` of a trailer block (or trailers-only response); nil when absent or malformed.
    static func grpcStatus(_ headers: HPACKHeaders) -> Int? {
        guard let text = headers.first(name: "grpc-status"), (1...3).contains(text.utf8.count),
            text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return nil }
        return Int(text)
    }

    /// Parses a `grpc-timeout` value: 1 to 8 ASCII digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
    /// Anything else is nil (the request then has no proxy deadline). Never overflows.
    static func grpcTimeout(_ value: String) -> TimeAmount? {
        let bytes = Array(value.utf8)
        guard (2...9).contains(bytes.count), let unit = bytes.last else { return nil }
        var amount: Int64 = 0
        for digit in bytes.dropLast() {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
            amount = amount * 10 + Int64(digit - UInt8(ascii: "0"))
        }
        // At most 99,999,999 of a unit: hours fit in nanoseconds as Int64 (3.6e21 would not, so cap).
        switch unit {
        case UInt8(ascii: "H"): return .seconds(min(amount, 100_000_000 / 3600) * 3600)
        case UInt8(ascii: "M"): return .seconds(min(amount, 100_000_000 / 60) * 60)
        case UInt8(ascii: "S"): return .seconds(amount)
        case UInt8(ascii: "m"): return .milliseconds(amount)
        case UInt8(ascii: "u"): return .microseconds(amount)
        case UInt8(ascii: "n"): return .nanoseconds(amount)
        default: return nil
        }
    }

    /// A `grpc-timeout` value for `timeout`: the finest unit whose count fits the 8 digits allowed.
    static func formatGrpcTimeout(_ timeout: TimeAmount) -> String {
        let nanoseconds = max(timeout.nanoseconds, 0)
        let units: [(Int64, String)] = [
            (1, "n"), (1_000, "u"), (1_000_000, "m"), (1_000_000_000, "S"), (60_000_000_000, "M"),
            (3_600_000_000_000, "H"),
        ]
        for (size, unit) in units {
            // Rounded up, so the endpoint's deadline is never earlier than the client's.
            let count = nanoseconds / size + (nanoseconds % size == 0 ? 0 : 1)
            if count <= 99_999_999 { return "\(count)\(unit)" }
        }
        return "99999999H"
    }

    /// A gRPC trailers block (`grpc-status`, `grpc-message`); with `withHead` a trailers-only response
    /// (`:status 200`, `content-type application/grpc`) for a call that never got response headers.
    static func grpcTrailers(status: Int, message: String, withHead: Bool) -> HPACKHeaders {
        var headers = HPACKHeaders()
        if withHead {
            headers.add(name: ":status", value: "200")
            headers.add(name: "content-type", value: "application/grpc")
        }
        headers.add(name: "grpc-status", value: String(status))
        headers.add(name: "grpc-message", value: message)
        return headers
    }

    /// A short local answer: `:status`, a text body's type and length, and `x-zoneward-error` naming the cause.
    static func localResponse(status: Int, cause: String, bodyLength: Int) -> HPACKHeaders {
        [
            ":status": String(status), "content-type": "text/plain; charset=utf-8",
            "content-length": String(bodyLength), "x-zoneward-error": cause,
        ]
    }
}
