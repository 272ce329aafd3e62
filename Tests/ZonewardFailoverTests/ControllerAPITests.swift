import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOPosix
import Testing
import ZonewardModel
import ZonewardState

@testable import ZonewardFailover

/// A controller over an in-memory state database, for API tests.
func makeController(
    token: String = "secret",
    listen: HostPort = HostPort(host: "127.0.0.1", port: 0)
) throws -> ControllerService {
    let configuration = try ordersConfiguration()
    let logger = quietLogger
    return ControllerService(
        settings: .init(configuration: configuration, listen: listen, token: token),
        store: try StateStore.inMemory(),
        group: MultiThreadedEventLoopGroup.singleton,
        logger: logger
    )
}

let authorized: HTTPFields = [.authorization: "Bearer secret"]

func jsonBody(_ text: String) -> ByteBuffer {
    ByteBuffer(string: text)
}

func errorMessage(_ response: TestResponse) -> String {
    let object = try? JSONDecoder().decode([String: String].self, from: Data(response.body.readableBytesView))
    return object?["error"] ?? ""
}

@Suite struct ControllerAPITests {
    @Test func healthzAndMetricsNeedNoToken() async throws {
        let app = try makeController().makeApplication()
        try await app.test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "ok\n")
            }
            try await client.execute(uri: "/metrics", method: .get) { #expect($0.status == .ok) }
        }
    }

    @Test func everyOtherPathNeedsTheToken() async throws {
        let app = try makeController().makeApplication()
        try await app.test(.router) { client in
            for uri in ["/v1/status", "/v1/snapshot", "/v1/operations", "/v1/operations/1", "/nowhere"] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status == .unauthorized, "\(uri)")
                    #expect(errorMessage(response) == "missing or wrong bearer token")
                }
            }
            try await client.execute(uri: "/v1/status", method: .get, headers: [.authorization: "Bearer wrong"]) {
                #expect($0.status == .unauthorized)
            }
            try await client.execute(uri: "/v1/status", method: .get, headers: authorized) {
                #expect($0.status == .ok)
            }
            try await client.execute(uri: "/nowhere", method: .get, headers: authorized) { response in
                #expect(response.status == .notFound)
                #expect(errorMessage(response) == "no such endpoint: GET /nowhere")
            }
        }
    }

    /// Measured before: `GET /v1/operations/` killed the controller with an illegal instruction.
    @Test func oddPathsAnswerInsteadOfCrashing() async throws {
        let app = try makeController().makeApplication()
        try await app.test(.router) { client in
            for uri in [
                "/v1/operations/", "/v1/operations//", "/v1/operations/x", "/v1/operations/-1",
                "/v1/operations/99999999999999999999", "/v1/operations/1/", "/v1//operations", "//", "/v1/operations/7",
            ] {
                try await client.execute(uri: uri, method: .get, headers: authorized) { response in
                    #expect([.ok, .badRequest, .notFound].contains(response.status), "\(uri): \(response.status)")
                }
            }
            try await client.execute(uri: "/v1/operations/x", method: .get, headers: authorized) { response in
                #expect(response.status == .badRequest)
                #expect(errorMessage(response).hasPrefix("id:"))
            }
            try await client.execute(uri: "/v1/operations/7", method: .get, headers: authorized) { response in
                #expect(response.status == .notFound)
                #expect(errorMessage(response) == "id: no operation 7")
            }
        }
    }

    /// Measured before (by the code): a `wait` of 1e20 seconds trapped converting to a Duration.
    @Test func hugeOrBadQueryValuesAreRefusedNamingTheParameter() async throws {
        let app = try makeController().makeApplication()
        try await app.test(.router) { client in
            let cases = [
                ("/v1/snapshot?wait=99999999999999999999s", "wait:"),
                ("/v1/snapshot?wait=1e400s", "wait:"),
                ("/v1/snapshot?wait=61s", "wait:"),
                ("/v1/snapshot?wait=soon", "wait:"),
                ("/v1/snapshot?after=99999999999999999999", "after:"),
                ("/v1/snapshot?after=-1", "after:"),
                ("/v1/operations?limit=99999999999999999999", "limit:"),
                ("/v1/operations?limit=0", "limit:"),
            ]
            for (uri, field) in cases {
                try await client.execute(uri: uri, method: .get, headers: authorized) { response in
                    #expect(response.status == .badRequest, "\(uri)")
                    #expect(errorMessage(response).hasPrefix(field), "\(uri): \(errorMessage(response))")
                }
            }
            try await client.execute(uri: "/v1/snapshot?after=0&wait=1s", method: .get, headers: authorized) {
                #expect($0.status == .ok)
            }
        }
    }

    @Test func aDrainOfHugeOrBadDurationIsRefusedNamingTheField() async throws {
        let app = try makeController().makeApplication()
        try await app.test(.router) { client in
            for duration in ["99999999999999999999s", "31d", "0s", "later", "1e9d", ""] {
                let body = jsonBody(#"{"zone": "za", "duration": "\#(duration)", "reason": "test"}"#)
                try await client.execute(uri: "/v1/drains", method: .post, headers: authorized, body: body) {
                    #expect($0.status == .badRequest, "\(duration)")
                    #expect(errorMessage($0).hasPrefix("duration:"), "\(duration): \(errorMessage($0))")
                }
            }
            let unknown = jsonBody(#"{"zone": "zz", "duration": "1h", "reason": "test"}"#)
            try await client.execute(uri: "/v1/drains", method: .post, headers: authorized, body: unknown) {
                #expect($0.status == .badRequest)
                #expect(errorMessage($0) == #"zone: unknown zone "zz" (known: za, zb)"#)
            }
            let missing = jsonBody(#"{"zone": "za"}"#)
            try await client.execute(uri: "/v1/drains", method: .post, headers: authorized, body: missing) {
                #expect($0.status == .badRequest)
                #expect(errorMessage($0).hasPrefix("body: invalid JSON: missing field"))
            }
            try await client.execute(uri: "/v1/drains", method: .post, headers: authorized, body: jsonBody("{")) {
                #expect($0.status == .badRequest)
            }
        }
    }

    /// Timestamps are RFC 3339 UTC strings, not seconds since 2001.
    @Test func timestampsAreRFC3339() async throws {
        let app = try makeController().makeApplication()
        try await app.test(.router) { client in
            let body = jsonBody(#"{"zone": "za", "duration": "30d", "reason": "maintenance"}"#)
            try await client.execute(uri: "/v1/drains", method: .post, headers: authorized, body: body) { response in
                #expect(response.status == .created)
                let drain = try #require(
                    try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                )
                let expires = try #require(drain["expiresAt"] as? String)
                #expect(expires.hasSuffix("Z"))
                let parsed = try Date(expires, strategy: .iso8601)
                #expect(abs(parsed.timeIntervalSinceNow - 30 * 86_400) < 60)
            }
        }
    }

    @Test func anUnknownTargetRegionIsABadRequestNamingTheKnownOnes() async throws {
        let app = try makeController().makeApplication()
        try await app.test(.router) { client in
            let body = jsonBody(#"{"service": "orders", "to": "nowhere", "dryRun": true}"#)
            try await client.execute(uri: "/v1/failover", method: .post, headers: authorized, body: body) {
                #expect($0.status == .badRequest)
                #expect(errorMessage($0) == #"to: "nowhere" is not a region of orders (known: ra, rb)"#)
            }
            let plan = jsonBody(#"{"service": "orders", "to": "rb", "dryRun": true}"#)
            try await client.execute(uri: "/v1/failover", method: .post, headers: authorized, body: plan) {
                #expect($0.status == .ok)
            }
        }
    }

    @Test func bodiesOverSixtyFourKiBAreRefused() async throws {
        let app = try makeController().makeApplication()
        try await app.test(.router) { client in
            let padding = String(repeating: " ", count: ControllerAPI.maxBodyBytes)
            let big = jsonBody(#"{"zone": "za", "duration": "1h", "reason": "x"}"# + padding)
            try await client.execute(uri: "/v1/drains", method: .post, headers: authorized, body: big) {
                #expect($0.status == .contentTooLarge)
                #expect(errorMessage($0).hasPrefix("body:"))
            }
            // A declared length over the limit is refused from the head alone.
            let declared: HTTPFields = [.authorization: "Bearer secret", .contentLength: "400000000"]
            try await client.execute(uri: "/v1/drains", method: .post, headers: declared) {
                #expect($0.status == .contentTooLarge)
            }
            let fits = jsonBody(#"{"zone": "za", "duration": "1h", "reason": "x"}"#)
            try await client.execute(uri: "/v1/drains", method: .post, headers: authorized, body: fits) {
                #expect($0.status == .created)
            }
        }
    }

    /// Measured before: an unauthenticated 400 MB POST was buffered whole (47 → 343 MiB RSS) before its 401.
    /// Over a real socket: the head alone, announcing 400 MB, gets its 401 while no body byte was sent.
    @Test func aRequestWithoutTheTokenIsRefusedOnItsHead() async throws {
        let app = try makeController().makeApplication()
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let answer = try await RawHTTP.exchange(
                port: port,
                request: "POST /v1/drains HTTP/1.1\r\nHost: x\r\nContent-Length: 400000000\r\n\r\n"
            )
            #expect(answer.hasPrefix("HTTP/1.1 401"), "\(answer)")
            #expect(answer.lowercased().contains("connection: close"))
        }
    }
}

/// A blocking HTTP/1.1 exchange over a plain socket: sends `request`, returns what arrives within 30 s up to the
/// end of the first response's head and body (by Content-Length).
enum RawHTTP {
    static func exchange(port: Int, request: String) async throws -> String {
        try await Task.detached {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw DriverError("socket failed") }
            defer { close(fd) }
            var timeout = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else { throw DriverError("connect failed") }
            let bytes = Array(request.utf8)
            guard send(fd, bytes, bytes.count, 0) == bytes.count else { throw DriverError("send failed") }
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count <= 0 { break }
                received += buffer[0..<count]
                let text = String(decoding: received, as: UTF8.self)
                if let end = text.range(of: "\r\n\r\n") {
                    let head = text[..<end.lowerBound].lowercased()
                    let length =
                        head.split(separator: "\r\n")
                        .first { $0.hasPrefix("content-length:") }
                        .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) }
                        ?? 0
                    if text[end.upperBound...].utf8.count >= length { break }
                }
            }
            return String(decoding: received, as: UTF8.self)
        }.value
    }
}
