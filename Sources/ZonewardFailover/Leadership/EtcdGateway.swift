import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import Synchronization

/// A client of etcd's v3 JSON gateway (grpc-gateway): keys and values travel base64-encoded, int64s as JSON
/// strings. The members' endpoints are tried in turn when one cannot be reached; the last one that answered
/// is tried first next time.
final class EtcdGateway: Sendable {
    struct KeyValue: Sendable, Equatable {
        var key: String
        var value: Data
        var createRevision: Int64
        var modRevision: Int64
        var lease: Int64
    }

    enum EventType: Sendable, Equatable { case put, delete }

    struct Event: Sendable, Equatable {
        var type: EventType
        var kv: KeyValue?
    }

    let endpoints: [String]
    let tls: NIOSSL.TLSConfiguration?
    let faults: ElectionFaults
    private let preferred = Mutex(0)
    private let http = HTTPClient.shared

    init(endpoints: [String], tls: NIOSSL.TLSConfiguration?, faults: ElectionFaults = ElectionFaults()) {
        self.endpoints = endpoints.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.tls = tls
        self.faults = faults
    }

    // MARK: Operations

    /// Grants a lease of `ttl` seconds: its ID and the TTL etcd granted.
    func grant(ttl: Int64, timeout: Duration) async throws -> (id: Int64, ttl: Int64) {
        let answer = try await call("/v3/lease/grant", ["TTL": .string(String(ttl))], timeout: timeout)
        guard let id = answer.int64("ID"), id != 0, let granted = answer.int64("TTL"), granted > 0 else {
            throw ElectionError.store("lease grant: \(answer.errorDescription ?? "no lease in the answer")")
        }
        return (id, granted)
    }

    /// Renews `lease` once: the TTL it now has, 0 when it has expired or does not exist.
    func keepAlive(lease: Int64, timeout: Duration) async throws -> Int64 {
        let answer = try await call("/v3/lease/keepalive", ["ID": .string(String(lease))], timeout: timeout)
        if let error = answer["error"] { throw ElectionError.store("keep-alive: \(error.compactDescription)") }
        return answer["result"]?.int64("TTL") ?? 0
    }

    func revoke(lease: Int64, timeout: Duration) async throws {
        _ = try await call("/v3/lease/revoke", ["ID": .string(String(lease))], timeout: timeout)
    }

    /// The key's current value, if any, and the store's revision.
    func range(_ key: String, timeout: Duration) async throws -> (kv: KeyValue?, revision: Int64) {
        let answer = try await call("/v3/kv/range", ["key": .string(Self.encode(key))], timeout: timeout)
        return (answer["kvs"]?.array?.first.flatMap(Self.keyValue), answer["header"]?.int64("revision") ?? 0)
    }

    func delete(_ key: String, timeout: Duration) async throws {
        _ = try await call("/v3/kv/deleterange", ["key": .string(Self.encode(key))], timeout: timeout)
    }

    /// Puts `value` at `key` (attached to `lease`, if not 0) when `compareKey`'s create revision equals
    /// `createRevision`; otherwise reads `readKey`. Whether it put, the key read, and the store's revision.
    func putIf(
        createRevisionOf compareKey: String,
        equals createRevision: Int64,
        put key: String,
        value: Data,
        lease: Int64 = 0,
        orRead readKey: String,
        timeout: Duration
    ) async throws -> (succeeded: Bool, read: KeyValue?, revision: Int64) {
        var put: [String: JSONValue] = [
            "key": .string(Self.encode(key)), "value": .string(value.base64EncodedString()),
        ]
        if lease != 0 { put["lease"] = .string(String(lease)) }
        let body: JSONValue = [
            "compare": [
                [
                    "target": "CREATE", "result": "EQUAL", "key": .string(Self.encode(compareKey)),
                    "create_revision": .string(String(createRevision)),
                ]
            ],
            "success": [["request_put": .object(put)]],
            "failure": [["request_range": ["key": .string(Self.encode(readKey))]]],
        ]
        let answer = try await call("/v3/kv/txn", body, timeout: timeout)
        let succeeded = answer["succeeded"]?.bool ?? false
        let read =
            succeeded
            ? nil : answer["responses"]?.array?.first?["response_range"]?["kvs"]?.array?.first.flatMap(Self.keyValue)
        return (succeeded, read, answer["header"]?.int64("revision") ?? 0)
    }

    /// Watches `key` from `revision`: batches of events until the stream ends or breaks.
    func watch(_ key: String, from revision: Int64) -> AsyncThrowingStream<[Event], any Error> {
        let body: JSONValue = [
            "create_request": ["key": .string(Self.encode(key)), "start_revision": .string(String(revision))]
        ]
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    // The stream lasts: only the endpoint that answered last, for the whole hour.
                    let response = try await open("/v3/watch", body, timeout: .seconds(3600), preferredOnly: true)
                    var pending = ByteBuffer()
                    for try await var chunk in response.body {
                        pending.writeBuffer(&chunk)
                        while let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                            let line = pending.readData(length: newline - pending.readerIndex) ?? Data()
                            pending.moveReaderIndex(forwardBy: 1)
                            guard !line.isEmpty else { continue }
                            guard let message = try? JSONDecoder().decode(JSONValue.self, from: line) else {
                                throw ElectionError.store("watch: unreadable event")
                            }
                            if let error = message["error"] {
                                throw ElectionError.store("watch: \(error.compactDescription)")
                            }
                            guard let result = message["result"] else { continue }
                            if result["canceled"]?.bool == true {
                                throw ElectionError.store("watch canceled: \(result.compactDescription)")
                            }
                            let events = (result["events"]?.array ?? []).map { event in
                                Event(
                                    type: event["type"]?.string == "DELETE" ? .delete : .put,
                                    kv: event["kv"].flatMap(Self.keyValue)
                                )
                            }
                            continuation.yield(events)
                        }
                        pending.discardReadBytes()
                        guard pending.readableBytes < 4 * 1024 * 1024 else {
                            throw ElectionError.store("watch: event over 4 MiB")
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    // MARK: Transport

    private func call(_ path: String, _ body: JSONValue, timeout: Duration) async throws -> JSONValue {
        let response = try await open(path, body, timeout: timeout)
        let bytes: ByteBuffer
        do {
            bytes = try await response.body.collect(upTo: 16 * 1024 * 1024)
        } catch {
            throw ElectionError.store("\(path): reading the answer: \(error)")
        }
        guard let answer = try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: bytes)) else {
            throw ElectionError.store("\(path): unreadable answer")
        }
        return answer
    }

    /// Sends `body` to the first endpoint that answers, each getting its share of `timeout` (AsyncHTTPClient
    /// retries a refused connection until the request's deadline); a non-2xx answer is an error.
    private func open(
        _ path: String,
        _ body: JSONValue,
        timeout: Duration,
        preferredOnly: Bool = false
    ) async throws -> HTTPClientResponse {
        guard !endpoints.isEmpty else { throw ElectionError.configuration("etcd.endpoints is empty") }
        if faults.partitioned { throw ElectionError.store("\(path): cut off from the store (test fault)") }
        let data = try JSONEncoder().encode(body)
        let first = preferred.withLock { $0 }
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        let attempts = preferredOnly ? 1 : endpoints.count
        let share = TimeAmount(max(timeout / attempts, .milliseconds(250)))
        var failures: [String] = []
        for offset in 0..<attempts {
            try Task.checkCancellation()
            let index = (first + offset) % endpoints.count
            let endpoint = endpoints[index]
            var request = HTTPClientRequest(url: endpoint + path)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: data))
            if endpoint.hasPrefix("https:") { request.tlsConfiguration = tls }
            let response: HTTPClientResponse
            do {
                response = try await http.execute(request, deadline: min(deadline, .now() + share))
            } catch {
                failures.append("\(endpoint): \(error)")
                if NIODeadline.now() >= deadline { break }
                continue
            }
            preferred.withLock { $0 = index }
            guard (200..<300).contains(response.status.code) else {
                let text = (try? await response.body.collect(upTo: 64 * 1024)).map { String(buffer: $0) } ?? ""
                let message = (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)))?["message"]?.string
                throw ElectionError.store("\(endpoint)\(path): \(response.status.code) \(message ?? text)")
            }
            return response
        }
        throw ElectionError.store("\(path): no etcd endpoint answered (\(failures.joined(separator: "; ")))")
    }

    // MARK: Encoding

    static func encode(_ key: String) -> String { Data(key.utf8).base64EncodedString() }

    static func keyValue(_ json: JSONValue) -> KeyValue? {
        guard let key = json["key"]?.string.flatMap({ Data(base64Encoded: $0) }) else { return nil }
        return KeyValue(
            key: String(decoding: key, as: UTF8.self),
            value: json["value"]?.string.flatMap { Data(base64Encoded: $0) } ?? Data(),
            createRevision: json.int64("create_revision") ?? 0,
            modRevision: json.int64("mod_revision") ?? 0,
            lease: json.int64("lease") ?? 0
        )
    }
}

/// Faults a test injects into an election: `partitioned` makes every request fail as if the network were cut
/// (a leader that stops renewing without resigning, like a killed or isolated process).
final class ElectionFaults: Sendable {
    private let state = Mutex(false)

    var partitioned: Bool {
        get { state.withLock { $0 } }
        set { state.withLock { $0 = newValue } }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let nanos = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        self = .nanoseconds(nanos.overflow ? .max : nanos.partialValue &+ attoseconds / 1_000_000_000)
    }
}
