import Foundation
import Testing

@testable import ZonewardBackup

/// AWS's published Signature Version 4 examples: the aws-sig-v4-test-suite (`get-vanilla`,
/// `get-vanilla-query-order-key-case`, `post-x-www-form-urlencoded`) and the S3 API reference's GET Object
/// example with a Range header.
@Suite struct SigV4Tests {
    static let emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// 2015-08-30T12:36:00Z, the date of the test suite.
    static let suiteDate = Date(timeIntervalSince1970: 1_440_938_160)
    static let suite = SigV4(
        accessKeyId: "AKIDEXAMPLE",
        secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        region: "us-east-1",
        service: "service"
    )
    static let suiteHeaders = ["Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"]

    @Test func getVanilla() {
        let signed = Self.suite.sign(
            method: "GET",
            path: "/",
            query: [],
            headers: Self.suiteHeaders,
            payloadHash: Self.emptyHash,
            date: Self.suiteDate
        )
        #expect(
            signed.canonicalRequest
                == "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\(Self.emptyHash)"
        )
        #expect(
            signed.stringToSign
                == "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
                + "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        )
        #expect(
            signed.authorization
                == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                + "SignedHeaders=host;x-amz-date, "
                + "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        )
    }

    @Test func getVanillaQueryOrderKeyCase() {
        let signed = Self.suite.sign(
            method: "GET",
            path: "/",
            query: [("Param2", "value2"), ("Param1", "value1")],
            headers: Self.suiteHeaders,
            payloadHash: Self.emptyHash,
            date: Self.suiteDate
        )
        #expect(signed.canonicalRequest.hasPrefix("GET\n/\nParam1=value1&Param2=value2\n"))
        #expect(signed.signature == "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
    }

    @Test func postXWWWFormURLEncoded() {
        var headers = Self.suiteHeaders
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        let signed = Self.suite.sign(
            method: "POST",
            path: "/",
            query: [],
            headers: headers,
            // SHA-256 of the body "Param1=value1".
            payloadHash: "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            date: Self.suiteDate
        )
        #expect(
            signed.canonicalRequest
                == "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n"
                + "x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n"
                + "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        )
        #expect(
            signed.stringToSign.hasSuffix("\n42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281")
        )
        #expect(signed.signature == "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
    }

    /// The S3 API reference's example: GET /test.txt from examplebucket with `Range: bytes=0-9`.
    @Test func s3GetObjectExample() {
        let signer = SigV4(
            accessKeyId: "AKIAIOSFODNN7EXAMPLE",
            secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "s3"
        )
        let signed = signer.sign(
            method: "GET",
            path: "/test.txt",
            query: [],
            headers: [
                "Host": "examplebucket.s3.amazonaws.com", "Range": "bytes=0-9",
                "x-amz-content-sha256": Self.emptyHash, "x-amz-date": "20130524T000000Z",
            ],
            payloadHash: Self.emptyHash,
            date: Date(timeIntervalSince1970: 1_369_353_600)
        )
        #expect(
            signed.stringToSign
                == "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                + "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        )
        #expect(signed.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    /// The client signs what it sends: the path as encoded on the wire, empty segments kept.
    @Test func theClientSignsItsOwnRequest() throws {
        let client = S3Client(
            endpoint: "http://127.0.0.1:9000/",
            bucket: "b",
            region: "us-west-2",
            accessKeyId: "id",
            secretAccessKey: "secret"
        )
        let request = try client.sign(
            method: "GET",
            key: "p/a b.zwb",
            query: [:],
            payloadHash: Self.emptyHash,
            date: Self.suiteDate
        )
        #expect(request.url == "http://127.0.0.1:9000/b/p/a%20b.zwb")
        let expected = SigV4(accessKeyId: "id", secretAccessKey: "secret", region: "us-west-2", service: "s3").sign(
            method: "GET",
            path: "/b/p/a b.zwb",
            query: [],
            headers: [
                "host": "127.0.0.1:9000", "x-amz-content-sha256": Self.emptyHash, "x-amz-date": "20150830T123600Z",
            ],
            payloadHash: Self.emptyHash,
            date: Self.suiteDate
        )
        #expect(request.headers["Authorization"] == expected.authorization)
        // Sent as signed.
        #expect(request.headers["Host"] == "127.0.0.1:9000")
        #expect(request.headers["x-amz-content-sha256"] == Self.emptyHash)
        #expect(request.headers["x-amz-date"] == "20150830T123600Z")
    }
}
