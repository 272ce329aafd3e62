import ZonewardModel

/// One endpoint as a discovery source sees it, before it becomes a routing endpoint.
public struct DiscoveredEndpoint: Sendable, Hashable {
    public var address: HostPort
    public var zone: String
    /// Takes new requests (Kubernetes: ready, which implies serving and not terminating).
    public var ready: Bool
    /// Still answers (a terminating endpoint may still serve its in-flight requests).
    public var serving: Bool
    public var terminating: Bool

    public init(address: HostPort, zone: String, ready: Bool = true, serving: Bool = true, terminating: Bool = false) {
        self.address = address
        self.zone = zone
        self.ready = ready
        self.serving = serving
        self.terminating = terminating
    }
}

/// The EndpointSlices of one Service, as the last list and the watch events since then say, and the one
/// complete endpoint set they add up to.
///
/// A Service's endpoints are spread over several slices; an endpoint may move between slices, and for a
/// moment stand in two. The set is computed from every slice at once, so a routing table sees a whole
/// set per change, never a half-applied one.
public struct EndpointSliceCache: Sendable, Equatable {
    private var slices: [String: Kubernetes.EndpointSlice] = [:]

    public init() {}

    public var sliceCount: Int { slices.count }

    /// Nodes named by endpoints that carry no zone of their own.
    public var nodesWithoutZone: Set<String> {
        var nodes: Set<String> = []
        for slice in slices.values {
            for endpoint in slice.endpoints ?? [] where endpoint.zone == nil {
                if let node = endpoint.nodeName { nodes.insert(node) }
            }
        }
        return nodes
    }

    /// Replaces everything with a fresh list.
    public mutating func replaceAll(_ items: [Kubernetes.EndpointSlice]) {
        slices = [:]
        for slice in items { slices[Self.key(slice)] = slice }
    }

    /// Applies one watch event; returns whether a slice changed.
    @discardableResult
    public mutating func apply(_ event: Kubernetes.WatchEvent<Kubernetes.EndpointSlice>) -> Bool {
        switch event {
        case .added(let slice), .modified(let slice):
            let key = Self.key(slice)
            guard slices[key] != slice else { return false }
            slices[key] = slice
            return true
        case .deleted(let slice):
            return slices.removeValue(forKey: Self.key(slice)) != nil
        case .bookmark, .error:
            return false
        }
    }

    private static func key(_ slice: Kubernetes.EndpointSlice) -> String {
        "\(slice.metadata.namespace ?? "")/\(slice.metadata.name ?? "")"
    }

    /// The endpoint set: every address of every slice on the selected port, with its zone (the endpoint's
    /// `zone`, else its node's zone label) and conditions read as Kubernetes defines them. Endpoints that
    /// cannot be used are left out and said why in `problems`.
    ///
    /// - Parameters:
    ///   - port: the Service port by name or number; nil takes a slice's only port.
    ///   - nodeZones: zone by node name, for endpoints without a `zone`.
    ///   - knownZones: the configuration's zones; an endpoint in another zone is left out.
    public func endpoints(
        port selector: PortSelector?,
        nodeZones: [String: String] = [:],
        knownZones: Set<String>
    ) -> (endpoints: [DiscoveredEndpoint], problems: [String]) {
        var byAddress: [HostPort: DiscoveredEndpoint] = [:]
        var problems: [String] = []
        for key in slices.keys.sorted() {
            guard let slice = slices[key] else { continue }
            let name = slice.metadata.name ?? "?"
            guard let addressType = slice.addressType, ["IPv4", "IPv6", "FQDN"].contains(addressType) else {
                problems.append("slice \(name): unsupported addressType \"\(slice.addressType ?? "")\"")
                continue
            }
            guard let port = Self.port(of: slice, selector) else {
                let ports = (slice.ports ?? []).map { "\($0.name ?? "")=\($0.port.map(String.init) ?? "?")" }
                problems.append(
                    "slice \(name): no port \(selector.map { "\"\($0)\"" } ?? "(it has \(ports.count), name one)") "
                        + "among [\(ports.joined(separator: ", "))]"
                )
                continue
            }
            for endpoint in slice.endpoints ?? [] {
                guard let zone = endpoint.zone ?? endpoint.nodeName.flatMap({ nodeZones[$0] }) else {
                    problems.append("slice \(name): endpoint \(endpoint.addresses.first ?? "?") has no zone")
                    continue
                }
                guard knownZones.contains(zone) else {
                    problems.append(
                        "slice \(name): endpoint \(endpoint.addresses.first ?? "?") is in unknown zone \(zone)"
                    )
                    continue
                }
                let conditions = endpoint.conditions ?? .init()
                let terminating = conditions.terminating ?? false
                let ready = (conditions.ready ?? true) && !terminating
                let serving = conditions.serving ?? (conditions.ready ?? true)
                for text in endpoint.addresses {
                    let host = text.hasPrefix("[") ? String(text.dropFirst().dropLast()) : text
                    guard !host.isEmpty, !host.contains(where: \.isWhitespace) else {
                        problems.append("slice \(name): invalid address \"\(text)\"")
                        continue
                    }
                    let discovered = DiscoveredEndpoint(
                        address: HostPort(host: host, port: port),
                        zone: zone,
                        ready: ready,
                        serving: serving,
                        terminating: terminating
                    )
                    // An endpoint moving between slices stands in both for a moment: the ready copy wins.
                    if let existing = byAddress[discovered.address], existing.ready, !discovered.ready { continue }
                    byAddress[discovered.address] = discovered
                }
            }
        }
        let sorted = byAddress.values.sorted {
            ($0.zone, $0.address.host, $0.address.port) < ($1.zone, $1.address.host, $1.address.port)
        }
        return (sorted, problems)
    }

    /// The slice's port matching the selector, in 1…65535.
    private static func port(of slice: Kubernetes.EndpointSlice, _ selector: PortSelector?) -> Int? {
        let ports = slice.ports ?? []
        let match: Kubernetes.EndpointSlice.Port?
        switch selector {
        case .name(let name): match = ports.first { $0.name == name }
        case .number(let number): match = ports.first { $0.port == number }
        case nil: match = ports.count == 1 ? ports.first : nil
        }
        guard let port = match?.port, (1...65_535).contains(port) else { return nil }
        return port
    }
}

extension Array where Element == DiscoveredEndpoint {
    /// The endpoints that take new requests: the ready ones; with none ready, the serving ones that are
    /// terminating (what kube-proxy falls back to, so a rollout's last pods still get traffic).
    public var routable: [DiscoveredEndpoint] {
        let ready = filter(\.ready)
        return ready.isEmpty ? filter { $0.serving && $0.terminating } : ready
    }
}
