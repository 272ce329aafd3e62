import NIOCore
import NIOHPACK

/// The pure parts of relaying HTTP/2 header blocks: which fields are connection-specific, the forwarding
/// fields the proxy sets, and what gRPC says in them (`grpc-timeout`, `grpc-status`).
enum H2Headers {
    /// Fields that describe one hop's connection (RFC 9113 §8.2.2): never forwarded.
    static let connectionSpecific: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "http2-settings",
    ]

    /// The request's fields as sent upstream: connection-specific ones dropped (`te` kept only as
    /// `trailers`), and the forwarding fields set as the HTTP/1.1 path sets them: `x-forwarded-for` and
    /// `forwarded` extended for a peer `trusted` by `forwardedFor` and replaced for anyone else, and
    /// `x-forwarded-proto` the scheme the client used.
    ///
    /// Many clients share one upstream connection, and so its HPACK table: nothing a client sent is indexed
    /// there (a value the endpoint's decoder refuses without indexing it would desynchronise the table and
    /// corrupt other clients' requests, as grpc-core does with a bad `grpc-timeout`); `grpc-timeout` is
    /// re-written in canonical form, or dropped when malformed.
    static func requestForUpstream(
        _ headers: HPACKHeaders,
        clientAddress: String,
        scheme: String,
        trusted: Bool
    )
        -> HPACKHeaders
    {
        var out = HPACKHeaders()
        out.reserveCapacity(headers.count + 3)
        var forwardedFor: [String] = []
        var forwarded: [String] = []
        for (name, value, indexing) in headers {
            let lowered = name.lowercased()
            let kept: HPACKIndexing = indexing == .neverIndexed ? .neverIndexed : .nonIndexable
            switch lowered {
            case _ where connectionSpecific.contains(lowered), "x-forwarded-proto":
                continue
            case "te":
                if value.lowercased() == "trailers" { out.add(name: "te", value: "trailers", indexing: kept) }
            case "x-forwarded-for":
                if trusted { forwardedFor.append(value) }
            case "forwarded":
                if trusted { forwarded.append(value) }
            case "grpc-timeout":
                if let timeout = grpcTimeout(value) {
                    out.add(name: "grpc-timeout", value: formatGrpcTimeout(timeout), indexing: .nonIndexable)
                }
            default:
                out.add(name: lowered, value: value, indexing: kept)
            }
        }
        forwardedFor.append(clientAddress)
        let node = clientAddress.contains(":") ? "\"[\(clientAddress)]\"" : clientAddress
        forwarded.append("for=\(node);proto=\(scheme)")
        out.add(name: "x-forwarded-for", value: forwardedFor.joined(separator: ", "), indexing: .nonIndexable)
        out.add(name: "x-forwarded-proto", value: scheme, indexing: .nonIndexable)
        out.add(name: "forwarded", value: forwarded.joined(separator: ", "), indexing: .nonIndexable)
        return out
    }

    /// A response header block (or trailers) as sent to the client: connection-specific fields dropped.
    static func responseForClient(_ headers: HPACKHeaders) -> HPACKHeaders {
        guard headers.contains(where: { connectionSpecific.contains($0.name.lowercased()) }) else { return headers }
        var out = HPACKHeaders()
        for (name, value, indexing) in headers where !connectionSpecific.contains(name.lowercased()) {
            out.add(name: name, value: value, indexing: indexing)
        }
        return out
    }

    /// Whether a request is gRPC: `content-type: application/grpc` or `application/grpc+…`/`;…`.
    static func isGRPC(_ headers: HPACKHeaders) -> Bool {
        guard let type = headers.first(name: "content-type")?.lowercased() else { return false }
        return type == "application/grpc" || type.hasPrefix("application/grpc+")
            || type.hasPrefix("application/grpc;")
    }

    /// The `:status` of a response block; nil when absent or not three digits.
    static func status(_ headers: HPACKHeaders) -> Int? {
        guard let text = headers.first(name: ":status"), text.utf8.count == 3, let value = Int(text),
            (100...599).contains(value)
        else { return nil }
        return value
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
