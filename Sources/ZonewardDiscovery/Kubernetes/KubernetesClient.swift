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
    private let decoder = JSONDecoder()

    public init(configuration: KubernetesClientConfiguration, eventLoopGroup: any EventLoopGroup) throws(DiscoveryError)
    {
        self.configuration = configuration
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
        http = HTTPClient(
            eventLoopGroup: eventLoopGroup,
            configuration: HTTPClient.Configuration(
                tlsConfiguration: tls,
                timeout: .init(connect: .seconds(5))
            )
        )
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

    /// Watches `path` from `resourceVersion`: each line of the chunked answer is one event. The stream ends
    /// when the server ends the watch (its `timeoutSeconds`), and throws when the connection breaks.
    public func watch<Object: Codable & Sendable>(
        _ path: String,
        query: [(String, String)],
        from resourceVersion: String,
        timeoutSeconds: Int = 290,
        as type: Object.Type = Object.self
    ) async throws(DiscoveryError) -> AsyncThrowingStream<Kubernetes.WatchEvent<Object>, any Error> {
        let parameters =
            query + [
                ("watch", "true"), ("resourceVersion", resourceVersion), ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", String(timeoutSeconds)),
            ]
        let response = try await execute(path, query: parameters, timeout: .seconds(Int64(timeoutSeconds) + 30))
        let decoder = self.decoder
        return AsyncThrowingStream { continuation in
            let task = Task {
                var pending = ByteBuffer()
                do {
                    for try await var chunk in response.body {
                        pending.writeBuffer(&chunk)
                        while let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                            let length = newline - pending.readerIndex
                            let line = pending.readData(length: length) ?? Data()
                            pending.moveReaderIndex(forwardBy: 1)
                            guard !line.isEmpty else { continue }
                            do {
                                continuation.yield(try decoder.decode(Kubernetes.WatchEvent<Object>.self, from: line))
                            } catch {
                                throw DiscoveryError.decoding("watch event on \(path): \(error)")
                            }
                        }
                        // A single event larger than this is not an EndpointSlice: refuse to buffer without end.
                        if pending.readableBytes > 16 * 1024 * 1024 {
                            throw DiscoveryError.decoding("watch event on \(path) over 16 MiB")
                        }
                    }
                    continuation.finish()
                } catch let error as DiscoveryError {
                    continuation.finish(throwing: error)
                } catch {
                    continuation.finish(throwing: DiscoveryError.transport("watch on \(path) broke: \(error)"))
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    private func execute(
        _ path: String,
        query: [(String, String)],
        timeout: TimeAmount
    ) async throws(DiscoveryError) -> HTTPClientResponse {
        var components = URLComponents()
        components.percentEncodedPath = path
        components.queryItems = query.isEmpty ? nil : query.map { URLQueryItem(name: $0.0, value: $0.1) }
        // `+` is a space to some servers' query parsers; the API server's label selectors never need one.
        let target = configuration.server + (components.string ?? path)
        var request = HTTPClientRequest(url: target)
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
        guard response.status == .ok else {
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
