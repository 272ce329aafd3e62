/// The list-then-watch protocol of a Kubernetes client, as a pure state machine: the watcher reports what
/// the API server did and performs the action returned. Tested without an API server.
///
/// List, then watch from the list's resourceVersion; remember the version of every event and bookmark;
/// when a watch ends normally, watch again from there; on 410 Gone, list again; on any other failure,
/// wait (exponential backoff with full jitter, reset by a success) and resume from the last version.
public struct WatchStateMachine: Sendable {
    public enum Action: Equatable, Sendable {
        case list
        case watch(from: String)
        /// Wait this long, then call `backoffElapsed()`.
        case wait(Duration)
    }

    public enum State: Equatable, Sendable {
        case idle, listing, watching, waiting
    }

    public private(set) var state: State = .idle
    /// The newest resourceVersion seen; nil until a list succeeded (or after 410 Gone).
    public private(set) var resourceVersion: String?
    /// Consecutive failures, for the backoff.
    public private(set) var failures = 0
    public let initialBackoff: Duration
    public let maximumBackoff: Duration

    public init(initialBackoff: Duration = .milliseconds(500), maximumBackoff: Duration = .seconds(30)) {
        self.initialBackoff = initialBackoff
        self.maximumBackoff = maximumBackoff
    }

    public mutating func start() -> Action {
        state = .listing
        return .list
    }

    /// A list succeeded: watch from its version.
    public mutating func listed(resourceVersion version: String) -> Action {
        failures = 0
        resourceVersion = version
        state = .watching
        return .watch(from: version)
    }

    /// An event (or bookmark) arrived on the watch.
    public mutating func received(resourceVersion version: String?) {
        failures = 0
        if let version, !version.isEmpty { resourceVersion = version }
    }

    /// The watch ended without an error (the server's timeout): resume from the last version seen.
    public mutating func watchEnded() -> Action {
        guard let resourceVersion else { return relist() }
        state = .watching
        return .watch(from: resourceVersion)
    }

    /// 410 Gone: the version is older than the server keeps; list again (at once: nothing is wrong).
    public mutating func gone() -> Action {
        resourceVersion = nil
        return relist()
    }

    private mutating func relist() -> Action {
        state = .listing
        return .list
    }

    /// A request failed (unreachable, 5xx, 401 with an expired token, a broken stream): back off.
    ///
    /// - Parameter random: a number in [0, 1) for the jitter.
    public mutating func failed(random: Double) -> Action {
        failures += 1
        state = .waiting
        let exponent = min(failures - 1, 20)
        let ceiling = min(initialBackoff * (1 << exponent), maximumBackoff)
        // Full jitter (AWS architecture blog): spread reconnects of a whole fleet after an API outage.
        let delay = ceiling * max(0.05, min(random, 1))
        return .wait(delay)
    }

    /// The backoff elapsed: resume the watch where it stopped, or list when there is nothing to resume.
    public mutating func backoffElapsed() -> Action {
        if let resourceVersion {
            state = .watching
            return .watch(from: resourceVersion)
        }
        return relist()
    }
}
