import Logging
import ZonewardModel

/// What a discovery source says about one service: a new complete endpoint set, or only its state.
public struct DiscoveryUpdate: Sendable, Equatable {
    public enum State: String, Sendable, CaseIterable {
        /// The endpoints are what the source says now.
        case synced
        /// The source cannot be read: the last known endpoints stay in force.
        case stale
    }

    public var service: String
    /// The whole endpoint set when it changed; nil when only the state changed (an error never empties a set).
    public var endpoints: [DiscoveredEndpoint]?
    public var state: State
    /// Why stale, or which endpoints were left out and why.
    public var detail: String

    public init(service: String, endpoints: [DiscoveredEndpoint]?, state: State, detail: String = "") {
        self.service = service
        self.endpoints = endpoints
        self.state = state
        self.detail = detail
    }
}

/// Follows one Service's EndpointSlices: list, then watch, by `WatchStateMachine`'s rules, and hands out a
/// complete endpoint set per change. The zone of an endpoint without one comes from its node's label
/// (looked up once per node). Errors keep the last set (static stability) and are reported as `stale`.
public final class EndpointSliceWatcher: Sendable {
    private let service: String
    private let discovery: KubernetesDiscovery
    private let client: KubernetesClient
    private let knownZones: Set<String>
    private let logger: Logger
    private let random: @Sendable () -> Double

    /// - Parameters:
    ///   - service: the Zoneward service the endpoints are for.
    ///   - knownZones: the configuration's zones; endpoints elsewhere are left out.
    ///   - random: a number in [0, 1) for backoff jitter (injected by tests).
    public init(
        service: String,
        discovery: KubernetesDiscovery,
        client: KubernetesClient,
        knownZones: Set<String>,
        logger: Logger,
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) {
        self.service = service
        self.discovery = discovery
        self.client = client
        self.knownZones = knownZones
        self.logger = logger
        self.random = random
    }

    private var namespace: String { discovery.namespace ?? client.configuration.namespace ?? "default" }
    private var path: String { "/apis/discovery.k8s.io/v1/namespaces/\(namespace)/endpointslices" }
    private var selector: [(String, String)] {
        [("labelSelector", "\(Kubernetes.serviceNameLabel)=\(discovery.service)")]
    }

    /// Runs until the task is cancelled, calling `emit` with every change of the set or of the state.
    public func run(_ emit: @Sendable (DiscoveryUpdate) -> Void) async {
        var machine = WatchStateMachine()
        var cache = EndpointSliceCache()
        var nodeZones: [String: String] = [:]
        var published: [DiscoveredEndpoint]?
        var state = DiscoveryUpdate.State.stale
        var action = machine.start()

        func publish() async {
            await resolveNodeZones(cache, &nodeZones)
            let (endpoints, problems) = cache.endpoints(
                port: discovery.port,
                nodeZones: nodeZones,
                knownZones: knownZones
            )
            guard endpoints != published || state != .synced else { return }
            for problem in problems { logger.warning("discovery of \(service): \(problem)") }
            published = endpoints
            state = .synced
            emit(
                DiscoveryUpdate(
                    service: service,
                    endpoints: endpoints,
                    state: .synced,
                    detail: problems.joined(separator: "; ")
                )
            )
        }
        func failed(_ error: DiscoveryError) {
            if state != .stale || published == nil {
                logger.warning(
                    "discovery of \(service) from \(namespace)/\(discovery.service) failed: \(error); keeping the last \(published?.count ?? 0) endpoints"
                )
            }
            state = .stale
            emit(DiscoveryUpdate(service: service, endpoints: nil, state: .stale, detail: "\(error)"))
            action = machine.failed(random: random())
        }

        while !Task.isCancelled {
            switch action {
            case .list:
                do {
                    let list = try await client.get(
                        path,
                        query: selector,
                        as: Kubernetes.ObjectList<Kubernetes.EndpointSlice>.self
                    )
                    cache.replaceAll(list.items)
                    await publish()
                    action = machine.listed(resourceVersion: list.metadata.resourceVersion ?? "")
                } catch {
                    failed(error)
                }
            case .watch(let version):
                do {
                    let events = try await client.watch(
                        path,
                        query: selector,
                        from: version,
                        as: Kubernetes.EndpointSlice.self
                    )
                    if state == .stale, let published {
                        // The watch resumed where it stopped: the set is current again (missed events replay).
                        state = .synced
                        emit(DiscoveryUpdate(service: service, endpoints: nil, state: .synced))
                        logger.info("discovery of \(service) resumed with \(published.count) endpoints")
                    }
                    var gone = false
                    for try await event in events {
                        switch event {
                        case .error(let status):
                            if status.code == 410 {
                                gone = true
                            } else {
                                throw DiscoveryError.status(
                                    code: status.code ?? 500,
                                    reason: status.reason,
                                    message: status.message
                                )
                            }
                        case .bookmark(let version):
                            machine.received(resourceVersion: version)
                        case .added(let slice), .modified(let slice), .deleted(let slice):
                            machine.received(resourceVersion: slice.metadata.resourceVersion)
                            if cache.apply(event) { await publish() }
                        }
                        if gone { break }
                    }
                    action = gone ? machine.gone() : machine.watchEnded()
                } catch DiscoveryError.status(code: 410, _, _) {
                    action = machine.gone()
                } catch let error as DiscoveryError {
                    failed(error)
                } catch {
                    failed(.transport("\(error)"))
                }
            case .wait(let delay):
                try? await Task.sleep(for: delay)
                action = machine.backoffElapsed()
            }
        }
    }

    /// Looks up the zone label of nodes named by endpoints that carry no zone of their own.
    private func resolveNodeZones(_ cache: EndpointSliceCache, _ zones: inout [String: String]) async {
        for node in cache.nodesWithoutZone where zones[node] == nil {
            do {
                let object = try await client.get("/api/v1/nodes/\(node)", as: Kubernetes.Node.self)
                if let zone = object.metadata.labels?[Kubernetes.zoneLabel] { zones[node] = zone }
            } catch {
                logger.warning("discovery of \(service): cannot read node \(node)'s zone: \(error)")
            }
        }
    }
}

extension KubernetesClient {
    /// The zone of a node, from its `topology.kubernetes.io/zone` label (how a proxy learns its own zone).
    public func zone(ofNode name: String) async throws(DiscoveryError) -> String {
        let node = try await get("/api/v1/nodes/\(name)", as: Kubernetes.Node.self)
        guard let zone = node.metadata.labels?[Kubernetes.zoneLabel] else {
            throw .configuration("node \(name) has no \(Kubernetes.zoneLabel) label")
        }
        return zone
    }
}
