import Logging
import ZonewardModel

/// Follows one service's DNS names (one per zone, like Envoy's STRICT_DNS): resolves each name's A and
/// AAAA records, again when the shortest TTL runs out (bounded to 5 s … 5 min), and hands out the whole
/// endpoint set when it changes. A failure keeps the last answer (static stability) and retries in 5 s.
public final class DNSWatcher: Sendable {
    private let service: String
    private let entries: [(entry: DNSDiscovery, resolver: DNSResolver)]
    private let logger: Logger

    public static let minimumInterval: Duration = .seconds(5)
    public static let maximumInterval: Duration = .seconds(300)

    /// - Parameter entries: each name with the resolver to ask.
    public init(service: String, entries: [(entry: DNSDiscovery, resolver: DNSResolver)], logger: Logger) {
        self.service = service
        self.entries = entries
        self.logger = logger
    }

    /// The wait before the next resolution: the shortest TTL, bounded.
    static func interval(ttls: [UInt32]) -> Duration {
        let shortest = Duration.seconds(Int64(ttls.min() ?? 30))
        return min(max(shortest, minimumInterval), maximumInterval)
    }

    /// Runs until the task is cancelled, calling `emit` with every change of the set or of the state.
    public func run(_ emit: @Sendable (DiscoveryUpdate) -> Void) async {
        var last: [String: [DiscoveredEndpoint]] = [:]
        var published: [DiscoveredEndpoint]?
        var stale = false
        while !Task.isCancelled {
            var ttls: [UInt32] = []
            var failures: [String] = []
            for (entry, resolver) in entries {
                do {
                    let answers = try await resolver.resolve(entry.name)
                    ttls += answers.map(\.ttl)
                    last[entry.name] = answers.map {
                        DiscoveredEndpoint(address: HostPort(host: $0.address, port: entry.port), zone: entry.zone)
                    }
                } catch {
                    // Keep this name's last answer.
                    failures.append("\(entry.name): \(error)")
                }
            }
            let endpoints = entries.flatMap { last[$0.entry.name] ?? [] }
            if !failures.isEmpty {
                if !stale {
                    logger.warning(
                        "DNS discovery of \(service): \(failures.joined(separator: "; ")); keeping the last answers"
                    )
                }
                stale = true
                emit(
                    DiscoveryUpdate(
                        service: service,
                        endpoints: nil,
                        state: .stale,
                        detail: failures.joined(separator: "; ")
                    )
                )
            }
            if endpoints != published || (failures.isEmpty && stale) {
                if failures.isEmpty { stale = false }
                published = endpoints
                emit(DiscoveryUpdate(service: service, endpoints: endpoints, state: stale ? .stale : .synced))
            }
            try? await Task.sleep(for: failures.isEmpty ? Self.interval(ttls: ttls) : Self.minimumInterval)
        }
    }
}
