import NIOCore
import Synchronization

/// The open client connections, so graceful shutdown can ask each to finish and then wait for them.
final class ConnectionRegistry: Sendable {
    private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        channels.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { [self] _ in
            _ = channels.withLock { $0.removeValue(forKey: id) }
        }
    }

    var count: Int { channels.withLock { $0.count } }

    /// Asks every connection to close once its request in flight is answered.
    func quiesceAll() {
        for channel in channels.withLock({ Array($0.values) }) {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
    }

    func closeAll() {
        for channel in channels.withLock({ Array($0.values) }) {
            channel.close(promise: nil)
        }
    }
}

/// One pool of upstream connections per event loop (HTTP/1.1's `UpstreamPool`, HTTP/2's `H2UpstreamPool`),
/// created on first use on that loop and used only there.
final class PerLoopPools<Pool>: Sendable {
    private let pools = Mutex<[ObjectIdentifier: NIOLoopBound<Pool>]>([:])
    private let make: @Sendable (any EventLoop) -> Pool
    private let closeIdleOne: @Sendable (Pool) -> Void

    init(make: @escaping @Sendable (any EventLoop) -> Pool, closeIdle: @escaping @Sendable (Pool) -> Void) {
        self.make = make
        self.closeIdleOne = closeIdle
    }

    /// The pool of `eventLoop`; call on that loop.
    func pool(for eventLoop: any EventLoop) -> Pool {
        let id = ObjectIdentifier(eventLoop)
        return pools.withLock { pools in
            if let existing = pools[id] { return existing.value }
            let pool = make(eventLoop)
            pools[id] = NIOLoopBound(pool, eventLoop: eventLoop)
            return pool
        }
    }

    /// Closes idle upstream connections on every loop.
    func closeIdle() {
        let all = pools.withLock { Array($0.values) }
        let closeIdleOne = self.closeIdleOne
        for bound in all {
            bound.eventLoop.execute { closeIdleOne(bound.value) }
        }
    }
}

typealias UpstreamPools = PerLoopPools<UpstreamPool>

extension PerLoopPools where Pool == UpstreamPool {
    convenience init(timeouts: ProxyTimeouts) {
        self.init(make: { UpstreamPool(eventLoop: $0, timeouts: timeouts) }, closeIdle: { $0.closeIdle() })
    }
}

/// The open connections of one listener, for its `maxConnections` limit.
final class ListenerConnections: Sendable {
    private let open = Atomic<Int>(0)

    /// Counts a new connection; false (and not counted) when the listener is at `limit` already.
    func admit(limit: Int) -> Bool {
        if open.wrappingAdd(1, ordering: .relaxed).newValue > limit {
            open.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func release() {
        open.wrappingSubtract(1, ordering: .relaxed)
    }
}
