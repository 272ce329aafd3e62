/// One request's way through the proxy, as a pure state machine: `HTTPProxyHandler` reports what happened
/// and performs the action each method returns. Every decision that could go wrong quietly lives here and
/// is tested without sockets: whether an upstream failure is retried, answered or ends the client
/// connection; whether the upstream connection goes back to the pool; whether the client connection
/// stays open; whether a local error may still answer with a status line.
struct ExchangeStateMachine {
    enum State: Equatable {
        /// Waiting for a connection to an endpoint (the first one or a retry).
        case connecting
        /// The head went upstream; the body may still be streaming; no response byte yet.
        case awaitingResponse
        /// An interim (1xx) response went to the client; the real one is still to come.
        case interim
        /// The final response head went to the client; its body is streaming.
        case responding(status: Int)
        /// Over: answered, failed or handed to a tunnel.
        case finished
    }

    /// What the machine needs to know of the request.
    struct Request: Equatable {
        var isIdempotent: Bool
        /// The client asked to keep its connection open.
        var keepAlive: Bool
    }

    enum FailureAction: Equatable {
        /// Try another endpoint.
        case retry
        /// Answer the client with the failure's status (and close when the body was not read whole).
        case respond(UpstreamFailure)
        /// Part of a response is out: end the client connection, never splice a second message.
        case closeClient
    }

    /// What to do when a response ended cleanly.
    struct Ending: Equatable {
        /// Return the upstream connection to the pool (else close it).
        var reuseUpstream: Bool
        /// Close the client connection (else read its next request).
        var closeClient: Bool
    }

    enum LocalErrorAction: Equatable {
        /// Nothing went to the client yet: answer with the proxy's own status.
        case respond
        /// A response is partly out: close instead of writing a second status line.
        case closeClient
    }

    let request: Request
    let maxRetries: Int
    private(set) var state: State = .connecting
    private(set) var retries = 0
    private(set) var bodyBytesSent = 0
    /// Why the previous attempt failed, reported when no endpoint is left to retry on.
    private(set) var lastFailure: UpstreamFailure?
    /// The final response asked for the client connection to close (or is delimited by the close).
    private var responseClosesClient = false
    /// Any response byte (an interim one included) went to the client.
    private(set) var responseStarted = false
    /// The final status, 0 before the final response head.
    private(set) var status = 0

    init(request: Request, maxRetries: Int) {
        self.request = request
        self.maxRetries = maxRetries
    }

    mutating func connected() {
        if state == .connecting { state = .awaitingResponse }
    }

    mutating func bodySent(_ count: Int) {
        bodyBytesSent += count
    }

    /// A response head went to the client. `closesClient`: the response says the client connection ends.
    mutating func responseHead(status: Int, interim: Bool, closesClient: Bool) {
        guard state != .finished else { return }
        responseStarted = true
        if interim {
            state = .interim
        } else {
            state = .responding(status: status)
            self.status = status
            responseClosesClient = closesClient
        }
    }

    /// The upstream could not complete the request. Before any response byte, a request that never reached
    /// the endpoint, or an idempotent one reset before answering, is retried while no body byte went out,
    /// within `maxRetries` and the budget (`budgetAllows` is asked last, as it counts the retry).
    mutating func upstreamFailed(_ failure: UpstreamFailure, budgetAllows: () -> Bool) -> FailureAction {
        if responseStarted {
            state = .finished
            return .closeClient
        }
        let neverSent: Bool
        switch failure {
        case .connectFailed, .poolExhausted: neverSent = true
        default: neverSent = false
        }
        let retryable = (neverSent || (failure == .resetBeforeResponse && request.isIdempotent)) && bodyBytesSent == 0
        if retryable, retries < maxRetries, budgetAllows() {
            retries += 1
            lastFailure = failure
            state = .connecting
            return .retry
        }
        state = .finished
        return .respond(failure)
    }

    /// The response ended cleanly.
    mutating func responseEnded(upstreamReusable: Bool, bodyComplete: Bool, quiescing: Bool) -> Ending {
        state = .finished
        // A body the client did not finish sending is still on the wire of both connections.
        return Ending(
            reuseUpstream: upstreamReusable && bodyComplete,
            closeClient: responseClosesClient || !request.keepAlive || !bodyComplete || quiescing
        )
    }

    /// The proxy itself failed the exchange (bad body framing, a client timeout).
    mutating func localError() -> LocalErrorAction {
        let started = responseStarted
        state = .finished
        return started ? .closeClient : .respond
    }

    /// The exchange became a tunnel (101 to a WebSocket handshake).
    mutating func switchedProtocols() {
        state = .finished
    }
}
