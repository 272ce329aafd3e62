import NIOCore
import NIOEmbedded
import Testing

@testable import ZonewardProxy

/// `FlushCoalescer` holds flushes to one per event-loop tick and gathers small writes into one buffer; the
/// bytes must still reach the socket in the order they were written, and promises must be kept.
@Suite struct FlushCoalescerTests {
    static func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: FlushCoalescer())
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    static func written(_ channel: EmbeddedChannel) throws -> [String] {
        var writes: [String] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { writes.append(String(buffer: buffer)) }
        return writes
    }

    @Test func smallWritesGoDownAsOneAtTheTicksFlush() throws {
        let channel = try Self.channel()
        for text in ["frame-1;", "frame-2;", "frame-3;"] { channel.write(ByteBuffer(string: text), promise: nil) }
        channel.flush()
        // Nothing before the tick's flush runs.
        #expect(try Self.written(channel).isEmpty)
        channel.embeddedEventLoop.run()
        #expect(try Self.written(channel) == ["frame-1;frame-2;frame-3;"])
    }

    /// A write with a promise, or one too large to copy, goes down as it is, after what was gathered before
    /// it: the order on the wire is the order written.
    @Test func writesNotGatheredKeepTheirPlace() throws {
        let channel = try Self.channel()
        let large = String(repeating: "L", count: FlushCoalescer.copyLimit + 1)
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.write(ByteBuffer(string: "a;"), promise: nil)
        channel.write(ByteBuffer(string: "promised;"), promise: promise)
        channel.write(ByteBuffer(string: "b;"), promise: nil)
        channel.write(ByteBuffer(string: large), promise: nil)
        channel.write(ByteBuffer(string: "c;"), promise: nil)
        channel.flush()
        channel.embeddedEventLoop.run()
        #expect(try Self.written(channel) == ["a;", "promised;", "b;", large, "c;"])
        // Kept: the write went down (EmbeddedChannel completes a write's promise when it takes it).
        try promise.futureResult.wait()
    }

    /// Past `gatherLimit`, the gathered bytes go down without waiting for the flush.
    @Test func gatheringIsBounded() throws {
        let channel = try Self.channel()
        let chunk = String(repeating: "x", count: FlushCoalescer.copyLimit)
        let count = FlushCoalescer.gatherLimit / FlushCoalescer.copyLimit + 1
        for _ in 0..<count { channel.write(ByteBuffer(string: chunk), promise: nil) }
        channel.flush()
        channel.embeddedEventLoop.run()
        let writes = try Self.written(channel)
        #expect(writes.count == 2)
        #expect(writes.first?.utf8.count == FlushCoalescer.gatherLimit)
        #expect(writes.joined() == String(repeating: chunk, count: count))
    }

    /// A close, or the handler's removal, sends what was gathered first.
    @Test func aCloseSendsWhatWasGathered() throws {
        let channel = try Self.channel()
        channel.write(ByteBuffer(string: "goaway"), promise: nil)
        channel.flush()
        let closed = channel.close()
        channel.embeddedEventLoop.run()
        try closed.wait()
        #expect(try Self.written(channel) == ["goaway"])
    }
}
