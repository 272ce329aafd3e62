import NIOCore

/// How the body of a message is delimited.
public enum BodyFraming: Sendable, Equatable {
    case none
    case contentLength(Int)
    case chunked
    /// A response body that ends when the upstream closes the connection.
    case untilClose
}

/// A parsed request head: only what the proxy needs to route and frame it, plus the rewritten bytes.
public struct RequestHead: Sendable {
    /// The methods the proxy tells apart; others are forwarded as `other`.
    public enum Method: Sendable, Equatable {
        case get, head, post, put, delete, options, trace, patch, connect, other
    }

    public var method: Method
    public var isHTTP11: Bool
    public var framing: BodyFraming
    /// Whether the client wants the connection kept open after the response.
    public var keepAlive: Bool
    /// A WebSocket handshake (GET, `Upgrade: websocket`, `Connection: Upgrade`): a 101 answer turns the
    /// connection into a byte tunnel. Any other request answered with 101 is a 502.
    public var upgradesToWebSocket = false
    public var isHead: Bool { method == .head }
    /// Safe to send twice: GET, HEAD, OPTIONS, TRACE, PUT, DELETE.
    public var isIdempotent: Bool {
        switch method {
        case .get, .head, .options, .trace, .put, .delete: return true
        default: return false
        }
    }
}

/// A parsed response head.
public struct ResponseHead: Sendable {
    public var status: Int
    public var isHTTP11: Bool
    public var framing: BodyFraming
    /// Whether the upstream will keep the connection open after this response.
    public var keepAlive: Bool
    /// A 1xx interim response (other than 101): another head follows.
    public var isInterim: Bool { status >= 100 && status < 200 && status != 101 }
}

/// What to add to a forwarded request, rendered to bytes once per client connection.
public struct ForwardingInfo: Sendable {
    /// The client's address, for X-Forwarded-For and Forwarded.
    public let clientAddress: String
    /// Whether the peer's own X-Forwarded-For and Forwarded values are kept (appended to); otherwise they
    /// are replaced.
    public let trustsPeer: Bool
    /// `http` or `https`: how the client reached the proxy.
    public let scheme: String
    /// The client's address as X-Forwarded-For's last element.
    let clientBytes: [UInt8]
    /// Ends X-Forwarded-For, sets X-Forwarded-Proto and starts Forwarded.
    let middle: [UInt8]
    /// Forwarded's element for this hop, and the end of the head.
    let forwardedElement: [UInt8]

    public init(clientAddress: String, scheme: String, trustsPeer: Bool = false) {
        self.clientAddress = clientAddress
        self.trustsPeer = trustsPeer
        self.scheme = scheme
        clientBytes = Array(clientAddress.utf8)
        middle = Array("\r\nX-Forwarded-Proto: \(scheme)\r\nForwarded: ".utf8)
        // RFC 7239: an IPv6 address is bracketed and quoted.
        let node = clientAddress.contains(":") ? "\"[\(clientAddress)]\"" : clientAddress
        forwardedElement = Array("for=\(node);proto=\(scheme)\r\n\r\n".utf8)
    }
}
