/// Where a service's endpoints come from when they are not listed in the file.
public enum DiscoveryConfiguration: Sendable, Equatable {
    /// `discovery.k8s.io/v1` EndpointSlices of a Kubernetes Service, through the API server.
    case kubernetes(KubernetesDiscovery)
    /// DNS names per zone, re-resolved at their TTL (like Envoy's STRICT_DNS).
    case dns([DNSDiscovery])
}

/// `discovery: {kubernetes: {namespace, service, port}}`.
public struct KubernetesDiscovery: Sendable, Equatable {
    /// The Service's namespace; default the proxy's own (the service account's namespace file).
    public var namespace: String?
    /// The Service's name: EndpointSlices labelled `kubernetes.io/service-name=<service>` are followed.
    public var service: String
    /// Which port of the slices: the Service port's name, or a number; nil when the slices have one port.
    public var port: PortSelector?

    public init(namespace: String? = nil, service: String, port: PortSelector? = nil) {
        self.namespace = namespace
        self.service = service
        self.port = port
    }
}

/// A port by name (`http`) or by number (`8080`).
public enum PortSelector: Sendable, Equatable, CustomStringConvertible {
    case name(String)
    case number(Int)

    public var description: String {
        switch self {
        case .name(let name): name
        case .number(let number): String(number)
        }
    }
}

/// One DNS name whose A/AAAA records are a zone's endpoints.
public struct DNSDiscovery: Sendable, Equatable {
    public var name: String
    public var port: Int
    public var zone: String
    /// The DNS server to ask (UDP); default the first `nameserver` of /etc/resolv.conf.
    public var resolver: HostPort?

    public init(name: String, port: Int, zone: String, resolver: HostPort? = nil) {
        self.name = name
        self.port = port
        self.zone = zone
        self.resolver = resolver
    }
}
