/// Connection limits and timeouts of the proxy's data path. Each default is what an operator would
/// expect of a sidecar or node proxy.
public struct ProxyTimeouts: Sendable {
    /// Connecting to an endpoint. Default 1s; a connect failure is retried on another endpoint.
    public var connect: Duration = .seconds(1)
    /// No byte from the endpoint for this long while a request waits: 504. Also how long an idle pooled
    /// upstream connection is kept. Default 30s.
    public var upstreamRead: Duration = .seconds(30)
    /// A client connection with no request in flight is closed after this long. Default 60s.
    public var clientIdle: Duration = .seconds(60)
    /// Graceful shutdown waits this long for in-flight requests. Default 20s.
    public var drain: Duration = .seconds(20)
    /// Upstream connections per endpoint per event loop; beyond it a request gets 503. Default 1024.
    public var maxConnectionsPerEndpoint = 1024
    /// Share of requests that may be retries, over a 10 s window. Default 0.2.
    public var retryBudget = 0.2
    /// Retries per request. Default 2.
    public var maxRetries = 2

    public init() {}
}
