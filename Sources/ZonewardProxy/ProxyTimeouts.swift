/// The proxy process's own limits. Each default is what an operator would expect of a sidecar or node
/// proxy. The per-connection timeouts are configuration (`TimeoutConfiguration`, `timeouts:` in YAML).
public struct ProxyTimeouts: Sendable {
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
