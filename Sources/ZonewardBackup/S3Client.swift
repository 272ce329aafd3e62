import Crypto
import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A small S3-compatible client over URLSession with AWS Signature Version 4, path-style addressing:
/// PUT (single, or multipart above 64 MiB in 16 MiB parts), GET to a file, HEAD, DELETE; retries with
/// backoff on network errors and 5xx. Every request carries the SHA-256 of its payload, which S3 checks,
/// so an object that was stored is an object that arrived intact.
public struct S3Client: Sendable {
    public var endpoint: String
    public var bucket: String
    public var region: String
    public var accessKeyId: String
    public var secretAccessKey: String
    public var attempts = 4
    public var multipartThreshold = 64 << 20
    public var partSize = 16 << 20

    public init(endpoint: String, bucket: String, region: String, accessKeyId: String, secretAccessKey: String) {
        self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        self.bucket = bucket
        self.region = region
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
    }

    /// Uploads a local file as `key`.
    public func put(file path: String, key: String) async throws {
        let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
        guard let handle = FileHandle(forReadingAtPath: path) else { throw BackupError.io("cannot read \(path)") }
        defer { try? handle.close() }
        if size <= multipartThreshold {
            let body = try handle.readToEnd() ?? Data()
            _ = try await send("PUT", key: key, body: body)
            return
        }
        let (_, created) = try await send("POST", key: key, query: ["uploads": ""], body: Data())
        guard let uploadId = Self.element("UploadId", in: created) else {
            throw BackupError.io("S3 did not return an UploadId for \(key)")
        }
        do {
            var parts: [(Int, String)] = []
            var number = 1
            while let part = try handle.read(upToCount: partSize), !part.isEmpty {
                let (response, _) = try await send(
                    "PUT",
                    key: key,
                    query: ["partNumber": String(number), "uploadId": uploadId],
                    body: part
                )
                parts.append((number, response.value(forHTTPHeaderField: "ETag") ?? ""))
                number += 1
            }
            let list = parts.map { "<Part><PartNumber>\($0.0)</PartNumber><ETag>\($0.1)</ETag></Part>" }.joined()
            let (_, completed) = try await send(
                "POST",
                key: key,
                query: ["uploadId": uploadId],
                body: Data("<CompleteMultipartUpload>\(list)</CompleteMultipartUpload>".utf8)
            )
            if String(decoding: completed, as: UTF8.self).contains("<Error>") {
                throw BackupError.io("S3 refused to complete the upload of \(key)")
            }
        } catch {
            // Leave no half object behind.
            _ = try? await send("DELETE", key: key, query: ["uploadId": uploadId], body: Data())
            throw error
        }
    }

    /// Downloads `key` into a local file.
    public func get(key: String, to path: String) async throws {
        let (_, data) = try await send("GET", key: key, body: Data())
        try data.write(to: URL(fileURLWithPath: path))
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

    public func delete(key: String) async throws {
        _ = try await send("DELETE", key: key, body: Data())
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
        body: Data
    ) async throws -> (HTTPURLResponse, Data) {
        var delay = Duration.milliseconds(200)
        var lastError: any Error = BackupError.io("no attempt")
        for attempt in 1...attempts {
            do {
                let request = try sign(method: method, key: key, query: query, body: body, date: Date())
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
        let path = "/" + ([bucket] + key.split(separator: "/").map(String.init)).map(Self.encode).joined(separator: "/")
        let canonicalQuery = query.sorted { $0.key < $1.key }.map { "\(Self.encode($0.key))=\(Self.encode($0.value))" }
            .joined(separator: "&")
        // On the wire a valueless parameter is `?uploads`; in the canonical request it is `uploads=`.
        let wireQuery = query.sorted { $0.key < $1.key }
            .map { $0.value.isEmpty ? Self.encode($0.key) : "\(Self.encode($0.key))=\(Self.encode($0.value))" }
            .joined(separator: "&")
        guard let url = URL(string: endpoint + path + (wireQuery.isEmpty ? "" : "?" + wireQuery)),
            let host = url.host
        else { throw BackupError.io("not a URL: \(endpoint)") }
        let hostHeader = url.port.map { "\(host):\($0)" } ?? host
        let amzDate = Self.amzDate(date)
        let day = String(amzDate.prefix(8))
        let payloadHash = Self.hex(SHA256.hash(data: body))
        let canonicalHeaders = "host:\(hostHeader)\nx-amz-content-sha256:\(payloadHash)\nx-amz-date:\(amzDate)\n"
        let signedHeaders = "host;x-amz-content-sha256;x-amz-date"
        let canonicalRequest = [method, path, canonicalQuery, canonicalHeaders, signedHeaders, payloadHash]
            .joined(separator: "\n")
        let scope = "\(day)/\(region)/s3/aws4_request"
        let stringToSign =
            "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(Self.hex(SHA256.hash(data: Data(canonicalRequest.utf8))))"
        var signingKey = SymmetricKey(data: Data("AWS4\(secretAccessKey)".utf8))
        for part in [day, region, "s3", "aws4_request"] {
            signingKey = SymmetricKey(
                data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: signingKey))
            )
        }
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: signingKey))
        var request = URLRequest(url: url, timeoutInterval: 120)
        request.httpMethod = method
        request.setValue(payloadHash, forHTTPHeaderField: "x-amz-content-sha256")
        request.setValue(amzDate, forHTTPHeaderField: "x-amz-date")
        request.setValue(
            "AWS4-HMAC-SHA256 Credential=\(accessKeyId)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)",
            forHTTPHeaderField: "Authorization"
        )
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

    static func encode(_ text: String) -> String {
        let unreserved = CharacterSet(
            charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
        )
        return text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? text
    }

    static func amzDate(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(
            format: "%04d%02d%02dT%02d%02d%02dZ",
            c.year ?? 0,
            c.month ?? 0,
            c.day ?? 0,
            c.hour ?? 0,
            c.minute ?? 0,
            c.second ?? 0
        )
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        hexString(bytes)
    }

    static func element(_ name: String, in data: Data) -> String? {
        let text = String(decoding: data, as: UTF8.self)
        guard let start = text.range(of: "<\(name)>"),
            let end = text.range(of: "</\(name)>", range: start.upperBound..<text.endIndex)
        else { return nil }
        return String(text[start.upperBound..<end.lowerBound])
    }
}
