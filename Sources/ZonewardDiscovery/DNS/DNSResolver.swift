import Foundation
import NIOCore
import NIOPosix
import ZonewardModel

/// Asks one DNS server (UDP) for a name's A and AAAA records, with their TTLs.
public struct DNSResolver: Sendable {
    public let server: HostPort
    public let timeout: TimeAmount
    private let group: any EventLoopGroup

    public init(server: HostPort, group: any EventLoopGroup, timeout: TimeAmount = .seconds(2)) {
        self.server = server
        self.group = group
        self.timeout = timeout
    }

    /// The first `nameserver` of /etc/resolv.conf (port 53); nil when there is none.
    public static func systemServer(resolvConf: String = "/etc/resolv.conf") -> HostPort? {
        guard let text = try? String(contentsOfFile: resolvConf, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let words = line.split(whereSeparator: \.isWhitespace)
            if words.count >= 2, words[0] == "nameserver" { return HostPort(host: String(words[1]), port: 53) }
        }
        return nil
    }

    /// A and AAAA answers of `name`; throws when neither query is answered.
    public func resolve(_ name: String) async throws -> [DNSMessage.Answer] {
        async let v4 = query(name, .a)
        async let v6 = query(name, .aaaa)
        switch (await v4, await v6) {
        case (.failure(let error), .failure):
            throw error
        case (let a, let aaaa):
            return ((try? a.get()) ?? []) + ((try? aaaa.get()) ?? [])
        }
    }

    private func query(_ name: String, _ type: DNSMessage.RecordType) async -> Result<[DNSMessage.Answer], any Error> {
        do {
            let id = UInt16.random(in: 0...UInt16.max)
            let request = try DNSMessage.query(id: id, name: name, type: type)
            let address = try SocketAddress(ipAddress: server.host, port: server.port)
            let bytes = try await exchange(request, with: address)
            return .success(try DNSMessage.answers(bytes, id: id, type: type))
        } catch {
            return .failure(error)
        }
    }

    /// Sends one datagram and waits for the first answer, up to the timeout.
    private func exchange(_ request: [UInt8], with address: SocketAddress) async throws -> [UInt8] {
        let loop = group.next()
        let promise = loop.makePromise(of: [UInt8].self)
        let channel = try await DatagramBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AnswerHandler(promise: promise))
                }
            }
            .bind(host: address.protocol == .inet6 ? "::" : "0.0.0.0", port: 0)
            .get()
        let timeout = loop.scheduleTask(in: self.timeout) {
            promise.fail(DNSMessage.Failure.malformed("no answer from \(server) within \(self.timeout)"))
        }
        defer {
            timeout.cancel()
            channel.close(promise: nil)
        }
        let envelope = AddressedEnvelope(remoteAddress: address, data: ByteBuffer(bytes: request))
        try await channel.writeAndFlush(envelope)
        return try await promise.futureResult.get()
    }
}

/// Completes the promise with the first datagram's bytes.
private final class AnswerHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let promise: EventLoopPromise<[UInt8]>

    init(promise: EventLoopPromise<[UInt8]>) {
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var envelope = unwrapInboundIn(data)
        promise.succeed(envelope.data.readBytes(length: envelope.data.readableBytes) ?? [])
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
    }
}

@available(*, unavailable)
extension AnswerHandler: Sendable {}
