import NIOCore

/// A cheap inactivity timer for one connection: handlers bump a counter on every read and write, and a
/// timer that fires once per period checks whether it moved. Unlike `IdleStateHandler` this adds no
/// handler to the pipeline, no clock read and no promise per write; the price is granularity (with a
/// period of half the timeout, idleness is noticed after one to one and a half timeouts), which suits
/// timeouts measured in seconds.
final class IdleWatch {
    private var activity: UInt64 = 0
    private var seen: UInt64 = 0
    /// Consecutive periods without activity.
    private var quietPeriods = 0
    private var task: RepeatedTask?

    /// Records activity; call on every read and write.
    @inline(__always)
    func touch() {
        activity &+= 1
    }

    /// Starts watching; `onIdle` runs on the loop once two whole periods passed without activity, so a
    /// timeout T is watched with a period of T / 2.
    func start(on loop: any EventLoop, period: TimeAmount, onIdle: @escaping () -> Void) {
        stop()
        quietPeriods = 0
        seen = activity
        let bound = NIOLoopBound((watch: self, onIdle: onIdle), eventLoop: loop)
        task = loop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in
            let (watch, onIdle) = bound.value
            watch.quietPeriods = watch.activity == watch.seen ? watch.quietPeriods + 1 : 0
            watch.seen = watch.activity
            if watch.quietPeriods >= 2 {
                watch.quietPeriods = 0
                onIdle()
            }
        }
    }

    func stop() {
        task?.cancel()
        task = nil
    }
}

@available(*, unavailable)
extension IdleWatch: Sendable {}
