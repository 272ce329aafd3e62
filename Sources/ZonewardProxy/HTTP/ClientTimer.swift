import NIOCore
import ZonewardModel

/// Decides when a client connection has had long enough, from coarse observations: the handler bumps a
/// counter on each read, marks when a request head begins and ends and when the socket stops taking
/// bytes, and a timer ticks a few times per shortest timeout. Pure: `tick(at:phase:)` returns a verdict
/// and reads no clock, so every rule is tested without sockets.
///
/// Unlike an idle timer that any byte resets, the request-head deadline is absolute from the head's first
/// byte (or, for a connection's first request, from the accept): a slowloris client trickling one header
/// line at a time cannot extend it. The price of the coarse tick is granularity: a deadline is noticed
/// up to one tick (a quarter of the shortest timeout, at most 2.5 s) late, with no clock read per request.
struct ClientTimer {
    /// What the connection is waiting for, as the handler sees it at a tick.
    enum Phase: Equatable {
        /// No request in flight: idle, or a head arriving.
        case awaitingRequest
        /// A request in flight whose endpoint can take more body bytes than the client sends.
        case awaitingBody
        /// The proxy or the endpoint is working (connecting, waiting for or relaying the response).
        case busy
    }

    enum Verdict: Equatable {
        case keep
        /// The head did not complete in time. `bytesSeen`: false for a connection that never sent a byte
        /// (a browser's preconnect), which is closed silently rather than answered 408.
        case requestHeadTimeout(bytesSeen: Bool)
        /// The endpoint waited for body bytes the client did not send: 408 and close.
        case bodyTimeout
        /// The client took no response byte for `clientWrite`: close.
        case notReading
        /// No request for `clientIdle`: close.
        case idle
    }

    let timeouts: TimeoutConfiguration
    /// The time of the last tick: the coarse clock that marks begin and end times.
    private(set) var now: NIODeadline
    private var activity: UInt64 = 0
    private var seen: UInt64 = 0
    private var lastActive: NIODeadline
    private var headStarted: NIODeadline?
    private var headHasBytes = false
    private var unwritableSince: NIODeadline?

    /// - Parameter acceptedAt: when the connection was accepted; its first head is due `requestHead` later.
    init(timeouts: TimeoutConfiguration, acceptedAt: NIODeadline) {
        self.timeouts = timeouts
        now = acceptedAt
        lastActive = acceptedAt
        headStarted = acceptedAt
    }

    /// How often to tick: a quarter of the shortest client timeout, between 10 ms and 2.5 s.
    var period: TimeAmount {
        let shortest = min(timeouts.requestHead, timeouts.clientBody, timeouts.clientWrite, timeouts.clientIdle)
        return TimeAmount(min(max(shortest / 4, .milliseconds(10)), .milliseconds(2500)))
    }

    /// Bytes arrived from the client.
    @inline(__always)
    mutating func touch() {
        activity &+= 1
    }

    /// Part of a request head is buffered; the deadline runs from the first call after `headEnded()`.
    mutating func headBegan() {
        headHasBytes = true
        if headStarted == nil { headStarted = now }
    }

    /// A whole head arrived (or the connection returned to waiting with nothing buffered).
    mutating func headEnded() {
        headStarted = nil
        headHasBytes = false
    }

    /// The client socket's writability changed.
    mutating func writabilityChanged(writable: Bool) {
        unwritableSince = writable ? nil : (unwritableSince ?? now)
    }

    mutating func tick(at time: NIODeadline, phase: Phase) -> Verdict {
        now = time
        if activity != seen {
            seen = activity
            lastActive = time
        }
        if let since = unwritableSince, time - since >= TimeAmount(timeouts.clientWrite) {
            return .notReading
        }
        switch phase {
        case .awaitingRequest:
            if let started = headStarted {
                if time - started >= TimeAmount(timeouts.requestHead) {
                    return .requestHeadTimeout(bytesSeen: headHasBytes)
                }
            } else if time - lastActive >= TimeAmount(timeouts.clientIdle) {
                return .idle
            }
        case .awaitingBody:
            if time - lastActive >= TimeAmount(timeouts.clientBody) { return .bodyTimeout }
        case .busy:
            break
        }
        return .keep
    }

    /// Restarts the activity clock: the client's silence counts from now. Called when the endpoint becomes
    /// able to take body bytes (silence before that was the proxy's wait, not the client's) and when a
    /// response ends (the idle timeout runs from there).
    mutating func restartActivityClock() {
        lastActive = now
        seen = activity
    }
}
