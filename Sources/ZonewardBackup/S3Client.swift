import Crypto
import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A small S3-compatible client over URLSession with AWS Signature Version 4, path-style addressing:
/// PUT (single, or multipart above 16 MiB in 16 MiB parts; `MultipartUploadSink` streams them), GET to a
/// file or by ranges, HEAD, DELETE, ListObjectsV2; retries with
/// backoff on network errors and 5xx. Every request carries the SHA-256 of its payload, which S3 checks,
/// so an object that was stored is an object that arrived intact.
public struct S3Client: Sendable {
    public var endpoint: String
    public var bucket: String
    public var region: String
    public var accessKeyId: String
    public var secretAccessKey: String
    public var attempts = 4
    public var multipartThreshold = 16 << 20
    public var partSize = 16 << 20

    public init(endpoint: String, bucket: String, region: String, accessKeyId: String, secretAccessKey: String) {
        self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        self.bucket = bucket
        self.region = region
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
    }

    /// Uploads a local file as `key`: one PUT up to `multipartThreshold`, else a multipart upload of
    /// `partSize` parts read one at a time, aborted on failure.
    public func put(file path: String, key: String) async throws {
        let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
        guard let handle = FileHandle(forReadingAtPath: path) else { throw BackupError.io("cannot read \(path)") }
        defer { try? handle.close() }
        if size <= multipartThreshold {
            try await putObject(key: key, body: try handle.readToEnd() ?? Data())
            return
        }
        let uploadId = try await createMultipartUpload(key: key)
        do {
            var parts: [(number: Int, etag: String)] = []
            while let part = try handle.read(upToCount: partSize), !part.isEmpty {
                let number = parts.count + 1
                parts.append((number, try await uploadPart(key: key, uploadId: uploadId, number: number, body: part)))
            }
            try await completeMultipartUpload(key: key, uploadId: uploadId, parts: parts)
        } catch {
            // Leave no half object behind.
            try? await abortMultipartUpload(key: key, uploadId: uploadId)
            throw error
        }
    }

    /// Downloads `key` into a local file, streamed to disk by URLSession: memory stays bounded whatever the
    /// object's size. `path` is replaced only once the whole object arrived.
    public func get(key: String, to path: String) async throws {
        _ = try await send("GET", key: key, body: Data()) { request in
            let (downloaded, response) = try await URLSession.shared.download(for: request)
            defer { try? FileManager.default.removeItem(at: downloaded) }
            guard let http = response as? HTTPURLResponse else { throw BackupError.io("not an HTTP response") }
            guard (200..<300).contains(http.statusCode) else {
                // An error's body is a short XML document.
                let body = (try? FileHandle(forReadingFrom: downloaded).read(upToCount: 4096)) ?? nil
                throw S3Error.status(http.statusCode, String(decoding: body ?? Data(), as: UTF8.self))
            }
            try? FileManager.default.removeItem(atPath: path)
            try FileManager.default.moveItem(at: downloaded, to: URL(fileURLWithPath: path))
            return (http, Data())
        }
    }

    /// The object's size, or nil when it does not exist.
    public func size(key: String) async throws -> Int? {
        do {
            let (response, _) = try await send("HEAD", key: key, body: Data())
            return Int(response.value(forHTTPHeaderField: "Content-Length") ?? "")
        } catch S3Error.status(404, _) {
            return nil
        }
    }

    /// The object's size and ETag (HEAD); throws when it does not exist.
    public func head(key: String) async throws -> (size: Int, etag: String?) {
        let (response, _) = try await send("HEAD", key: key, body: Data())
        guard let size = Int(response.value(forHTTPHeaderField: "Content-Length") ?? "") else {
            throw BackupError.io("S3 gave no size for \(key)")
        }
        return (size, response.value(forHTTPHeaderField: "ETag"))
    }

    /// Bytes `range` of the object (a ranged GET), only while its ETag is still `etag` when given: the
    /// pieces of one download all come from the same object.
    public func get(key: String, range: Range<Int>, etag: String? = nil) async throws -> Data {
        var headers = ["Range": "bytes=\(range.lowerBound)-\(range.upperBound - 1)"]
        if let etag { headers["If-Match"] = etag }
        let (_, body) = try await send("GET", key: key, headers: headers, body: Data())
        guard body.count == range.count else {
            throw BackupError.io("S3 sent \(body.count) bytes of \(key) for a range of \(range.count)")
        }
        return body
    }

    public func delete(key: String) async throws {
        _ = try await send("DELETE", key: key, body: Data())
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
            let (_, body) = try await send("GET", key: "", query: query, body: Data())
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
            let (_, body) = try await send(
                "GET",
                key: "",
                query: ["uploads": "", "prefix": prefix].merging(markers) { $1 },
                body: Data()
            )
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

    /// Sends one signed request, retrying network errors and 5xx with exponential backoff.
    func send(
        _ method: String,
        key: String,
        query: [String: String] = [:],
        headers: [String: String] = [:],
        body: Data,
        transfer: ((URLRequest) async throws -> (HTTPURLResponse, Data))? = nil
    ) async throws -> (HTTPURLResponse, Data) {
        var delay = Duration.milliseconds(200)
        var lastError: any Error = BackupError.io("no attempt")
        for attempt in 1...attempts {
            do {
                var request = try sign(method: method, key: key, query: query, body: body, date: Date())
                // Not signed (SigV4 signs the headers it lists): Range, If-Match.
                for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
                if let transfer { return try await transfer(request) }
                let (data, response) = try await URLSession.shared.data(for: request)
                guard let http = response as? HTTPURLResponse else { throw BackupError.io("not an HTTP response") }
                if (200..<300).contains(http.statusCode) { return (http, data) }
                let error = S3Error.status(http.statusCode, String(decoding: data, as: UTF8.self))
                if http.statusCode < 500 { throw error }
                lastError = error
            } catch let error as S3Error {
                if case .status(let code, _) = error, code < 500 { throw error }
                lastError = error
            } catch {
                lastError = error
            }
            if attempt < attempts {
                try await Task.sleep(for: delay)
                delay *= 2
            }
        }
        throw BackupError.io("S3 \(method) \(bucket)/\(key) failed after \(attempts) attempts: \(lastError)")
    }

    /// Builds a request signed with AWS Signature Version 4.
    func sign(method: String, key: String, query: [String: String], body: Data, date: Date) throws -> URLRequest {
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
        guard let url = URL(string: endpoint + wirePath + (wireQuery.isEmpty ? "" : "?" + wireQuery)),
            let host = url.host
        else { throw BackupError.io("not a URL: \(endpoint)") }
        let payloadHash = hexString(SHA256.hash(data: body))
        let amzDate = SigV4.amzDate(date)
        let signer = SigV4(accessKeyId: accessKeyId, secretAccessKey: secretAccessKey, region: region, service: "s3")
        let signature = signer.sign(
            method: method,
            path: path,
            query: sortedQuery.map { ($0.key, $0.value) },
            headers: [
                "host": url.port.map { "\(host):\($0)" } ?? host,
                "x-amz-content-sha256": payloadHash,
                "x-amz-date": amzDate,
            ],
            payloadHash: payloadHash,
            date: date
        )
        var request = URLRequest(url: url, timeoutInterval: 120)
        request.httpMethod = method
        request.setValue(payloadHash, forHTTPHeaderField: "x-amz-content-sha256")
        request.setValue(amzDate, forHTTPHeaderField: "x-amz-date")
        request.setValue(signature.authorization, forHTTPHeaderField: "Authorization")
        if method != "GET" && method != "HEAD" && method != "DELETE" {
            // Not form data: URLSession would otherwise label a POST body application/x-www-form-urlencoded.
            request.setValue(
                method == "POST" ? "application/xml" : "application/octet-stream",
                forHTTPHeaderField: "Content-Type"
            )
            request.httpBody = body
        }
        return request
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
    func putObject(key: String, body: Data) async throws {
        _ = try await send("PUT", key: key, body: body)
    }

    func createMultipartUpload(key: String) async throws -> String {
        let (_, created) = try await send("POST", key: key, query: ["uploads": ""], body: Data())
        guard let uploadId = Self.element("UploadId", in: created) else {
            throw BackupError.io("S3 did not return an UploadId for \(key)")
        }
        return uploadId
    }

    func uploadPart(key: String, uploadId: String, number: Int, body: Data) async throws -> String {
        let (response, _) = try await send(
            "PUT",
            key: key,
            query: ["partNumber": String(number), "uploadId": uploadId],
            body: body
        )
        guard let etag = response.value(forHTTPHeaderField: "ETag") else {
            throw BackupError.io("S3 gave no ETag for part \(number) of \(key)")
        }
        return etag
    }

    func completeMultipartUpload(key: String, uploadId: String, parts: [(number: Int, etag: String)]) async throws {
        let list = parts.map { "<Part><PartNumber>\($0.number)</PartNumber><ETag>\($0.etag)</ETag></Part>" }.joined()
        let (_, completed) = try await send(
            "POST",
            key: key,
            query: ["uploadId": uploadId],
            body: Data("<CompleteMultipartUpload>\(list)</CompleteMultipartUpload>".utf8)
        )
        // S3 may answer 200 and still fail the completion, in the body.
        if String(decoding: completed, as: UTF8.self).contains("<Error>") {
            throw BackupError.io("S3 refused to complete the upload of \(key)")
        }
    }

    func abortMultipartUpload(key: String, uploadId: String) async throws {
        _ = try await send("DELETE", key: key, query: ["uploadId": uploadId], body: Data())
    }
}
