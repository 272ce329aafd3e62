import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix

/// A read of the controller's API: the value, the controller that answered, and how old its state was.
public struct ControllerRead<Value: Sendable>: Sendable {
    public var value: Value
    /// The base URL of the controller that answered.
    public var url: String
    /// `X-Zoneward-State-Age`: seconds since a follower's warm copy of the state was taken; nil from the
    /// leader (its state is live) or from a controller that does not say.
    public var stateAge: Double?

    public init(value: Value, url: String, stateAge: Double? = nil) {
        self.value = value
        self.url = url
        self.stateAge = stateAge
    }
}

/// The one client of the controller's HTTP API, for proxies, the CLI and backup runs.
///
/// It knows several controllers (`--controller URL1,URL2,URL3`). Reads go to the last one that answered
/// and move on to the next on a refused connection, a timeout or a 503. Writes go to the leader when one
/// is known, and follow `307 Temporary Redirect` to the `Location` a follower names, with the same method
/// and body (at most 3 hops); the controller that finally answers is remembered as the leader. A write
/// moves on to another controller only when it was certainly not received (the connection was never made,
/// or the answer was 503): a failover must not be sent twice.
///
/// On AsyncHTTPClient rather than URLSession: on Linux, cancelling a task while a URLSession request of
/// it is completing can deadlock inside FoundationNetworking (seen: a proxy that never finished its
/// graceful shutdown), and a proxy cancels its long poll at every shutdown.
public final class ControllerClient: Sendable {
    /// The controllers' base URLs, without a trailing slash, in the order given.
    public let urls: [String]
    let token: String
    let http: HTTPClient
    /// The deadline of every request but the long poll, which gets its `wait` and 10 s more.
    public let timeout: Duration
    private let memory = NIOLockedValueBox(Memory())

    struct Memory {
        /// The index of the controller reads go to first: the last that answered.
        var current = 0
        /// Where writes go first: the controller that last accepted one.
        var leader: String?
    }

    /// The most redirects a write follows.
    public static let maxRedirects = 3
    /// The largest answer read, in bytes.
    public static let maxAnswerBytes = 16 * 1024 * 1024

    /// An HTTP client for controllers: redirects are not followed by AsyncHTTPClient (this client follows
    /// them itself, remembering the leader), and a refused connection fails at once instead of being
    /// retried until the deadline, so that the next controller is asked. The caller shuts it down.
    public static func makeHTTPClient(eventLoopGroup: any EventLoopGroup) -> HTTPClient {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(3))
        )
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: eventLoopGroup, configuration: configuration)
    }

    /// `makeHTTPClient` on the shared event loops, for the process's lifetime: never shut down.
    public static let sharedHTTPClient = makeHTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton)

    /// A client of the controllers at `urls`; throws `invalidURL` naming the bad one.
    public init(
        urls: [String],
        token: String,
        timeout: Duration = .seconds(30),
        http: HTTPClient = ControllerClient.sharedHTTPClient
    ) throws(ControllerClientError) {
        guard !urls.isEmpty else {
            throw ControllerClientError(.invalidURL, url: "", message: "expected at least one controller URL")
        }
        self.urls = try urls.map { url throws(ControllerClientError) in try Self.baseURL(url) }
        self.token = token
        self.timeout = timeout
        self.http = http
    }

    /// A client of the comma-separated controllers in `list` (`http://a:9900,http://b:9900`).
    public convenience init(
        list: String,
        token: String,
        timeout: Duration = .seconds(30),
        http: HTTPClient = ControllerClient.sharedHTTPClient
    ) throws(ControllerClientError) {
        try self.init(urls: try Self.parse(list), token: token, timeout: timeout, http: http)
    }

    /// The URLs of a comma-separated `--controller` value, each checked: `http://` or `https://`, a host,
    /// no query; throws `invalidURL` naming the bad one.
    public static func parse(_ list: String) throws(ControllerClientError) -> [String] {
        let parts = list.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        guard !parts.isEmpty, !parts.allSatisfy(\.isEmpty) else {
            throw ControllerClientError(
                .invalidURL,
                url: list,
                message: "expected one or more controller URLs separated by commas, such as "
                    + "http://10.0.0.1:9900,http://10.0.0.2:9900"
            )
        }
        return try parts.map { part throws(ControllerClientError) in try baseURL(part) }
    }

    /// `url` checked and without a trailing slash.
    static func baseURL(_ url: String) throws(ControllerClientError) -> String {
        let trimmed = url.hasSuffix("/") ? String(url.dropLast()) : url
        guard let parsed = URLComponents(string: trimmed), let scheme = parsed.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = parsed.host, !host.isEmpty,
            parsed.query == nil, parsed.fragment == nil
        else {
            throw ControllerClientError(
                .invalidURL,
                url: url,
                message: "not a controller URL: \"\(url.prefix(200))\" (expected http://HOST:PORT or https://HOST:PORT)"
            )
        }
        return trimmed
    }

    /// The controller writes go to first, once one accepted a write.
    public var leader: String? { memory.withLockedValue { $0.leader } }

    // MARK: Reads

    /// `GET /v1/status`.
    public func status() async throws(ControllerClientError) -> ControllerRead<StatusReport> {
        try await read("/v1/status", as: StatusReport.self)
    }

    /// The path of a `GET /v1/snapshot` long poll.
    public static func snapshotPath(after: Int, boot: String?, wait: Duration) -> String {
        var cursor = SnapshotCursor(boot: boot, version: after).query
        if wait > .zero { cursor += "&wait=\(durationText(wait))" }
        return "/v1/snapshot?\(cursor)"
    }

    /// `GET /v1/snapshot`: answered once the controller has a snapshot after version `after` of `boot`
    /// (at once by a controller of another boot), or after `wait` with the current one.
    public func snapshot(
        after: Int = 0,
        boot: String? = nil,
        wait: Duration = .zero
    ) async throws(ControllerClientError) -> ControllerRead<ControlSnapshot> {
        try await read(
            Self.snapshotPath(after: after, boot: boot, wait: wait),
            as: ControlSnapshot.self,
            timeout: wait + .seconds(10)
        )
    }

    /// `GET /v1/snapshot` after `cursor`.
    public func snapshot(
        after cursor: SnapshotCursor,
        wait: Duration
    ) async throws(ControllerClientError) -> ControllerRead<ControlSnapshot> {
        try await snapshot(after: cursor.version, boot: cursor.boot, wait: wait)
    }

    /// `GET /v1/operations`: the newest `limit` operations, newest first.
    public func operations(limit: Int = 20) async throws(ControllerClientError) -> [FailoverOperation] {
        try await read("/v1/operations?limit=\(limit)", as: [FailoverOperation].self).value
    }

    /// `GET /v1/operations/ID`: an operation with its steps.
    public func operation(_ id: Int64) async throws(ControllerClientError) -> OperationReport {
        try await read("/v1/operations/\(id)", as: OperationReport.self).value
    }

    /// `GET /v1/backups`: the backup catalog, newest first, of one job or all.
    public func backups(
        job: String? = nil,
        limit: Int? = nil
    ) async throws(ControllerClientError) -> ControllerRead<[BackupRecord]> {
        var query: [String] = []
        if let job { query.append("job=\(Self.escape(job))") }
        if let limit { query.append("limit=\(limit)") }
        return try await read(
            "/v1/backups" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")),
            as: [BackupRecord].self
        )
    }

    /// `GET /v1/backups/ID`.
    public func backup(_ id: String) async throws(ControllerClientError) -> BackupRecord {
        try await read("/v1/backups/\(Self.escape(id))", as: BackupRecord.self).value
    }

    /// `GET /v1/drills`: drill results, newest first, optionally of one kind and target.
    public func drills(
        kind: DrillRecord.Kind? = nil,
        target: String? = nil,
        limit: Int? = nil
    ) async throws(ControllerClientError) -> [DrillRecord] {
        var query: [String] = []
        if let kind { query.append("kind=\(kind.rawValue)") }
        if let target { query.append("target=\(Self.escape(target))") }
        if let limit { query.append("limit=\(limit)") }
        return try await read(
            "/v1/drills" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")),
            as: [DrillRecord].self
        ).value
    }

    // MARK: Writes

    /// `POST /v1/drills`: records a finished drill (201), answered once its copy is durable.
    public func recordDrill(_ drill: DrillRecord) async throws(ControllerClientError) -> DrillRecord {
        try decode(DrillRecord.self, try await write("/v1/drills", body: drill))
    }

    /// `POST /v1/reports`: one proxy's demand.
    public func report(_ report: DemandReport) async throws(ControllerClientError) {
        _ = try await write("/v1/reports", body: report, timeout: .seconds(5))
    }

    /// `POST /v1/failover`: the plan, with `operation` set when a change was started (202), or `refused`
    /// when a guard refused (409). A dry run changes nothing.
    public func failover(_ request: FailoverRequest) async throws(ControllerClientError) -> FailoverPlan {
        let answer = try await write("/v1/failover", body: request, accepting: [409])
        if answer.status == 409,
            (try? Self.decoder.decode(FailoverPlan.self, from: Data(answer.body.readableBytesView))) == nil
        {
            // Not a guard's refusal but a conflict in the state (another operation runs): its message.
            throw ControllerClientError(.refused, url: answer.url, status: 409, message: Self.message(answer))
        }
        return try decode(FailoverPlan.self, answer)
    }

    /// `POST /v1/drains`: drains a zone for a while.
    public func drain(_ request: DrainRequest) async throws(ControllerClientError) -> ZoneDrain {
        try decode(ZoneDrain.self, try await write("/v1/drains", body: request))
    }

    /// `POST /v1/operations/ID/resume`: the controller resumes an interrupted operation.
    public func resume(_ id: Int64) async throws(ControllerClientError) -> OperationReport {
        try decode(OperationReport.self, try await write("/v1/operations/\(id)/resume", body: [String: String]()))
    }

    /// `POST /v1/backups`: records a backup run as started (201).
    public func beginBackup(_ begin: BackupBegin) async throws(ControllerClientError) -> BackupStarted {
        try decode(BackupStarted.self, try await write("/v1/backups", body: begin))
    }

    /// `POST /v1/backups/ID/heartbeat`: the run is alive.
    public func heartbeatBackup(_ id: String) async throws(ControllerClientError) {
        _ = try await write("/v1/backups/\(Self.escape(id))/heartbeat", body: [String: String]())
    }

    /// `POST /v1/backups/ID/complete`: every object written and confirmed.
    public func completeBackup(
        _ id: String,
        _ completion: BackupCompletion
    ) async throws(ControllerClientError) -> BackupRecord {
        try decode(BackupRecord.self, try await write("/v1/backups/\(Self.escape(id))/complete", body: completion))
    }

    /// `POST /v1/backups/ID/fail`: the run failed, and why.
    public func failBackup(_ id: String, error: String) async throws(ControllerClientError) -> BackupRecord {
        try decode(
            BackupRecord.self,
            try await write("/v1/backups/\(Self.escape(id))/fail", body: BackupFailure(error: error))
        )
    }

    // MARK: Transport

    /// One HTTP answer.
    struct Answer {
        var status: Int
        var headers: HTTPHeaders
        var body: ByteBuffer
        /// The full URL that answered.
        var url: String
        /// The base URL of the controller that answered.
        var base: String
    }

    /// What became of one request.
    enum Outcome {
        case answered(Answer)
        /// The request was certainly not received: the connection was never made.
        case notSent(String)
        /// It may have been received: a timeout or a connection lost after sending.
        case lost(String)
    }

    /// A GET to the last controller that answered, then to each other one in turn.
    func read<T: Decodable & Sendable>(
        _ path: String,
        as type: T.Type,
        timeout: Duration? = nil
    ) async throws(ControllerClientError) -> ControllerRead<T> {
        let first = memory.withLockedValue { $0.current }
        var failures: [String] = []
        for offset in urls.indices {
            let index = (first + offset) % urls.count
            let base = urls[index]
            switch await send(.GET, base: base, url: base + path, body: nil, timeout: timeout ?? self.timeout) {
            case .answered(let answer) where answer.status == 503:
                failures.append("\(answer.url): 503 \(Self.message(answer))")
            case .answered(let answer):
                memory.withLockedValue { $0.current = index }
                let value = try decode(T.self, try Self.successful(answer))
                return ControllerRead(value: value, url: base, stateAge: Self.stateAge(answer.headers))
            case .notSent(let reason), .lost(let reason):
                failures.append("\(base + path): \(reason)")
            }
            if Task.isCancelled { break }
        }
        throw ControllerClientError(
            .unreachable,
            url: urls.joined(separator: ","),
            message: failures.joined(separator: "; ")
        )
    }

    /// A POST to the leader (or the last controller that answered), following redirects to the leader.
    func write(
        _ path: String,
        body: some Encodable,
        accepting: Set<Int> = [],
        timeout: Duration? = nil
    ) async throws(ControllerClientError) -> Answer {
        let data: Data
        do {
            data = try Self.encoder.encode(body)
        } catch {
            throw ControllerClientError(.invalidAnswer, url: path, message: "cannot encode the request: \(error)")
        }
        let (leader, current) = memory.withLockedValue { ($0.leader, $0.current) }
        var candidates = [leader ?? urls[current]]
        for offset in urls.indices {
            let url = urls[(current + offset) % urls.count]
            if !candidates.contains(url) { candidates.append(url) }
        }
        var failures: [String] = []
        for base in candidates {
            if Task.isCancelled { break }
            var target = (base: base, url: base + path)
            var hops = 0
            while true {
                let outcome = await send(
                    .POST,
                    base: target.base,
                    url: target.url,
                    body: data,
                    timeout: timeout ?? self.timeout
                )
                guard case .answered(let answer) = outcome else {
                    if case .lost(let reason) = outcome {
                        // It may have been received: asking another controller could do it twice.
                        throw ControllerClientError(
                            .unreachable,
                            url: target.url,
                            message: "\(reason); it may have been received: check before sending it again"
                        )
                    }
                    if case .notSent(let reason) = outcome { failures.append("\(target.url): \(reason)") }
                    memory.withLockedValue { if $0.leader == target.base { $0.leader = nil } }
                    break
                }
                if answer.status == 307 || answer.status == 308 {
                    guard hops < Self.maxRedirects else {
                        throw ControllerClientError(
                            .invalidAnswer,
                            url: answer.url,
                            status: answer.status,
                            message: "more than \(Self.maxRedirects) redirects; no leader found"
                        )
                    }
                    target = try Self.redirect(answer, path: path)
                    hops += 1
                    continue
                }
                if answer.status == 503 {
                    failures.append("\(answer.url): 503 \(Self.message(answer))")
                    break
                }
                if (200..<300).contains(answer.status) || accepting.contains(answer.status) {
                    memory.withLockedValue { $0.leader = target.base }
                    return answer
                }
                return try Self.successful(answer)
            }
        }
        throw ControllerClientError(
            .unreachable,
            url: candidates.joined(separator: ","),
            message: failures.joined(separator: "; ")
        )
    }

    /// Where a 307 sends a write: its `Location`, absolute or relative to the URL that answered; the
    /// leader's base URL is the location without `path`.
    static func redirect(_ answer: Answer, path: String) throws(ControllerClientError) -> (base: String, url: String) {
        guard let location = answer.headers.first(name: "Location"),
            let resolved = URL(string: location, relativeTo: URL(string: answer.url))?.absoluteURL,
            let scheme = resolved.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = resolved.host, !host.isEmpty
        else {
            throw ControllerClientError(
                .invalidAnswer,
                url: answer.url,
                status: answer.status,
                message: "a redirect without a usable Location (\(answer.headers.first(name: "Location") ?? "none"))"
            )
        }
        let url = resolved.absoluteString
        let pathOnly = path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path
        let base: String
        if let range = url.range(of: pathOnly, options: .backwards) {
            base = String(url[..<range.lowerBound])
        } else {
            base = "\(scheme)://\(host)\(resolved.port.map { ":\($0)" } ?? "")"
        }
        return (base, url)
    }

    /// Sends one request; never throws.
    func send(_ method: HTTPMethod, base: String, url: String, body: Data?, timeout: Duration) async -> Outcome {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Accept", value: "application/json")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        do {
            let response = try await http.execute(request, timeout: TimeAmount(timeout))
            let bytes = try await response.body.collect(upTo: Self.maxAnswerBytes)
            return .answered(
                Answer(status: Int(response.status.code), headers: response.headers, body: bytes, url: url, base: base)
            )
        } catch {
            let reason = Self.describe(error)
            return Self.certainlyNotSent(error) ? .notSent(reason) : .lost(reason)
        }
    }

    /// Whether `error` means the connection was never made, so the request was not received.
    static func certainlyNotSent(_ error: any Error) -> Bool {
        if error is NIOConnectionError { return true }
        if let error = error as? HTTPClientError, error == .connectTimeout || error == .invalidURL {
            return true
        }
        if let error = error as? ChannelError, case .connectTimeout = error { return true }
        if let error = error as? IOError, [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH].contains(error.errnoCode) {
            return true
        }
        return false
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded: return "timed out"
            case .connectTimeout: return "connection timed out"
            case .remoteConnectionClosed: return "connection closed before an answer"
            default: return "\(error)"
            }
        }
        if let error = error as? NIOConnectionError {
            if let first = error.connectionErrors.first { return "cannot connect: \(describe(first.error))" }
            if let dns = error.dnsAAAAError ?? error.dnsAError { return "cannot resolve \(error.host): \(dns)" }
            return "cannot connect to \(error.host):\(error.port)"
        }
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)).lowercased() }
        return "\(error)"
    }

    /// The answer when its status is a success, else `refused` with the server's message.
    static func successful(_ answer: Answer) throws(ControllerClientError) -> Answer {
        guard (200..<300).contains(answer.status) else {
            throw ControllerClientError(.refused, url: answer.url, status: answer.status, message: message(answer))
        }
        return answer
    }

    /// The server's `{"error": ...}` message, or the status's reason.
    static func message(_ answer: Answer) -> String {
        if let object = try? JSONDecoder().decode([String: String].self, from: Data(answer.body.readableBytesView)),
            let message = object["error"]
        {
            return message
        }
        let text = String(buffer: answer.body).trimmingCharacters(in: .whitespacesAndNewlines)
        let reason = HTTPResponseStatus(statusCode: answer.status).reasonPhrase
        return text.isEmpty ? reason : "\(reason): \(text.prefix(200))"
    }

    static func stateAge(_ headers: HTTPHeaders) -> Double? {
        headers.first(name: "X-Zoneward-State-Age").flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
    }

    func decode<T: Decodable>(_ type: T.Type, _ answer: Answer) throws(ControllerClientError) -> T {
        do {
            return try Self.decoder.decode(T.self, from: Data(answer.body.readableBytesView))
        } catch {
            throw ControllerClientError(
                .invalidAnswer,
                url: answer.url,
                status: answer.status,
                message: "not the expected \(T.self): \(error)"
            )
        }
    }

    /// Dates as the API writes them (RFC 3339 UTC), or as seconds.
    static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            if let seconds = try? container.decode(Double.self) { return Date(timeIntervalSinceReferenceDate: seconds) }
            return try Date(container.decode(String.self), strategy: .iso8601)
        }
        return decoder
    }

    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }

    static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~")))
            ?? text
    }

    /// `30s`, or `250ms` below a second.
    static func durationText(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        if attoseconds == 0 { return "\(seconds)s" }
        return "\(seconds * 1000 + attoseconds / 1_000_000_000_000_000)ms"
    }
}
