/// The data path's timeouts, set globally (`timeouts:`) and overridden per service. A slow or hostile
/// client can hold a connection only as long as these allow, however slowly it trickles bytes.
public struct TimeoutConfiguration: Sendable, Equatable {
    /// A request head must arrive whole within this long of its first byte; then 408 and close. Default
    /// 10s, like HAProxy's `timeout http-request`. Trickling bytes does not extend it.
    public var requestHead: Duration = .seconds(10)
    /// A TLS handshake must complete within this long of the connection's accept; then close. Default 10s.
    public var tlsHandshake: Duration = .seconds(10)
    /// No request body byte for this long while the endpoint waits for it: 408 and close. Default 30s.
    public var clientBody: Duration = .seconds(30)
    /// A client that takes no response byte for this long is closed. Default 60s.
    public var clientWrite: Duration = .seconds(60)
    /// A client connection with no request in flight is closed after this long. Default 60s.
    public var clientIdle: Duration = .seconds(60)
    /// A TCP service's connection with no byte either way for this long is closed. Default 1h.
    public var tcpIdle: Duration = .seconds(3600)
    /// Connecting to an endpoint. Default 1s; a connect failure is retried on another endpoint.
    public var connect: Duration = .seconds(1)
    /// No byte from the endpoint for this long while it owes a response: 504. Also how long an idle pooled
    /// upstream connection is kept. Default 30s.
    public var upstreamRead: Duration = .seconds(30)

    public init() {}

    /// The field names, as written in YAML.
    public static let fieldNames = [
        "requestHead", "tlsHandshake", "clientBody", "clientWrite", "clientIdle", "tcpIdle", "connect",
        "upstreamRead",
    ]

    /// The timeout named `field` (one of `fieldNames`).
    public subscript(field: String) -> Duration? {
        get {
            switch field {
            case "requestHead": requestHead
            case "tlsHandshake": tlsHandshake
            case "clientBody": clientBody
            case "clientWrite": clientWrite
            case "clientIdle": clientIdle
            case "tcpIdle": tcpIdle
            case "connect": connect
            case "upstreamRead": upstreamRead
            default: nil
            }
        }
        set {
            guard let newValue else { return }
            switch field {
            case "requestHead": requestHead = newValue
            case "tlsHandshake": tlsHandshake = newValue
            case "clientBody": clientBody = newValue
            case "clientWrite": clientWrite = newValue
            case "clientIdle": clientIdle = newValue
            case "tcpIdle": tcpIdle = newValue
            case "connect": connect = newValue
            case "upstreamRead": upstreamRead = newValue
            default: break
            }
        }
    }
}

/// Which peers may set `X-Forwarded-For` and `Forwarded` for a service, as Envoy's `xff_num_trusted_hops`.
///
/// By default nobody is trusted: the proxy replaces what an untrusted peer sent with the peer's own address,
/// so a client cannot make a backend believe it comes from elsewhere.
public struct ForwardedForConfiguration: Sendable, Equatable {
    /// Proxies in front of this one whose forwarding headers are kept (appended to). Default none.
    public var trustedHops: Int = 0
    /// Peers (CIDR ranges) whose forwarding headers are kept. Default none.
    public var trustedProxies: [AddressRange] = []

    public init(trustedHops: Int = 0, trustedProxies: [AddressRange] = []) {
        self.trustedHops = trustedHops
        self.trustedProxies = trustedProxies
    }

    /// Whether forwarding headers from `peer` (an IP address text) are kept.
    public func trusts(peer: String) -> Bool {
        if trustedHops > 0 { return true }
        return trustedProxies.contains { $0.contains(peer) }
    }
}

/// An IPv4 or IPv6 CIDR range such as `10.0.0.0/8` or `fd00::/8`.
public struct AddressRange: Sendable, Equatable, CustomStringConvertible {
    public let bytes: [UInt8]
    public let prefixLength: Int

    /// Parses `address/prefix` (a bare address is a /32 or /128); nil when malformed.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let bytes = Self.parseAddress(String(parts[0])) else { return nil }
        let maximum = bytes.count * 8
        var prefix = maximum
        if parts.count == 2 {
            guard let length = Int(parts[1]), (0...maximum).contains(length) else { return nil }
            prefix = length
        }
        self.bytes = bytes
        self.prefixLength = prefix
    }

    public var description: String {
        let address: String
        if bytes.count == 4 {
            address = bytes.map(String.init).joined(separator: ".")
        } else {
            address = stride(from: 0, to: 16, by: 2).map {
                String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16)
            }
            .joined(separator: ":")
        }
        return "\(address)/\(prefixLength)"
    }

    /// Whether the address `text` lies in this range (an IPv4-mapped IPv6 address counts as IPv4).
    public func contains(_ text: String) -> Bool {
        guard var address = Self.parseAddress(text) else { return false }
        if address.count == 16, bytes.count == 4, address[0..<10].allSatisfy({ $0 == 0 }),
            address[10] == 0xFF, address[11] == 0xFF
        {
            address = Array(address[12...])
        }
        guard address.count == bytes.count else { return false }
        var remaining = prefixLength
        for index in bytes.indices where remaining > 0 {
            let bits = min(remaining, 8)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if address[index] & mask != bytes[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    /// The 4 or 16 bytes of an IPv4 or IPv6 address; nil when malformed.
    static func parseAddress(_ text: String) -> [UInt8]? {
        if !text.contains(":") {
            let octets = text.split(separator: ".", omittingEmptySubsequences: false)
            guard octets.count == 4 else { return nil }
            var bytes: [UInt8] = []
            for octet in octets {
                guard !octet.isEmpty, octet.count <= 3, octet.allSatisfy(\.isASCII), let value = UInt8(octet)
                else { return nil }
                bytes.append(value)
            }
            return bytes
        }
        // IPv6, with at most one "::" and an optional trailing dotted IPv4 part.
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String) -> [UInt8]? {
            guard !part.isEmpty else { return [] }
            var bytes: [UInt8] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if index == pieces.count - 1, piece.contains(".") {
                    guard let tail = parseAddress(String(piece)), tail.count == 4 else { return nil }
                    bytes += tail
                    continue
                }
                guard (1...4).contains(piece.count), let value = UInt16(piece, radix: 16) else { return nil }
                bytes += [UInt8(value >> 8), UInt8(value & 0xFF)]
            }
            return bytes
        }
        guard let head = groups(halves[0]) else { return nil }
        if halves.count == 1 { return head.count == 16 ? head : nil }
        guard let tail = groups(halves[1]), head.count + tail.count <= 14 else { return nil }
        return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
    }
}
