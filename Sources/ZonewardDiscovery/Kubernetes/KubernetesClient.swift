import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL

/// A small client of the Kubernetes API: GET an object or a list, and WATCH a collection as a stream of
/// events. Built on AsyncHTTPClient, whose streamed response bodies suit watches that stay open for
/// minutes (URLSession on Linux has no streaming body API), with TLS to the API server's CA and a bearer
/// token re-read for every request.
public final class KubernetesClient: Sendable {
    public let configuration: KubernetesClientConfiguration
    private let http: HTTPClient
    /// Set when the client is the process-wide shared one: TLS goes with each request, nothing to shut down.
    private let requestTLS: TLSConfiguration?
    private let ownsClient: Bool
    private let decoder = JSONDecoder()

    public init(configuration: KubernetesClientConfiguration, eventLoopGroup: any EventLoopGroup) throws(DiscoveryError)
    {
        self.configuration = configuration
        let tls = try Self.tlsConfiguration(configuration)
        http = HTTPClient(
            eventLoopGroup: eventLoopGroup,
            configuration: HTTPClient.Configuration(
                tlsConfiguration: tls,
                timeout: .init(connect: .seconds(5))
            )
        )
        requestTLS = nil
        ownsClient = true
    }

    /// A client on AsyncHTTPClient's shared client, with its TLS settings sent with each request: nothing to
    /// shut down, so it suits short-lived users (a leader election's fenced reads and writes).
    public init(sharingConnectionsWith configuration: KubernetesClientConfiguration) throws(DiscoveryError) {
        self.configuration = configuration
        requestTLS = try Self.tlsConfiguration(configuration)
        http = HTTPClient.shared
        ownsClient = false
    }

    private static func tlsConfiguration(
        _ configuration: KubernetesClientConfiguration
    ) throws(DiscoveryError) -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        do {
            switch configuration.certificateAuthority {
            case .file(let path): tls.trustRoots = .file(path)
            case .data(let bytes): tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(bytes))
            case nil: break
            }
            if let certificate = configuration.clientCertificate, let key = configuration.clientKey {
                tls.certificateChain = try Self.certificates(certificate).map { .certificate($0) }
                tls.privateKey = .privateKey(try Self.privateKey(key))
            }
        } catch {
            throw .configuration("cannot load the API server's TLS material: \(error)")
        }
        if configuration.insecureSkipTLSVerify { tls.certificateVerification = .none }
        return tls
    }

    private static func certificates(_ pem: KubernetesClientConfiguration.PEM) throws -> [NIOSSLCertificate] {
        switch pem {
        case .file(let path): try NIOSSLCertificate.fromPEMFile(path)
        case .data(let bytes): try NIOSSLCertificate.fromPEMBytes(bytes)
        }
    }

    private static func privateKey(_ pem: KubernetesClientConfiguration.PEM) throws -> NIOSSLPrivateKey {
        switch pem {
        case .file(let path): try NIOSSLPrivateKey(file: path, format: .pem)
        case .data(let bytes): try NIOSSLPrivateKey(bytes: bytes, format: .pem)
        }
    }

    public func shutdown() async {
        guard ownsClient else { return }
        try? await http.shutdown()
    }

    /// GETs `path` (with `query`) and decodes the JSON answer.
    public func get<Object: Decodable>(
        _ path: String,
        query: [(String, String)] = [],
        as type: Object.Type = Object.self
    ) async throws(DiscoveryError) -> Object {
        let response = try await execute(path, query: query, timeout: .seconds(30))
        var body: ByteBuffer
        do {
            body = try await response.body.collect(upTo: 64 * 1024 * 1024)
        } catch {
            throw .transport("reading \(path): \(error)")
        }
        do {
            return try decoder.decode(Object.self, from: body.readData(length: body.readableBytes) ?? Data())
        } catch {
            throw .decoding("\(path): \(error)")
        }
    }

    /// Sends `method` to `path` with `body` as JSON (none when nil) and decodes the JSON answer; any 2xx status
    /// is success, others throw `.status` with the API server's Status reason (e.g. 409 Conflict, 404 NotFound).
    public func send<Body: Encodable, Object: Decodable>(
        _ method: HTTPMethod,
        _ path: String,
        body: Body?,
        query: [(String, String)] = [],
        timeout: Duration = .seconds(30),
        as type: Object.Type = Object.self
    ) async throws(DiscoveryError) -> Object {
        var encoded: Data?
        if let body {
            do {
                encoded = try JSONEncoder().encode(body)
            } catch {
                throw .decoding("encoding the body for \(path): \(error)")
            }
        }
        let (seconds, attoseconds) = timeout.components
        let nanoseconds = max(0, min(seconds, 86_400)) * 1_000_000_000 + max(0, attoseconds) / 1_000_000_000
        let response = try await execute(
            path,
            query: query,
            timeout: .nanoseconds(nanoseconds),
            method: method,
            body: encoded
        )
        var bytes: ByteBuffer
        do {
            bytes = try await response.body.collect(upTo: 64 * 1024 * 1024)
        } catch {
            throw .transport("reading \(path): \(error)")
        }
        do {
            return try decoder.decode(Object.self, from: bytes.readData(length: bytes.readableBytes) ?? Data())
        } catch {
            throw .decoding("\(path): \(error)")
        }
    }

    /// Watches `path` from `resourceVersion`: each line of the chunked answer is one event. The sequence
    /// ends when the server ends the watch (its `timeoutSeconds`), and throws when the connection breaks.
    /// It pulls the body as it is consumed, so a slow consumer holds the stream back instead of letting
    /// events pile up in memory: the queue is bounded by one chunk and one line (at most 16 MiB).
    public func watch<Object: Codable & Sendable>(
        _ path: String,
        query: [(String, String)],
        from resourceVersion: String,
        timeoutSeconds: Int = 290,
        as type: Object.Type = Object.self
    ) async throws(DiscoveryError) -> WatchEvents<Object> {
        let parameters =
            query + [
                ("watch", "true"), ("resourceVersion", resourceVersion), ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", String(timeoutSeconds)),
            ]
        let response = try await execute(path, query: parameters, timeout: .seconds(Int64(timeoutSeconds) + 30))
        return WatchEvents(body: response.body, path: path)
    }

    private func execute(
        _ path: String,
        query: [(String, String)],
        timeout: TimeAmount,
        method: HTTPMethod = .GET,
        body: Data? = nil
    ) async throws(DiscoveryError) -> HTTPClientResponse {
        var components = URLComponents()
        components.percentEncodedPath = path
        components.queryItems = query.isEmpty ? nil : query.map { URLQueryItem(name: $0.0, value: $0.1) }
        // `+` is a space to some servers' query parsers; the API server's label selectors never need one.
        let target = configuration.server + (components.string ?? path)
        var request = HTTPClientRequest(url: target)
        request.method = method
        request.tlsConfiguration = requestTLS
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "zoneward")
        if let token = try configuration.currentToken() {
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: timeout)
        } catch {
            throw .transport("\(path): \(error)")
        }
        // A GET must answer 200 (as it always had to); a write may answer 201 Created as well.
        let succeeded = method == .GET ? response.status == .ok : (200..<300).contains(response.status.code)
        guard succeeded else {
            let body = try? await response.body.collect(upTo: 1024 * 1024)
            let status = body.flatMap { try? decoder.decode(Kubernetes.Status.self, from: Data(buffer: $0)) }
            throw .status(
                code: Int(response.status.code),
                reason: status?.reason ?? response.status.reasonPhrase,
                message: status?.message
            )
        }
        return response
    }
}

/// The events of one watch, decoded line by line as the consumer asks for them.
public struct WatchEvents<Object: Codable & Sendable>: AsyncSequence {
    public typealias Element = Kubernetes.WatchEvent<Object>

    let body: HTTPClientResponse.Body
    let path: String

    /// The longest event line accepted.
    static var maximumLine: Int { 16 * 1024 * 1024 }

    public func makeAsyncIterator() -> Iterator {
        Iterator(chunks: body.makeAsyncIterator(), path: path)
    }

    public struct Iterator: AsyncIteratorProtocol {
        var chunks: HTTPClientResponse.Body.AsyncIterator
        let path: String
        var pending = ByteBuffer()
        let decoder = JSONDecoder()

        public mutating func next() async throws -> Element? {
            while true {
                if let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = pending.readData(length: newline - pending.readerIndex) ?? Data()
                    pending.moveReaderIndex(forwardBy: 1)
                    guard !line.isEmpty else { continue }
                    do {
                        return try decoder.decode(Element.self, from: line)
                    } catch {
                        throw DiscoveryError.decoding("watch event on \(path): \(error)")
                    }
                }
                // A single event larger than this is not an EndpointSlice: refuse to buffer without end.
                guard pending.readableBytes <= WatchEvents.maximumLine else {
                    throw DiscoveryError.decoding("watch event on \(path) over 16 MiB")
                }
                let chunk: ByteBuffer?
                do {
                    chunk = try await chunks.next()
                } catch {
                    throw DiscoveryError.transport("watch on \(path) broke: \(error)")
                }
                guard var chunk else { return nil }
                pending.discardReadBytes()
                pending.writeBuffer(&chunk)
            }
        }
    }
}
