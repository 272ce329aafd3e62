import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A small S3-compatible client over AsyncHTTPClient with AWS Signature Version 4, path-style addressing:
/// PUT (single, or multipart above 16 MiB in 16 MiB parts; `MultipartUploadSink` streams them), GET to a
/// file or as a stream, HEAD, DELETE, ListObjectsV2; retries with backoff on network errors and 5xx.
/// Every request carries the SHA-256 of its payload, which S3 checks, so an object that was stored is an
/// object that arrived intact. Uploads stream from local files (`FileRange`) and downloads into files or
/// the decoder, so no object or part is ever held whole in memory.
public struct S3Client: Sendable {
    public var endpoint: String
    public var bucket: String
    public var region: String
    public var accessKeyId: String
    public var secretAccessKey: String
    public var attempts = 4
    public var multipartThreshold = 16 << 20
    public var partSize = 16 << 20
    /// The longest a request may take until S3's answer begins (an upload's body included); once it has
    /// begun, a body that stalls for 120 s fails instead.
    public var deadline: TimeAmount = .minutes(15)

    public init(endpoint: String, bucket: String, region: String, accessKeyId: String, secretAccessKey: String) {
        self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        self.bucket = bucket
        self.region = region
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
    }

    /// The process's client for S3, never shut down: no redirects, no decompression (an object's bytes are
    /// what is stored), 10 s to connect, 120 s without a byte read fails a request.
    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(10), read: .seconds(120))
        )
        configuration.decompression = .disabled
        // A refused connection fails the attempt at once (`retrying` backs off), instead of AsyncHTTPClient
        // retrying it until the request's deadline.
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
    }()

    /// The largest answer `send` reads into memory: S3's XML documents, never an object's bytes.
    static let maximumAnswer = 16 << 20

    /// Uploads a local file as `key`: one PUT up to `multipartThreshold`, else a multipart upload of
    /// `partSize` parts streamed from the file one at a time, aborted on failure.
    public func put(file path: String, key: String) async throws {
        let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
        if size <= multipartThreshold {
            try await putObject(key: key, body: try await FileRange.hashing(path: path, offset: 0, count: size))
            return
        }
        let uploadId = try await createMultipartUpload(key: key)
        do {
            var parts: [(number: Int, etag: String)] = []
            var offset = 0
            while offset < size {
                let part = try await FileRange.hashing(path: path, offset: offset, count: min(partSize, size - offset))
                let number = parts.count + 1
                parts.append((number, try await uploadPart(key: key, uploadId: uploadId, number: number, body: part)))
                offset += part.count
            }
            try await completeMultipartUpload(key: key, uploadId: uploadId, parts: parts)
        } catch {
            // Leave no half object behind.
            try? await abortMultipartUpload(key: key, uploadId: uploadId)
            throw error
        }
    }

    /// Downloads `key` into a local file (mode 600), streamed to disk: memory stays bounded whatever the
    /// object's size. `path` is replaced only once the whole object arrived.
    public func get(key: String, to path: String) async throws {
        let partial = path + ".download"
        defer { try? FileManager.default.removeItem(atPath: partial) }
        try await retrying("GET", key: key) {
            let response = try await execute("GET", key: key)
            let file = try createPrivateFile(partial)
            defer { try? file.close() }
            for try await piece in response.body {
                try piece.withUnsafeReadableBytes { try file.write(contentsOf: $0) }
            }
        }
        guard rename(partial, path) == 0 else {
            throw BackupError.io("cannot move the download into \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// The object from byte `offset` to its end as one GET (a Range GET past the first byte), only while its
    /// ETag is still `etag` when given (If-Match), so pieces of one download resumed after a break all come
    /// from the same object. Each piece is handed to `deliver` as it arrives, and the next is read only once
    /// `deliver` returned: a slow reader holds the download back down to the socket. Not retried: the caller
    /// resumes from the byte it reached.
    func stream(
        key: String,
        from offset: Int,
        etag: String?,
        deliver: @Sendable (ByteBuffer) async throws -> Void
    ) async throws {
        var headers: [String: String] = [:]
        if offset > 0 { headers["Range"] = "bytes=\(offset)-" }
        if let etag { headers["If-Match"] = etag }
        let response = try await execute("GET", key: key, headers: headers)
        if offset > 0 && response.status != .partialContent {
            throw BackupError.io(
                "S3 answered a GET of \(key) from byte \(offset) with \(response.status.code), not 206"
            )
        }
        for try await piece in response.body {
            try await deliver(piece)
        }
    }

    /// The object's size, or nil when it does not exist.
    public func size(key: String) async throws -> Int? {
        do {
            return Int(try await send("HEAD", key: key).headers.first(name: "Content-Length") ?? "")
        } catch S3Error.status(404, _) {
            return nil
        }
    }

    /// The object's size and ETag (HEAD); throws when it does not exist.
    public func head(key: String) async throws -> (size: Int, etag: String?) {
        let headers = try await send("HEAD", key: key).headers
        guard let size = Int(headers.first(name: "Content-Length") ?? "") else {
            throw BackupError.io("S3 gave no size for \(key)")
        }
        return (size, headers.first(name: "ETag"))
    }

    public func delete(key: String) async throws {
        _ = try await send("DELETE", key: key)
    }

    /// One object in a listing.
    public struct ListedObject: Sendable, Equatable {
        public var key: String
        public var size: Int
    }

    /// Every object whose key starts with `prefix` (ListObjectsV2, following continuation tokens until the
    /// listing is complete), in S3's order: by key.
    public func list(prefix: String, pageSize: Int = 1000) async throws -> [ListedObject] {
        var objects: [ListedObject] = []
        var token: String?
        repeat {
            var query = ["list-type": "2", "prefix": prefix, "max-keys": String(pageSize)]
            if let token { query["continuation-token"] = token }
            let body = try await send("GET", key: "", query: query).body
            let page = try Self.parseListing(body)
            objects += page.objects
            token = page.nextToken
        } while token != nil
        return objects
    }

    /// The multipart uploads open under `prefix` (ListMultipartUploads, every page).
    public func listMultipartUploads(prefix: String) async throws -> [(key: String, uploadId: String)] {
        var uploads: [(key: String, uploadId: String)] = []
        var markers: [String: String] = [:]
        for _ in 0..<1000 {
            let body = try await send(
                "GET",
                key: "",
                query: ["uploads": "", "prefix": prefix].merging(markers) { $1 }
            ).body
            let text = String(decoding: body, as: UTF8.self)
            guard text.contains("<ListMultipartUploadsResult") else {
                throw BackupError.io("S3 answered a listing of uploads with something else: \(text.prefix(300))")
            }
            for part in text.components(separatedBy: "<Upload>").dropFirst() {
                let entry = Data(part.utf8)
                guard let key = Self.element("Key", in: entry), let id = Self.element("UploadId", in: entry) else {
                    continue
                }
                uploads.append((Self.unescapeXML(key), Self.unescapeXML(id)))
            }
            guard Self.element("IsTruncated", in: body) == "true",
                let keyMarker = Self.element("NextKeyMarker", in: body)
            else { break }
            markers = ["key-marker": Self.unescapeXML(keyMarker)]
            if let idMarker = Self.element("NextUploadIdMarker", in: body) {
                markers["upload-id-marker"] = Self.unescapeXML(idMarker)
            }
        }
        return uploads
    }

    /// Reads one ListObjectsV2 result page: its objects, and the token of the next page when it is truncated.
    static func parseListing(_ data: Data) throws -> (objects: [ListedObject], nextToken: String?) {
        let text = String(decoding: data, as: UTF8.self)
        guard text.contains("<ListBucketResult") else {
            throw BackupError.io("S3 answered a listing with something else: \(text.prefix(300))")
        }
        var objects: [ListedObject] = []
        for part in text.components(separatedBy: "<Contents>").dropFirst() {
            let entry = Data(part.utf8)
            guard let key = element("Key", in: entry) else { continue }
            objects.append(ListedObject(key: unescapeXML(key), size: Int(element("Size", in: entry) ?? "") ?? 0))
        }
        let truncated = element("IsTruncated", in: data) == "true"
        let token = element("NextContinuationToken", in: data).map(unescapeXML)
        if truncated && token == nil {
            throw BackupError.io("S3 said the listing is truncated but gave no continuation token")
        }
        return (objects, truncated ? token : nil)
    }

    /// Undoes XML's escapes in element text: the five named entities and numeric references.
    static func unescapeXML(_ text: String) -> String {
        guard text.contains("&") else { return text }
        var result = ""
        var rest = Substring(text)
        while let amp = rest.firstIndex(of: "&") {
            result += rest[..<amp]
            guard let semicolon = rest[amp...].firstIndex(of: ";") else { break }
            let entity = rest[rest.index(after: amp)..<semicolon]
            let named = ["amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'"]
            if let value = named[String(entity)] {
                result += value
            } else if entity.hasPrefix("#x"), let code = UInt32(entity.dropFirst(2), radix: 16),
                let scalar = Unicode.Scalar(code)
            {
                result.unicodeScalars.append(scalar)
            } else if entity.hasPrefix("#"), let code = UInt32(entity.dropFirst()), let scalar = Unicode.Scalar(code) {
                result.unicodeScalars.append(scalar)
            } else {
                result += rest[amp...semicolon]
            }
            rest = rest[rest.index(after: semicolon)...]
        }
        return result + rest
    }

    enum S3Error: Error, CustomStringConvertible {
        case status(Int, String)

        var description: String {
            switch self {
            case .status(let code, let body): return "S3 answered \(code): \(body.prefix(300))"
            }
        }
    }

    /// What a request sends: nothing, bytes in memory (an XML document), or a range of a local file,
    /// streamed from disk as the connection takes it.
    enum Payload: Sendable {
        case empty
        case data(Data)
        case file(FileRange)

        /// The hex SHA-256 SigV4 signs.
        var sha256: String {
            switch self {
            case .empty: hexString(SHA256.hash(data: Data()))
            case .data(let data): hexString(SHA256.hash(data: data))
            case .file(let range): range.sha256
            }
        }
    }

    /// One answer read whole: status, headers and a short body.
    struct Answer: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: Data
    }

    /// Sends one signed request and reads its answer (at most `maximumAnswer` bytes), retrying network
    /// errors and 5xx with exponential backoff.
    func send(
        _ method: String,
        key: String,
        query: [String: String] = [:],
        headers: [String: String] = [:],
        payload: Payload = .empty
    ) async throws -> Answer {
        try await retrying(method, key: key) {
            try await sendOnce(method, key: key, query: query, headers: headers, payload: payload)
        }
    }

    /// One attempt of `send`.
    func sendOnce(
        _ method: String,
        key: String,
        query: [String: String] = [:],
        headers: [String: String] = [:],
        payload: Payload = .empty
    ) async throws -> Answer {
        let response = try await execute(method, key: key, query: query, headers: headers, payload: payload)
        let body = try await response.body.collect(upTo: Self.maximumAnswer)
        return Answer(status: Int(response.status.code), headers: response.headers, body: Data(body.readableBytesView))
    }

    /// Runs `body` up to `attempts` times while it fails with a network error or a 5xx, with exponential
    /// backoff; a 4xx, or the task's cancellation, ends it at once.
    func retrying<T: Sendable>(_ method: String, key: String, _ body: () async throws -> T) async throws -> T {
        var delay = Duration.milliseconds(200)
        var lastError: any Error = BackupError.io("no attempt")
        for attempt in 1...max(1, attempts) {
            do {
                return try await body()
            } catch let error as S3Error {
                if case .status(let code, _) = error, code < 500 { throw error }
                lastError = error
            } catch {
                lastError = error
            }
            if Task.isCancelled { throw CancellationError() }
            if attempt < attempts {
                try await Task.sleep(for: delay)
                delay *= 2
            }
        }
        throw BackupError.io("S3 \(method) \(bucket)/\(key) failed after \(attempts) attempts: \(lastError)")
    }

    /// Sends one signed request; returns once S3's answer began, with its body still to read. A status
    /// other than 2xx throws `S3Error.status` with the start of S3's explanation.
    func execute(
        _ method: String,
        key: String,
        query: [String: String] = [:],
        headers: [String: String] = [:],
        payload: Payload = .empty
    ) async throws -> HTTPClientResponse {
        let signed = try sign(method: method, key: key, query: query, payloadHash: payload.sha256, date: Date())
        var request = HTTPClientRequest(url: signed.url)
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in signed.headers { request.headers.add(name: name, value: value) }
        // Not signed (SigV4 signs the headers it lists): Range, If-Match.
        for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
        if method != "GET" && method != "HEAD" && method != "DELETE" {
            request.headers.add(
                name: "Content-Type",
                value: method == "POST" ? "application/xml" : "application/octet-stream"
            )
            switch payload {
            case .empty: request.body = .bytes(ByteBuffer())
            case .data(let data): request.body = .bytes(ByteBuffer(bytes: data))
            case .file(let range): request.body = .stream(FileChunks(range), length: .known(Int64(range.count)))
            }
        }
        let response = try await Self.http.execute(request, timeout: deadline)
        guard (200..<300).contains(Int(response.status.code)) else {
            // An error's body is a short XML document.
            let body = (try? await response.body.collect(upTo: 64 << 10)) ?? ByteBuffer()
            throw S3Error.status(Int(response.status.code), String(buffer: body))
        }
        return response
    }

    /// A request signed with AWS Signature Version 4: where it goes and the headers that say so.
    struct SignedRequest: Sendable {
        var url: String
        /// Host, x-amz-content-sha256, x-amz-date and Authorization.
        var headers: [String: String]
    }

    /// Signs a request whose payload has the SHA-256 `payloadHash` (hex).
    func sign(
        method: String,
        key: String,
        query: [String: String],
        payloadHash: String,
        date: Date
    ) throws
        -> SignedRequest
    {
        // The bucket itself (a listing) is `/bucket`; an object is `/bucket/key`.
        let path = key.isEmpty ? "/\(bucket)" : "/\(bucket)/\(key)"
        let sortedQuery = query.sorted { $0.key < $1.key }
        // On the wire a valueless parameter is `?uploads`; in the canonical request it is `uploads=`.
        let wireQuery = sortedQuery.map {
            $0.value.isEmpty ? SigV4.encode($0.key) : "\(SigV4.encode($0.key))=\(SigV4.encode($0.value))"
        }
        .joined(separator: "&")
        let wirePath = path.split(separator: "/", omittingEmptySubsequences: false)
            .map { SigV4.encode(String($0)) }.joined(separator: "/")
        let url = endpoint + wirePath + (wireQuery.isEmpty ? "" : "?" + wireQuery)
        guard let parsed = URL(string: url), let host = parsed.host else {
            throw BackupError.io("not a URL: \(endpoint)")
        }
        let hostHeader = parsed.port.map { "\(host):\($0)" } ?? host
        let amzDate = SigV4.amzDate(date)
        let signer = SigV4(accessKeyId: accessKeyId, secretAccessKey: secretAccessKey, region: region, service: "s3")
        let signature = signer.sign(
            method: method,
            path: path,
            query: sortedQuery.map { ($0.key, $0.value) },
            headers: ["host": hostHeader, "x-amz-content-sha256": payloadHash, "x-amz-date": amzDate],
            payloadHash: payloadHash,
            date: date
        )
        // Host as signed: AsyncHTTPClient would otherwise write its own, which may leave out a default port.
        return SignedRequest(
            url: url,
            headers: [
                "Host": hostHeader, "x-amz-content-sha256": payloadHash, "x-amz-date": amzDate,
                "Authorization": signature.authorization,
            ]
        )
    }

    static func element(_ name: String, in data: Data) -> String? {
        let text = String(decoding: data, as: UTF8.self)
        guard let start = text.range(of: "<\(name)>"),
            let end = text.range(of: "</\(name)>", range: start.upperBound..<text.endIndex)
        else { return nil }
        return String(text[start.upperBound..<end.lowerBound])
    }
}

extension S3Client: MultipartStore {
    func putObject(key: String, body: FileRange) async throws {
        _ = try await send("PUT", key: key, payload: .file(body))
    }

    func createMultipartUpload(key: String) async throws -> String {
        let created = try await send("POST", key: key, query: ["uploads": ""]).body
        guard let uploadId = Self.element("UploadId", in: created) else {
            throw BackupError.io("S3 did not return an UploadId for \(key)")
        }
        return uploadId
    }

    func uploadPart(key: String, uploadId: String, number: Int, body: FileRange) async throws -> String {
        let answer = try await send(
            "PUT",
            key: key,
            query: ["partNumber": String(number), "uploadId": uploadId],
            payload: .file(body)
        )
        guard let etag = answer.headers.first(name: "ETag") else {
            throw BackupError.io("S3 gave no ETag for part \(number) of \(key)")
        }
        return etag
    }

    /// CompleteMultipartUpload, retried like every request, with two cases S3 documents:
    /// - a 200 whose body is an `<Error>` (S3 failed after it began answering) is retried;
    /// - the answer to an attempt can be lost after S3 completed the upload. The next attempt then finds no
    ///   such upload (404 `NoSuchUpload`). The upload counts as completed when the object under `key` is the
    ///   one these parts make: its ETag is the multipart ETag of the parts (`multipartETag`). Anything else is
    ///   the failure it was.
    func completeMultipartUpload(key: String, uploadId: String, parts: [(number: Int, etag: String)]) async throws {
        let list = parts.map { "<Part><PartNumber>\($0.number)</PartNumber><ETag>\($0.etag)</ETag></Part>" }.joined()
        let payload = Payload.data(Data("<CompleteMultipartUpload>\(list)</CompleteMultipartUpload>".utf8))
        var attempt = 0
        try await retrying("POST", key: key) {
            attempt += 1
            do {
                let answer = try await sendOnce("POST", key: key, query: ["uploadId": uploadId], payload: payload)
                let text = String(decoding: answer.body, as: UTF8.self)
                if text.contains("<Error>") {
                    throw BackupError.io("S3 failed to complete the upload of \(key): \(text.prefix(300))")
                }
            } catch S3Error.status(404, let text) where attempt > 1 && text.contains("NoSuchUpload") {
                guard let expected = Self.multipartETag(parts), try await etag(key: key) == expected else {
                    throw S3Error.status(404, text)
                }
            }
        }
    }

    /// The ETag S3 gives an object completed from these parts: the MD5 of the parts' MD5s (their ETags, as
    /// bytes) in order, then `-` and the number of parts. Nil when a part's ETag is not an MD5 in hex.
    static func multipartETag(_ parts: [(number: Int, etag: String)]) -> String? {
        var digests: [UInt8] = []
        for part in parts {
            let hex = Array(part.etag.utf8.filter { $0 != UInt8(ascii: "\"") })
            guard hex.count == 32 else { return nil }
            for index in stride(from: 0, to: 32, by: 2) {
                guard let byte = UInt8(String(decoding: hex[index..<(index + 2)], as: UTF8.self), radix: 16) else {
                    return nil
                }
                digests.append(byte)
            }
        }
        return "\(hexString(Insecure.MD5.hash(data: digests)))-\(parts.count)"
    }

    /// The object's ETag without its quotes, or nil when it does not exist. One attempt: the caller retries.
    func etag(key: String) async throws -> String? {
        do {
            let answer = try await sendOnce("HEAD", key: key)
            return answer.headers.first(name: "ETag").map { $0.filter { $0 != "\"" } }
        } catch S3Error.status(404, _) {
            return nil
        }
    }

    func abortMultipartUpload(key: String, uploadId: String) async throws {
        _ = try await send("DELETE", key: key, query: ["uploadId": uploadId])
    }

    func deleteObject(key: String) async throws {
        try await delete(key: key)
    }
}

/// Bytes `offset ..< offset + count` of a local file, with their SHA-256 (hex), which SigV4 signs: what an
/// upload sends, streamed from disk.
struct FileRange: Sendable {
    var path: String
    var offset: Int
    var count: Int
    var sha256: String
    /// The file already open, read instead of opening `path` (which may be unlinked meanwhile).
    var file: RawFile?

    /// The range with its SHA-256, read off the Swift concurrency pool.
    static func hashing(path: String, offset: Int, count: Int) async throws -> FileRange {
        try await NIOThreadPool.singleton.runIfActive {
            let file = try RawFile(reading: path)
            var hasher = SHA256()
            var done = 0
            while done < count {
                let piece = try file.read(at: offset + done, upTo: min(1 << 20, count - done))
                guard !piece.isEmpty else { throw BackupError.io("\(path) ended before byte \(offset + count)") }
                hasher.update(data: piece)
                done += piece.count
            }
            return FileRange(path: path, offset: offset, count: count, sha256: hexString(hasher.finalize()))
        }
    }

    /// The bytes, read at once (blocking).
    func read() throws -> Data {
        let file = try self.file ?? RawFile(reading: path)
        var data = Data()
        while data.count < count {
            let piece = try file.read(at: offset + data.count, upTo: count - data.count)
            guard !piece.isEmpty else { throw BackupError.io("\(path) ended before byte \(offset + count)") }
            data.append(contentsOf: piece)
        }
        return data
    }
}

/// A `FileRange` as a request body: 256 KiB pieces read off the Swift concurrency pool as the connection
/// asks for them, so an upload holds no more than a piece or two in memory.
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    static let pieceSize = 256 << 10

    let range: FileRange

    init(_ range: FileRange) {
        self.range = range
    }

    func makeAsyncIterator() -> Iterator {
        Iterator(range: range)
    }

    struct Iterator: AsyncIteratorProtocol {
        let range: FileRange
        var sent = 0
        var file: RawFile?

        mutating func next() async throws -> ByteBuffer? {
            guard sent < range.count else { return nil }
            let file = try self.file ?? range.file ?? RawFile(reading: range.path)
            self.file = file
            let (offset, count, path) = (
                range.offset + sent, Swift.min(FileChunks.pieceSize, range.count - sent), range.path
            )
            let piece = try await NIOThreadPool.singleton.runIfActive { try file.read(at: offset, upTo: count) }
            guard piece.count == count else {
                throw BackupError.io("\(path) ended before byte \(offset + count): changed while it was uploaded")
            }
            sent += count
            return ByteBuffer(bytes: piece)
        }
    }
}
