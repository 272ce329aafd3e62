import Crypto
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import ZonewardBackup

/// A fake S3 on loopback for CompleteMultipartUpload: what it does with each completion attempt is scripted.
final class CompletionS3: @unchecked Sendable {
    enum Step {
        /// Complete the upload, then close the connection without answering (the answer is lost).
        case completeAndDrop
        /// Answer 200 with an `<Error>` body (S3 failed after it began answering), completing nothing.
        case errorIn200
        /// Complete the upload and answer 200.
        case complete
    }

    private let lock = NIOLock()
    private var script: [Step]
    /// The ETag HEAD reports for the object once completed (nil: the multipart ETag of the parts sent).
    private let headETag: String?
    private var completedETag: String?
    private(set) var requests: [String] = []
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var channel: (any Channel)?

    init(script: [Step], headETag: String? = nil) {
        self.script = script
        self.headETag = headETag
    }

    var port: Int { channel?.localAddress?.port ?? 0 }
    var log: [String] { lock.withLock { requests } }

    // Async, not `.wait()`: a blocked thread of the 2-thread concurrency pool would stall every other test.
    func start() async throws {
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(server: self))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func stop() async {
        try? await channel?.close().get()
        try? await group.shutdownGracefully()
    }

    /// Runs `body` with the server started, and stops it whatever `body` does.
    func serving(_ body: (CompletionS3) async throws -> Void) async throws {
        try await start()
        do {
            try await body(self)
        } catch {
            await stop()
            throw error
        }
        await stop()
    }

    /// What to answer: status, headers, body; nil closes the connection without an answer.
    func answer(method: String, uri: String, body: String) -> (Int, [(String, String)], String)? {
        lock.withLock {
            requests.append("\(method) \(uri)")
            if method == "HEAD" {
                guard let etag = completedETag else { return (404, [], "") }
                return (200, [("ETag", "\"\(headETag ?? etag)\""), ("Content-Length", "100")], "")
            }
            guard method == "POST", uri.contains("uploadId=") else { return (400, [], "unexpected") }
            guard completedETag == nil else {
                return (404, [], "<Error><Code>NoSuchUpload</Code></Error>")
            }
            let step = script.isEmpty ? .complete : script.removeFirst()
            switch step {
            case .errorIn200:
                return (200, [], "<Error><Code>InternalError</Code></Error>")
            case .completeAndDrop, .complete:
                let etags = body.components(separatedBy: "<ETag>").dropFirst().compactMap {
                    $0.components(separatedBy: "</ETag>").first
                }
                completedETag = S3Client.multipartETag(etags.enumerated().map { ($0.offset + 1, $0.element) })
                if case .completeAndDrop = step { return nil }
                return (200, [], "<CompleteMultipartUploadResult/>")
            }
        }
    }

    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let server: CompletionS3
        var head: HTTPRequestHead?
        var body = ""

        init(server: CompletionS3) { self.server = server }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                self.head = head
                body = ""
            case .body(let bytes):
                body += String(buffer: bytes)
            case .end:
                guard let head else { return }
                guard
                    let (status, headers, text) = server.answer(method: head.method.rawValue, uri: head.uri, body: body)
                else {
                    context.close(promise: nil)
                    return
                }
                var fields = HTTPHeaders(headers)
                if !fields.contains(name: "Content-Length") {
                    fields.add(name: "Content-Length", value: "\(text.utf8.count)")
                }
                context.write(
                    wrapOutboundOut(
                        .head(HTTPResponseHead(version: .http1_1, status: .init(statusCode: status), headers: fields))
                    ),
                    promise: nil
                )
                if head.method != .HEAD {
                    context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
                }
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }
}

@Suite struct S3CompletionTests {
    static let parts: [(number: Int, etag: String)] = [
        (1, "\"" + hexString(Insecure.MD5.hash(data: Data("one".utf8))) + "\""),
        (2, "\"" + hexString(Insecure.MD5.hash(data: Data("two".utf8))) + "\""),
    ]

    func client(_ server: CompletionS3) -> S3Client {
        S3Client(
            endpoint: "http://127.0.0.1:\(server.port)",
            bucket: "b",
            region: "us-east-1",
            accessKeyId: "id",
            secretAccessKey: "secret"
        )
    }

    /// The multipart ETag as S3 documents it, checked against a value computed by hand:
    /// md5(md5("one") ‖ md5("two")) followed by "-2".
    @Test func theMultipartETagIsTheMD5OfThePartsMD5s() {
        var concatenated = Data(Insecure.MD5.hash(data: Data("one".utf8)))
        concatenated.append(contentsOf: Insecure.MD5.hash(data: Data("two".utf8)))
        let expected = hexString(Insecure.MD5.hash(data: concatenated)) + "-2"
        #expect(S3Client.multipartETag(Self.parts) == expected)
        #expect(S3Client.multipartETag([(1, "\"not-an-md5\"")]) == nil)
    }

    /// Before: the retried completion met 404 NoSuchUpload and a good backup failed (its object stored).
    @Test func aCompletionWhoseAnswerWasLostCountsOnceTheObjectIsThePartsOne() async throws {
        try await CompletionS3(script: [.completeAndDrop]).serving { server in
            try await client(server).completeMultipartUpload(key: "app/x.zwb", uploadId: "u1", parts: Self.parts)
            #expect(server.log.filter { $0.hasPrefix("POST") }.count == 2)
            #expect(server.log.last == "HEAD /b/app/x.zwb")
        }
    }

    /// The object under the key is another one (a different ETag): the completion still fails.
    @Test func aLostCompletionWithAnotherObjectUnderTheKeyFails() async throws {
        try await CompletionS3(script: [.completeAndDrop], headETag: "0123456789abcdef0123456789abcdef-2").serving {
            server in
            let error = await #expect(throws: S3Client.S3Error.self) {
                try await client(server).completeMultipartUpload(key: "app/x.zwb", uploadId: "u1", parts: Self.parts)
            }
            #expect("\(error.map { "\($0)" } ?? "")".contains("404"))
            #expect(server.log.contains("HEAD /b/app/x.zwb"))
        }
    }

    /// A NoSuchUpload on the first attempt is not a lost answer: no object check, the error stands.
    @Test func noSuchUploadAtTheFirstAttemptFails() async throws {
        try await CompletionS3(script: [.completeAndDrop]).serving { server in
            // Completed once by a first call whose answer was lost: a second, separate call is a first attempt.
            try await client(server).completeMultipartUpload(key: "k", uploadId: "u1", parts: Self.parts)
            await #expect(throws: S3Client.S3Error.self) {
                try await client(server).completeMultipartUpload(key: "k", uploadId: "u1", parts: Self.parts)
            }
        }
    }

    /// Before: a 200 with an `<Error>` body failed the upload at once; S3 asks for a retry.
    @Test func anErrorInA200IsRetried() async throws {
        try await CompletionS3(script: [.errorIn200, .complete]).serving { server in
            try await client(server).completeMultipartUpload(key: "k", uploadId: "u1", parts: Self.parts)
            #expect(server.log.filter { $0.hasPrefix("POST") }.count == 2)
        }
    }
}
