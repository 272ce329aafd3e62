import Crypto
import Foundation

/// AWS Signature Version 4 for a request whose headers are signed (not presigned URLs).
///
/// The path and query values are given decoded; they are percent-encoded here as SigV4 requires (RFC 3986
/// unreserved characters kept, everything else `%XX`), and S3-style: the path is not normalised.
struct SigV4: Sendable {
    var accessKeyId: String
    var secretAccessKey: String
    var region: String
    var service: String

    /// What signing produced, each step kept so tests can compare it with AWS's published vectors.
    struct Signature: Sendable, Equatable {
        var canonicalRequest: String
        var stringToSign: String
        var signature: String
        var authorization: String
    }

    /// Signs a request. `headers` must include `host` and `x-amz-date` as sent; every header given is signed.
    func sign(
        method: String,
        path: String,
        query: [(name: String, value: String)],
        headers: [String: String],
        payloadHash: String,
        date: Date
    ) -> Signature {
        let canonicalPath = path.split(separator: "/", omittingEmptySubsequences: false)
            .map { Self.encode(String($0)) }.joined(separator: "/")
        let encodedQuery: [(name: String, value: String)] = query.map { (Self.encode($0.name), Self.encode($0.value)) }
        let sortedQuery = encodedQuery.sorted { ($0.name, $0.value) < ($1.name, $1.value) }
        let canonicalQuery = sortedQuery.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
        var normalized: [(name: String, value: String)] = []
        for (name, value) in headers {
            let words = value.split(separator: " ", omittingEmptySubsequences: true)
            normalized.append((name.lowercased(), words.joined(separator: " ")))
        }
        normalized.sort { $0.name < $1.name }
        let canonicalHeaders = normalized.map { "\($0.name):\($0.value)\n" }.joined()
        let signedHeaders = normalized.map(\.name).joined(separator: ";")
        let canonicalRequest = [method, canonicalPath, canonicalQuery, canonicalHeaders, signedHeaders, payloadHash]
            .joined(separator: "\n")
        let amzDate = Self.amzDate(date)
        let day = String(amzDate.prefix(8))
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = [
            "AWS4-HMAC-SHA256", amzDate, scope, hexString(SHA256.hash(data: Data(canonicalRequest.utf8))),
        ]
        .joined(separator: "\n")
        var signingKey = SymmetricKey(data: Data("AWS4\(secretAccessKey)".utf8))
        for part in [day, region, service, "aws4_request"] {
            signingKey = SymmetricKey(
                data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: signingKey))
            )
        }
        let signature = hexString(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: signingKey))
        return Signature(
            canonicalRequest: canonicalRequest,
            stringToSign: stringToSign,
            signature: signature,
            authorization:
                "AWS4-HMAC-SHA256 Credential=\(accessKeyId)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        )
    }

    /// Percent-encodes everything but RFC 3986's unreserved characters, as SigV4 requires.
    static func encode(_ text: String) -> String {
        let unreserved = CharacterSet(
            charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
        )
        return text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? text
    }

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
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
}
