import NIOCore

/// A cheap inactivity timer for one connection: handlers bump a counter on every read and write, and a
/// timer that fires once per period checks whether it moved. Unlike `IdleStateHandler` this adds no
/// handler to the pipeline, no clock read and no promise per write; the price is granularity (idleness
/// is noticed after one to two periods), which suits timeouts measured in seconds.
final class IdleWatch {
    private var activity: UInt64 = 0
    private var seen: UInt64 = 0
    private var task: RepeatedTask?

    /// Records activity; call on every read and write.
    @inline(__always)
    func touch() {
        activity &+= 1
    }

    /// Starts watching; `onIdle` runs on the loop when a whole period passed without activity.
    func start(on loop: any EventLoop, period: TimeAmount, onIdle: @escaping () -> Void) {
        stop()
        let bound = NIOLoopBound((watch: self, onIdle: onIdle), eventLoop: loop)
        task = loop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in
            let (watch, onIdle) = bound.value
            if watch.activity == watch.seen {
                onIdle()
            }
            watch.seen = watch.activity
        }
    }

    func stop() {
        task?.cancel()
        task = nil
    }
}

@available(*, unavailable)
extension IdleWatch: Sendable {}
