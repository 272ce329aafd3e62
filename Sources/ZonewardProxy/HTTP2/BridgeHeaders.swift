import NIOHPACK
import NIOHTTP1

/// The pure parts of bridging HTTP/2 and HTTP/1.1: heads mapped both ways, connection-specific fields
/// dropped (RFC 9113 §8.2.2), `:authority` and Host, and the HTTP/1.1 framing checks the strict parser
/// makes, applied to a head NIO's decoder produced.
enum BridgeHeaders {
    /// The names a `Connection` field nominates, lowercased: hop-by-hop for this message. Fields are first
    /// told apart by `H2Headers.field` (length, then bytes), and the canonical-form lookup, which lowercases
    /// every name, runs only when there is a `Connection` field (an HTTP/2 client's request never has one).
    static func nominated(_ headers: HTTPHeaders) -> Set<String> {
        let hasConnection = headers.contains {
            H2Headers.field($0.name) == .connectionSpecific && $0.name.utf8.count == 10
        }
        guard hasConnection else { return [] }
        var names: Set<String> = []
        for value in headers[canonicalForm: "connection"] { names.insert(value.lowercased()) }
        return names
    }

    private static func isHopByHop(_ lowered: String, nominated: Set<String>) -> Bool {
        H2Headers.connectionSpecific.contains(lowered) || lowered == "te" || nominated.contains(lowered)
    }

    // MARK: HTTP/2 client → HTTP/1.1 endpoint

    /// Why an HTTP/2 request is not bridged to HTTP/1.1 (answered `400` with `x-zoneward-error` naming it).
    enum RequestRefusal: String, Error {
        /// Neither `:authority` nor `host` names the target.
        case missingAuthority = "missing-authority"
        /// `host` names another target than `:authority` (RFC 9113 §8.3.1).
        case hostMismatch = "host-mismatch"
        /// `:path` is not origin-form (`/…`), nor `*` for OPTIONS: an absolute-form target would name its own
        /// authority to the endpoint.
        case invalidPath = "invalid-path"
        /// `content-length` is not one decimal number (NIOHTTP2 takes `+5` or `5, 5`; HTTP/1.1 parsers differ
        /// on them).
        case invalidContentLength = "invalid-content-length"
        /// TRACE with a body, which HTTP/1.1 forbids (RFC 9110 §9.3.8).
        case traceWithBody = "trace-with-body"
        /// CONNECT: no tunnels through the bridge (`405`).
        case connect = "connect-not-supported"
        /// A `:method` that is not a token: it could not stand in an HTTP/1.1 request line.
        case invalidMethod = "invalid-method"
        /// A field value with a control byte other than HTAB, or DEL: HTTP/2 refuses only NUL, CR and LF, but
        /// HTTP/1.1 does not allow them (RFC 9110 §5.5), and the endpoint could read them as it likes.
        case invalidFieldValue = "invalid-field-value"
    }

    /// An HTTP/2 client's request head (checked by `H2Headers.isValidFromClient`) as an HTTP/1.1 head: `Host`
    /// from `:authority` unless the block has one (the same), and the body framed so that the endpoint reads
    /// exactly the DATA the client sends: `content-length` as the client gave it (one decimal number), else
    /// `transfer-encoding: chunked` while the stream is open, whatever the method (a GET's body with no framing
    /// would reach the endpoint as the start of another request), or `content-length: 0` for a method whose
    /// requests carry bodies when the HEADERS ended the stream.
    static func requestFromHTTP2(_ block: HPACKHeaders, endStream: Bool) -> Result<HTTPRequestHead, RequestRefusal> {
        var method: HTTPMethod?
        var path = ""
        var authority: String?
        var host: String?
        var length: String?
        // Gathered as pairs and made `HTTPHeaders` at once: `HTTPHeaders.add` checks each name for non-ASCII
        // bytes through `String.UTF8View` (about 340 instructions a field), and these names are tokens
        // already (`H2Headers.isValidFromClient`).
        var headers: [(String, String)] = []
        headers.reserveCapacity(block.count + 2)
        for (name, value, _) in block {
            switch name {
            case ":method":
                guard isToken(value) else { return .failure(.invalidMethod) }
                method = HTTPMethod(rawValue: value)
            case ":path": path = value
            case ":authority": authority = value
            case ":scheme": continue
            case "content-length":
                guard !value.isEmpty, value.utf8.count <= 18, value.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                    length == nil || length == value
                else { return .failure(.invalidContentLength) }
                length = value
            case "host":
                guard host == nil else { return .failure(.hostMismatch) }
                guard isHTTP1FieldValue(value) else { return .failure(.invalidFieldValue) }
                host = value
                headers.append((name, value))
            default:
                guard isHTTP1FieldValue(value) else { return .failure(.invalidFieldValue) }
                headers.append((name, value))
            }
        }
        guard let method else { return .failure(.invalidPath) }
        if method == .CONNECT { return .failure(.connect) }
        guard let target = host ?? authority else { return .failure(.missingAuthority) }
        // Compared only when both are there (with no `host` the target is `:authority` itself).
        if let authority, let host, authority.lowercased() != host.lowercased() { return .failure(.hostMismatch) }
        guard path.utf8.first == UInt8(ascii: "/") || (path == "*" && method == .OPTIONS) else {
            return .failure(.invalidPath)
        }
        // A TRACE request carries no body (RFC 9110 §9.3.8).
        if method == .TRACE, length.map({ $0 != "0" }) ?? !endStream { return .failure(.traceWithBody) }
        if let length {
            headers.append(("content-length", length))
        } else if !endStream {
            headers.append(("transfer-encoding", "chunked"))
        } else {
            switch method {
            case .GET, .HEAD, .DELETE, .CONNECT, .TRACE, .OPTIONS: break
            default: headers.append(("content-length", "0"))
            }
        }
        if host == nil { headers.append(("host", target)) }
        return .success(HTTPRequestHead(version: .http2, method: method, uri: path, headers: HTTPHeaders(headers)))
    }

    /// An HTTP/2 client's trailers as HTTP/1.1 trailer fields; a field whose value HTTP/1.1 does not allow
    /// (`isHTTP1FieldValue`) is left out.
    static func trailersFromHTTP2(_ block: HPACKHeaders) -> HTTPHeaders {
        var trailers = HTTPHeaders()
        for (name, value, _) in block where isHTTP1FieldValue(value) { trailers.add(name: name, value: value) }
        return trailers
    }

    /// Whether an HTTP/2 field value may go into an HTTP/1.1 message: no control byte but HTAB, and no DEL
    /// (NIO's encoder checked this before the bridge wrote its requests itself).
    static func isHTTP1FieldValue(_ value: String) -> Bool {
        var value = value
        return value.withUTF8 { bytes in !bytes.contains { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F } }
    }

    private static func isToken(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in !bytes.isEmpty && bytes.allSatisfy(HTTPTokens.isTokenCharacter) }
    }

    /// A request `requestFromHTTP2` made (`:authority` already the Host field, and `transfer-encoding:
    /// chunked` added for a body of unknown length) as sent to an HTTP/1.1
    /// endpoint: HTTP/1.1, hop-by-hop fields dropped, and the forwarding fields set as the HTTP/1.1 path
    /// sets them (`X-Forwarded-For` and `Forwarded` extended for a `trusted` peer and replaced for anyone
    /// else, `X-Forwarded-Proto` the client's scheme).
    static func requestForHTTP1(
        _ head: HTTPRequestHead,
        clientAddress: String,
        scheme: String,
        trusted: Bool
    ) -> HTTPRequestHead {
        requestForHTTP1(
            head,
            forwarding: H2Headers.Forwarding(clientAddress: clientAddress, scheme: scheme, trusted: trusted)
        )
    }

    /// As above, with the client connection's forwarding facts built once. Fields are told apart by
    /// `H2Headers.field` (length, then bytes: no lowercased copy per field).
    static func requestForHTTP1(_ head: HTTPRequestHead, forwarding: H2Headers.Forwarding) -> HTTPRequestHead {
        let nominated = nominated(head.headers)
        // Pairs, made `HTTPHeaders` at once (as in `requestFromHTTP2`).
        var out: [(String, String)] = []
        out.reserveCapacity(head.headers.count + 3)
        var forwardedFor: [String] = []
        var forwarded: [String] = []
        var hasHost = false
        for (name, value) in head.headers {
            switch H2Headers.field(name) {
            case .connectionSpecific:
                // Only the codec's own framing survives; an HTTP/2 client cannot send this field.
                if name.utf8.count == 17, value.lowercased() == "chunked" {
                    out.append(("Transfer-Encoding", "chunked"))
                }
            case .te, .xForwardedProto, .pseudo:
                continue
            case .xForwardedFor:
                if forwarding.trusted { forwardedFor.append(value) }
            case .forwarded:
                if forwarding.trusted { forwarded.append(value) }
            case .regular, .grpcTimeout, .contentType:
                if name.utf8.count == 4, name.lowercased() == "host" {
                    guard !hasHost else { continue }
                    hasHost = true
                    out.append(("Host", value))
                } else if nominated.isEmpty || !nominated.contains(name.lowercased()) {
                    out.append((name, value))
                }
            }
        }
        forwardedFor.append(forwarding.clientAddress)
        forwarded.append(forwarding.forwardedElement)
        out.append(("X-Forwarded-For", forwardedFor.joined(separator: ", ")))
        out.append(("X-Forwarded-Proto", forwarding.scheme))
        out.append(("Forwarded", forwarded.joined(separator: ", ")))
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: head.uri, headers: HTTPHeaders(out))
    }

    // MARK: HTTP/1.1 client → HTTP/2 endpoint

    /// Why an HTTP/1.1 request head (decoded by NIO) is refused, with the strict parser's rules: Content-Length
    /// with Transfer-Encoding, a Content-Length that is not one number, Transfer-Encoding other than one
    /// `chunked`, no Host in HTTP/1.1, more than one Host, more than `HTTPHeadParser.maxHeaders` fields.
    static func framingError(_ head: HTTPRequestHead) -> HTTPFramingError? {
        let headers = head.headers
        if headers.count > HTTPHeadParser.maxHeaders { return .tooManyHeaders }
        let lengths = headers["content-length"]
        let encodings = headers["transfer-encoding"]
        if !encodings.isEmpty {
            if !lengths.isEmpty { return .contentLengthWithTransferEncoding }
            guard encodings.count == 1, encodings[0].lowercased() == "chunked" else {
                return .unsupportedTransferEncoding
            }
        }
        var length: String?
        for value in lengths {
            guard !value.isEmpty, value.utf8.count <= 18, value.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
                return .invalidContentLength
            }
            if let length, length != value { return .conflictingContentLength }
            length = value
        }
        let hosts = headers["host"].count
        if hosts > 1 { return .duplicateHost }
        if hosts == 0, head.version == .http1_1 { return .missingHost }
        return nil
    }

    /// An HTTP/1.1 request head as an HTTP/2 header block: `:method`, `:scheme` (the client's), `:authority`
    /// (the absolute-form target's, else Host), `:path`, then the fields, lowercased, hop-by-hop ones and Host
    /// dropped (`te: trailers` kept). Nil without an authority (an HTTP/1.0 request with no Host).
    static func requestForHTTP2(_ head: HTTPRequestHead, scheme: String) -> HPACKHeaders? {
        var authority = head.headers.first(name: "host")
        var path = head.uri
        if let range = path.range(of: "://"), path.hasPrefix("http") {
            // Absolute form (RFC 9112 §3.2.2): its authority wins over Host.
            let rest = path[range.upperBound...]
            let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
            authority = String(rest[..<slash])
            path = slash == rest.endIndex ? "/" : String(rest[slash...])
            if path.hasPrefix("?") { path = "/" + path }
        }
        guard let authority, !authority.isEmpty, !path.isEmpty else { return nil }
        let nominated = nominated(head.headers)
        var out = HPACKHeaders()
        out.reserveCapacity(head.headers.count + 4)
        out.add(name: ":method", value: head.method.rawValue)
        out.add(name: ":scheme", value: scheme)
        out.add(name: ":authority", value: authority)
        out.add(name: ":path", value: path)
        for (name, value) in head.headers {
            let lowered = name.lowercased()
            if lowered == "te" {
                if value.lowercased() == "trailers" { out.add(name: "te", value: "trailers") }
                continue
            }
            if lowered == "host" || isHopByHop(lowered, nominated: nominated) { continue }
            out.add(name: lowered, value: value)
        }
        return out
    }

    /// An HTTP/2 response header block as an HTTP/1.1 head; nil when `:status` is missing or malformed.
    static func responseForHTTP1(_ headers: HPACKHeaders) -> HTTPResponseHead? {
        guard let status = H2Headers.status(headers) else { return nil }
        var out = HTTPHeaders()
        out.reserveCapacity(headers.count)
        for (name, value, _) in headers where !name.hasPrefix(":") {
            if H2Headers.field(name) == .connectionSpecific { continue }
            out.add(name: name, value: value)
        }
        return HTTPResponseHead(version: .http1_1, status: .init(statusCode: status), headers: out)
    }

    /// HTTP/1.1 trailers from an HTTP/2 trailer block (pseudo and connection-specific fields dropped).
    static func trailersForHTTP1(_ headers: HPACKHeaders) -> HTTPHeaders {
        var out = HTTPHeaders()
        for (name, value, _) in headers where !name.hasPrefix(":") {
            if H2Headers.field(name) == .connectionSpecific { continue }
            out.add(name: name, value: value)
        }
        return out
    }
}
