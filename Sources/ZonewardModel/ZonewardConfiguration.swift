/// The declared state of a Zoneward deployment: topology, services, policies. Read from `zoneward.yaml`.
public struct ZonewardConfiguration: Sendable, Equatable {
    /// Availability zones, each in one region. Zone names are unique.
    public var zones: [ZoneConfiguration]
    /// Global routing policy: overload factor and hop costs.
    public var routing: RoutingConfiguration
    /// The services the proxy serves.
    public var services: [ServiceConfiguration]
    /// The admin listener (metrics, plan, health). Default `127.0.0.1:9901`.
    public var admin: AdminConfiguration
    /// The control plane's API listener; nil when not declared.
    public var controller: ControllerConfiguration?
    /// Scheduled backup jobs.
    public var backups: [BackupJobConfiguration] = []
    /// The data path's timeouts for every service; a service's own `timeouts:` overrides single fields.
    public var timeouts = TimeoutConfiguration()

    public init(
        zones: [ZoneConfiguration],
        routing: RoutingConfiguration = .init(),
        services: [ServiceConfiguration] = [],
        admin: AdminConfiguration = .init(),
        controller: ControllerConfiguration? = nil
    ) {
        self.zones = zones
        self.routing = routing
        self.services = services
        self.admin = admin
        self.controller = controller
    }

    /// The names of the regions, in order of first appearance.
    public var regions: [String] {
        var seen: [String] = []
        for zone in zones where !seen.contains(zone.region) {
            seen.append(zone.region)
        }
        return seen
    }

    public func zone(named name: String) -> ZoneConfiguration? {
        zones.first { $0.name == name }
    }

    public func service(named name: String) -> ServiceConfiguration? {
        services.first { $0.name == name }
    }

    public func backupJob(named name: String) -> BackupJobConfiguration? {
        backups.first { $0.name == name }
    }
}

/// One availability zone.
public struct ZoneConfiguration: Sendable, Equatable {
    public var name: String
    public var region: String

    public init(name: String, region: String) {
        self.name = name
        self.region = region
    }
}

/// How the planner trades cross-zone cost against load balance.
public struct RoutingConfiguration: Sendable, Equatable {
    /// α: how far above its fair share a zone may be loaded. Default 0.2 (20%).
    public var overloadFactor: Double
    /// The cost of each hop between zones.
    public var costs: CostConfiguration
    /// Time constant of the measured demand's moving average. Default 30s.
    public var demandWindow: Duration = .seconds(30)
    /// Re-plan on measured demand only when a zone's demand moved more than this share since the plan in
    /// force (topology and health changes re-plan at once). Default 0.1 (10%).
    public var replanThreshold: Double = 0.1
    /// Plan with measured demand (default true); false pins plans to the configured demand (demand is still
    /// measured and reported).
    public var measuredDemand = true

    public init(overloadFactor: Double = 0.2, costs: CostConfiguration = .init()) {
        self.overloadFactor = overloadFactor
        self.costs = costs
    }
}

/// The cost of sending one unit of traffic from one zone to another.
public struct CostConfiguration: Sendable, Equatable {
    /// Cost between two zones of one region. Default 1.
    public var crossZone: Double
    /// Cost between zones of different regions. Default 10.
    public var crossRegion: Double
    /// Directional per-pair overrides.
    public var pairs: [CostOverride]

    public init(crossZone: Double = 1, crossRegion: Double = 10, pairs: [CostOverride] = []) {
        self.crossZone = crossZone
        self.crossRegion = crossRegion
        self.pairs = pairs
    }

    /// The cost from zone `from` to zone `to`: 0 within a zone, else an override or the regional default.
    public func cost(from: ZoneConfiguration, to: ZoneConfiguration) -> Double {
        if from.name == to.name { return 0 }
        if let override = pairs.last(where: { $0.from == from.name && $0.to == to.name }) {
            return override.cost
        }
        return from.region == to.region ? crossZone : crossRegion
    }
}

/// A directional cost override between two zones.
public struct CostOverride: Sendable, Equatable {
    public var from: String
    public var to: String
    public var cost: Double

    public init(from: String, to: String, cost: Double) {
        self.from = from
        self.to = to
        self.cost = cost
    }
}

/// A host and port, e.g. `10.0.1.10:80` or `[::1]:8080`.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`; IPv6 hosts go in brackets. Nil when malformed or the port is not 0–65535.
    public init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        guard let port = Int(text[text.index(after: colon)...]), (0...65_535).contains(port) else { return nil }
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        } else if host.contains(":") {
            return nil
        }
        guard !host.isEmpty, !host.contains(where: \.isWhitespace) else { return nil }
        self.init(host: host, port: port)
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// One proxied service.
public struct ServiceConfiguration: Sendable, Equatable {
    public enum WireProtocol: String, Sendable, CaseIterable {
        case http, tcp
    }

    /// What the proxy speaks to an `http` service's endpoints.
    public enum UpstreamProtocol: String, Sendable, CaseIterable {
        /// HTTP/1.1 (default): HTTP/1.1 clients are proxied; HTTP/2 clients are refused.
        case http1
        /// HTTP/2 (h2c, or h2 with `upstreamTLS`): HTTP/2 and gRPC clients are proxied stream by stream.
        case http2
    }

    public enum RoutingMode: String, Sendable, CaseIterable {
        /// Stateless: every region's zones may serve; the cost matrix decides.
        case allRegions
        /// Geo-replicated with one writer region: only the active region's zones get capacity.
        case activeRegion
    }

    public var name: String
    /// Where the proxy listens for this service.
    public var listen: HostPort
    /// `http` (default) or `tcp`.
    public var wireProtocol: WireProtocol
    /// TLS termination on the listener; nil for plain text.
    public var tls: TLSConfiguration?
    /// TLS to the endpoints (HTTP services); nil for plain text.
    public var upstreamTLS: UpstreamTLSConfiguration?
    /// `allRegions` (default) or `activeRegion`.
    public var routing: RoutingMode
    /// The service's regions, primary first. Default: the regions of its endpoints, in declaration order.
    public var regions: [String]
    /// Traffic that originates in each zone; nil means equal demand per zone. Measured rates override it.
    public var demand: [String: Double]?
    public var endpoints: [EndpointConfiguration]
    public var healthCheck: HealthCheckConfiguration
    public var outlierDetection: OutlierDetectionConfiguration
    /// How the primary region moves; nil for a service that never fails over.
    public var failover: FailoverConfiguration?
    /// The data path's timeouts: the global ones with this service's overrides applied.
    public var timeouts = TimeoutConfiguration()
    /// Open client connections on this service's listener; beyond it a new connection is closed at once
    /// and counted in `zoneward_connections_refused_total`. Default 20,000.
    public var maxConnections = 20_000
    /// Whose `X-Forwarded-For` / `Forwarded` headers are kept; default nobody's (they are replaced).
    public var forwardedFor = ForwardedForConfiguration()
    /// Where endpoints come from besides `endpoints:` (Kubernetes EndpointSlices or DNS); nil for static only.
    public var discovery: DiscoveryConfiguration?
    /// `http1` (default) or `http2` (gRPC needs it): the protocol spoken to the endpoints of an `http` service.
    public var upstreamProtocol: UpstreamProtocol = .http1

    public init(
        name: String,
        listen: HostPort,
        wireProtocol: WireProtocol = .http,
        tls: TLSConfiguration? = nil,
        upstreamTLS: UpstreamTLSConfiguration? = nil,
        routing: RoutingMode = .allRegions,
        regions: [String] = [],
        demand: [String: Double]? = nil,
        endpoints: [EndpointConfiguration],
        healthCheck: HealthCheckConfiguration = .init(),
        outlierDetection: OutlierDetectionConfiguration = .init(),
        failover: FailoverConfiguration? = nil
    ) {
        self.name = name
        self.listen = listen
        self.wireProtocol = wireProtocol
        self.tls = tls
        self.upstreamTLS = upstreamTLS
        self.routing = routing
        self.regions = regions
        self.demand = demand
        self.endpoints = endpoints
        self.healthCheck = healthCheck
        self.outlierDetection = outlierDetection
        self.failover = failover
    }

    /// The primary region: the first declared one.
    public var primaryRegion: String? { regions.first }
}

/// One upstream endpoint of a service.
public struct EndpointConfiguration: Sendable, Equatable {
    public var address: HostPort
    public var zone: String
    /// Relative capacity; default 1. An endpoint of weight 0 takes no traffic.
    public var weight: Double

    public init(address: HostPort, zone: String, weight: Double = 1) {
        self.address = address
        self.zone = zone
        self.weight = weight
    }
}

/// PEM files for TLS.
public struct TLSConfiguration: Sendable, Equatable {
    public var certificateFile: String
    public var keyFile: String

    public init(certificateFile: String, keyFile: String) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }
}

/// TLS from the proxy to a service's endpoints, verified against a CA file.
public struct UpstreamTLSConfiguration: Sendable, Equatable {
    /// PEM file of the CA certificates that sign the endpoints' certificates.
    public var caFile: String
    /// The name to verify and send as SNI; default the endpoint's host (an IP is verified as an IP).
    public var serverName: String?

    public init(caFile: String, serverName: String? = nil) {
        self.caFile = caFile
        self.serverName = serverName
    }
}

/// Active health checking of endpoints.
public struct HealthCheckConfiguration: Sendable, Equatable {
    /// HTTP path to GET; nil checks by TCP connect. Default nil for tcp services, `/healthz` is common for http.
    public var path: String?
    /// The gRPC health protocol instead (`grpc.health.v1.Health/Check`) for this service name ("" asks for the
    /// server's overall health); only for `upstreamProtocol: http2`, never with `path`. Default nil.
    public var grpc: String?
    /// Time between checks. Default 2s.
    public var interval: Duration
    /// How long one check may take. Default 1s.
    public var timeout: Duration
    /// Consecutive failures that mark an endpoint unhealthy. Default 3.
    public var unhealthyThreshold: Int
    /// Consecutive successes that mark it healthy again. Default 2.
    public var healthyThreshold: Int

    public init(
        path: String? = nil,
        grpc: String? = nil,
        interval: Duration = .seconds(2),
        timeout: Duration = .seconds(1),
        unhealthyThreshold: Int = 3,
        healthyThreshold: Int = 2
    ) {
        self.path = path
        self.grpc = grpc
        self.interval = interval
        self.timeout = timeout
        self.unhealthyThreshold = unhealthyThreshold
        self.healthyThreshold = healthyThreshold
    }
}

/// Passive outlier detection: eject endpoints that keep failing real requests.
public struct OutlierDetectionConfiguration: Sendable, Equatable {
    /// Consecutive 5xx responses or connect failures that eject an endpoint. Default 5.
    public var consecutiveFailures: Int
    /// The first ejection's length; each further ejection of the same endpoint is longer. Default 30s.
    public var baseEjection: Duration
    /// At most this share of a zone's endpoints is ejected at once. Default 50.
    public var maxEjectedPercent: Double
    /// The longest ejection, however often an endpoint was ejected. Default 300s, as Envoy's.
    public var maxEjection: Duration

    public init(
        consecutiveFailures: Int = 5,
        baseEjection: Duration = .seconds(30),
        maxEjectedPercent: Double = 50,
        maxEjection: Duration = .seconds(300)
    ) {
        self.consecutiveFailures = consecutiveFailures
        self.baseEjection = baseEjection
        self.maxEjectedPercent = maxEjectedPercent
        self.maxEjection = maxEjection
    }
}

/// The admin listener: `/metrics`, `/admin/plan`, `/healthz`, `/readyz`.
public struct AdminConfiguration: Sendable, Equatable {
    /// Default `127.0.0.1:9901`: the whole admin surface stays inside the pod.
    public var listen: HostPort
    /// A second listener for the kubelet's probes and Prometheus (`/healthz`, `/readyz`, `/metrics` only),
    /// e.g. `0.0.0.0:9902`; nil for none. `/admin/plan` is never served here.
    public var probes: HostPort?

    public init(listen: HostPort = HostPort(host: "127.0.0.1", port: 9901), probes: HostPort? = nil) {
        self.listen = listen
        self.probes = probes
    }
}

/// The controller's HTTP API.
public struct ControllerConfiguration: Sendable, Equatable {
    /// Default `127.0.0.1:9900`.
    public var listen: HostPort
    /// File holding the bearer token that may do everything; nil means the token comes from the command line.
    public var tokenFile: String?
    /// Files holding tokens that may do part, by scope: `read`, `report` (for proxies), `operate`, `backup`
    /// (for backup runs).
    public var tokens: [String: String] = [:]
    /// The URL peers, proxies and the CLI reach this replica at (`advertise`); nil means `http://<listen>`.
    /// `zoneward controller --advertise` (e.g. from the pod IP) overrides it.
    public var advertise: String?
    /// Leader election and state shipping; nil runs one replica whose state is its local database.
    public var ha: ControllerHAConfiguration?

    public init(listen: HostPort = HostPort(host: "127.0.0.1", port: 9900), tokenFile: String? = nil) {
        self.listen = listen
        self.tokenFile = tokenFile
    }
}
