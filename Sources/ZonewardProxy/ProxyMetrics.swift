import Prometheus
import ZonewardModel

/// The proxy's Prometheus metrics. Counters per (source, destination) zone pair are created when a
/// snapshot is planned, so the request path only increments.
public final class ProxyMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let reloadFailures: Counter
    let reloads: Counter
    let clientTimeouts: ClientTimeoutCounters

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        reloadFailures = registry.makeCounter(
            descriptor: describe(
                "zoneward_config_reload_failures_total",
                "Configuration reloads refused because the new file was invalid; the old one kept serving."
            )
        )
        reloads = registry.makeCounter(
            descriptor: describe("zoneward_config_reloads_total", "Configuration reloads applied.")
        )
        func timeout(_ kind: String) -> Counter {
            registry.makeCounter(
                descriptor: describe(
                    "zoneward_client_timeouts_total",
                    "Client connections ended by a timeout: requestHead, tlsHandshake, clientBody or clientWrite."
                ),
                labels: [("timeout", kind)]
            )
        }
        clientTimeouts = ClientTimeoutCounters(
            requestHead: timeout("requestHead"),
            tlsHandshake: timeout("tlsHandshake"),
            clientBody: timeout("clientBody"),
            clientWrite: timeout("clientWrite")
        )
    }

    /// `zoneward_replans_total{reason}`: re-plans because the topology changed, or measured demand moved.
    func replans(_ reason: String) -> Counter {
        registry.makeCounter(
            descriptor: describe(
                "zoneward_replans_total",
                "Re-plans by reason: topology (endpoints, health, drains, configuration) or demand."
            ),
            labels: [("reason", reason)]
        )
    }

    /// Sets `zoneward_discovery_state{service,state}`: 1 for the state discovery is in, 0 for the others.
    func setDiscoveryState(service: String, state: String) {
        for candidate in ["synced", "stale"] {
            registry.makeGauge(
                descriptor: describe(
                    "zoneward_discovery_state",
                    "1 for the state of a service's endpoint discovery: synced, or stale (last known endpoints kept)."
                ),
                labels: [("service", service), ("state", candidate)]
            ).set(to: candidate == state ? 1.0 : 0.0)
        }
    }

    /// The open-connection gauge and the refusal counter of one service's listener.
    func listenerMetrics(service: String) -> ListenerMetrics {
        ListenerMetrics(
            open: registry.makeGauge(
                descriptor: describe("zoneward_connections_open", "Client connections open on the listener."),
                labels: [("service", service)]
            ),
            refused: registry.makeCounter(
                descriptor: describe(
                    "zoneward_connections_refused_total",
                    "Client connections closed at once because the listener had maxConnections open."
                ),
                labels: [("service", service)]
            )
        )
    }

    /// Counters for one service as seen from `sourceZone`, indexed by destination zone (the last index is
    /// `none`: requests that never reached an endpoint).
    func serviceMetrics(service: String, sourceZone: String, zones: [String]) -> ServiceMetrics {
        let destinations = zones + ["none"]
        let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"]
        func labels(_ destination: String) -> [(String, String)] {
            [("service", service), ("source_zone", sourceZone), ("destination_zone", destination)]
        }
        return ServiceMetrics(
            requests: destinations.map { destination in
                classes.map { codeClass in
                    registry.makeCounter(
                        descriptor: describe(
                            "zoneward_requests_total",
                            "Requests by source zone, destination zone and response class."
                        ),
                        labels: labels(destination) + [("code_class", codeClass)]
                    )
                }
            },
            bytesSent: destinations.map {
                registry.makeCounter(
                    descriptor: describe(
                        "zoneward_bytes_total",
                        "Bytes relayed by source zone, destination zone and direction."
                    ),
                    labels: labels($0) + [("direction", "request")]
                )
            },
            bytesReceived: destinations.map {
                registry.makeCounter(
                    descriptor: describe(
                        "zoneward_bytes_total",
                        "Bytes relayed by source zone, destination zone and direction."
                    ),
                    labels: labels($0) + [("direction", "response")]
                )
            },
            latency: destinations.map {
                registry.makeDurationHistogram(
                    descriptor: describe(
                        "zoneward_upstream_latency_seconds",
                        "Time from sending a request upstream to its response head."
                    ),
                    labels: labels($0),
                    buckets: [
                        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
                        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
                        .milliseconds(500), .seconds(1), .seconds(2), .seconds(5),
                    ]
                )
            },
            retries: registry.makeCounter(
                descriptor: describe(
                    "zoneward_retries_total",
                    "Requests retried on another endpoint after a connect failure or reset."
                ),
                labels: [("service", service)]
            ),
            panicRequests: registry.makeCounter(
                descriptor: describe(
                    "zoneward_panic_requests_total",
                    "Requests routed while no endpoint was healthy (panic: all endpoints routing allows used)."
                ),
                labels: [("service", service)]
            ),
            noCapacityRequests: registry.makeCounter(
                descriptor: describe(
                    "zoneward_no_capacity_requests_total",
                    "Requests (TCP: connections) refused with 503 because no endpoint is where routing allows."
                ),
                labels: [("service", service)]
            )
        )
    }

    /// Sets the routing-state and endpoint-health gauges from a new snapshot.
    func publish(_ snapshot: RoutingSnapshot) {
        for routes in snapshot.services {
            for condition in RoutingCondition.allCases {
                registry.makeGauge(
                    descriptor: describe(
                        "zoneward_routing_state",
                        "1 for the reason zone routing is in its current state: local, spilling, draining, panic or unavailable."
                    ),
                    labels: [("service", routes.service.name), ("state", condition.rawValue)]
                ).set(to: condition == routes.condition ? 1.0 : 0.0)
            }
            for endpoint in routes.allEndpoints {
                let healthy = !snapshot.unhealthy.contains(endpoint.key) && !snapshot.ejected.contains(endpoint.key)
                registry.makeGauge(
                    descriptor: describe(
                        "zoneward_endpoint_healthy",
                        "1 when the endpoint passes health checks and is not ejected."
                    ),
                    labels: [
                        ("service", routes.service.name), ("endpoint", endpoint.address.description),
                        ("zone", endpoint.zone),
                    ]
                ).set(to: healthy ? 1.0 : 0.0)
            }
        }
    }
}

/// Client connections ended by each timeout.
struct ClientTimeoutCounters: Sendable {
    let requestHead: Counter
    let tlsHandshake: Counter
    let clientBody: Counter
    let clientWrite: Counter
}

/// One listener's connection gauge and refusals.
struct ListenerMetrics: Sendable {
    let open: Gauge
    let refused: Counter
}

/// One service's request counters by destination zone.
///
/// A class, not a struct: the request path reaches it through its routes once or twice per request, and
/// a struct of seven references was copied there with a retain and a release of each (about 400
/// instructions per request in bench/callgrind-proxy.sh).
final class ServiceMetrics: Sendable {
    /// `requests[destination][class]`, class 0 = 1xx … 4 = 5xx.
    let requests: [[Counter]]
    let bytesSent: [Counter]
    let bytesReceived: [Counter]
    let latency: [DurationHistogram]
    let retries: Counter
    let panicRequests: Counter
    let noCapacityRequests: Counter

    init(
        requests: [[Counter]],
        bytesSent: [Counter],
        bytesReceived: [Counter],
        latency: [DurationHistogram],
        retries: Counter,
        panicRequests: Counter,
        noCapacityRequests: Counter
    ) {
        self.requests = requests
        self.bytesSent = bytesSent
        self.bytesReceived = bytesReceived
        self.latency = latency
        self.retries = retries
        self.panicRequests = panicRequests
        self.noCapacityRequests = noCapacityRequests
    }

    func recordRequest(destination: Int, status: Int, sent: Int, received: Int) {
        // Out of range (never expected) counts as `none` rather than trapping.
        let index = destination < 0 || destination >= requests.count ? requests.count - 1 : destination
        requests[index][min(max(status / 100, 1), 5) - 1].increment()
        if sent > 0 { bytesSent[index].increment(by: Int64(sent)) }
        if received > 0 { bytesReceived[index].increment(by: Int64(received)) }
    }
}

/// A metric name with its help text.
private func describe(_ name: String, _ help: String) -> MetricNameDescriptor {
    MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
}
