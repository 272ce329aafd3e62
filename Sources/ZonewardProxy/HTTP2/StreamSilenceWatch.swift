import NIOCore

/// A stream whose endpoint may fall silent: checked on each tick of its event loop's `StreamSilenceWatch`.
protocol SilenceWatched: AnyObject {
    /// Where the stream sits in the watch's list; -1 when not watched. Only the watch sets it.
    var silenceSlot: Int { get set }
    func checkSilence(now: NIODeadline)
}

/// The streams of one event loop that owe a response, checked for their endpoint's silence by one ticker,
/// not a timer per stream: scheduling and cancelling a `RepeatedTask` per stream cost about 16,000 of 342,000
/// instructions per proxied HTTP/2 stream (`PROTO=h2 bench/callgrind-proxy.sh`); adding to and removing
/// from this list costs a few. The ticker runs while the list is not empty, and stops at the first tick that
/// finds it empty. A stream is checked every `period`, so silence is noticed within the limit plus a period.
final class StreamSilenceWatch {
    private var streams: [any SilenceWatched] = []
    private var task: RepeatedTask?
    /// Its clock is the loop's (`EventLoop.now`), so tests on an embedded loop control it.
    let eventLoop: any EventLoop
    let period: TimeAmount

    init(eventLoop: any EventLoop, period: TimeAmount = .milliseconds(100)) {
        self.eventLoop = eventLoop
        self.period = period
    }

    var count: Int { streams.count }
    var isTicking: Bool { task != nil }

    func add(_ stream: any SilenceWatched) {
        guard stream.silenceSlot < 0 else { return }
        stream.silenceSlot = streams.count
        streams.append(stream)
        guard task == nil else { return }
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        task = eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in bound.value.tick() }
    }

    /// Forgets `stream` (swapping the last one into its place); nothing when it is not watched.
    func remove(_ stream: any SilenceWatched) {
        let slot = stream.silenceSlot
        guard slot >= 0, slot < streams.count, streams[slot] === stream else { return }
        stream.silenceSlot = -1
        let last = streams.removeLast()
        if slot < streams.count {
            streams[slot] = last
            last.silenceSlot = slot
        }
    }

    /// Checks every stream, last first: a stream that ends while checked removes itself, and what moves into
    /// its slot was checked already.
    func tick() {
        guard !streams.isEmpty else {
            task?.cancel()
            task = nil
            return
        }
        let time = eventLoop.now
        var index = streams.count - 1
        while index >= 0 {
            if index < streams.count { streams[index].checkSilence(now: time) }
            index -= 1
        }
    }

    /// Stops the ticker and forgets every stream (the pool is going away).
    func stop() {
        task?.cancel()
        task = nil
        for stream in streams { stream.silenceSlot = -1 }
        streams = []
    }
}

@available(*, unavailable)
extension StreamSilenceWatch: Sendable {}
