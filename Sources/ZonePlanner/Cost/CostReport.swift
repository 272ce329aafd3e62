import Foundation
import ZonewardModel

/// Data-transfer prices, in dollars per GB (10^9 bytes). Defaults: AWS's published rates — $0.01/GB in
/// each direction between zones of one region (so $0.02 for every GB that crosses), $0.02/GB between
/// regions (charged once, by the sender).
public struct TransferPrices: Sendable, Equatable, Codable {
    public var crossZonePerGBEachWay: Double = 0.01
    public var crossRegionPerGB: Double = 0.02

    public init(crossZonePerGBEachWay: Double = 0.01, crossRegionPerGB: Double = 0.02) {
        self.crossZonePerGBEachWay = crossZonePerGBEachWay
        self.crossRegionPerGB = crossRegionPerGB
    }

    /// Dollars per byte from a zone of `from` to a zone of `to`.
    func perByte(sameZone: Bool, sameRegion: Bool) -> Double {
        if sameZone { return 0 }
        return (sameRegion ? 2 * crossZonePerGBEachWay : crossRegionPerGB) / 1e9
    }
}

/// The traffic one service carried between zones in a window, as the proxies measured it.
public struct ServiceTraffic: Sendable, Equatable {
    public var service: String
    /// Bytes both ways (request and response) per (source zone, destination zone).
    public var bytes: [ZonePair: Double]
    /// Requests per (source zone, destination zone).
    public var requests: [ZonePair: Double]

    public init(service: String, bytes: [ZonePair: Double] = [:], requests: [ZonePair: Double] = [:]) {
        self.service = service
        self.bytes = bytes
        self.requests = requests
    }
}

public struct ZonePair: Sendable, Hashable, Codable, Comparable {
    public var source: String
    public var destination: String

    public init(_ source: String, _ destination: String) {
        self.source = source
        self.destination = destination
    }

    public static func < (lhs: ZonePair, rhs: ZonePair) -> Bool {
        (lhs.source, lhs.destination) < (rhs.source, rhs.destination)
    }
}

/// What the measured traffic cost, and what the same traffic would cost routed another way.
public struct CostReport: Sendable, Equatable, Codable {
    /// One way of routing the measured traffic.
    public struct Alternative: Sendable, Equatable, Codable {
        /// `measured`, `zoneward α=0.3`, `envoy`, `prefer-same-zone`, `round-robin`.
        public var name: String
        /// Zoneward's overload factor for the α sweep; nil for the others.
        public var alpha: Double?
        /// Dollars for the window.
        public var cost: Double
        /// Dollars for 30 days at the window's rate.
        public var monthly: Double
        /// The most loaded zone's load ÷ its fair share (1 = exactly its share).
        public var worstOverload: Double
        /// Share of bytes that cross zones.
        public var crossZoneShare: Double
    }

    /// One row of the measured matrix.
    public struct Pair: Sendable, Equatable, Codable {
        public var service: String
        public var source: String
        public var destination: String
        public var bytes: Double
        public var requests: Double
        public var cost: Double
    }

    public var windowSeconds: Double
    public var prices: TransferPrices
    public var pairs: [Pair]
    /// `measured` first, then the alternatives, then Zoneward's α sweep in order.
    public var alternatives: [Alternative]
    /// The α of the plan in force (the configuration's), marked on the plot.
    public var alphaInForce: Double

    /// The measured traffic's alternative.
    public var measured: Alternative? { alternatives.first { $0.name == "measured" } }

    /// Builds the report: each service's measured bytes per source zone are its demand; capacity per zone is
    /// the service's endpoint weights (from the configuration); every alternative routes the same demand.
    public static func build(
        traffic: [ServiceTraffic],
        configuration: ZonewardConfiguration,
        prices: TransferPrices,
        window: Double,
        alphas: [Double] = stride(from: 0.0, through: 1.0001, by: 0.1).map { ($0 * 10).rounded() / 10 }
    ) -> CostReport {
        let regionOf = Dictionary(configuration.zones.map { ($0.name, $0.region) }, uniquingKeysWith: { a, _ in a })
        func price(_ s: String, _ t: String) -> Double {
            prices.perByte(sameZone: s == t, sameRegion: regionOf[s] == regionOf[t] && regionOf[s] != nil)
        }
        let month = 30 * 86_400 / max(window, 1e-9)
        var pairs: [Pair] = []
        for service in traffic {
            for (pair, bytes) in service.bytes.sorted(by: { $0.key < $1.key })
            where bytes > 0 || (service.requests[pair] ?? 0) > 0 {
                pairs.append(
                    Pair(
                        service: service.service,
                        source: pair.source,
                        destination: pair.destination,
                        bytes: bytes,
                        requests: service.requests[pair] ?? 0,
                        cost: bytes * price(pair.source, pair.destination)
                    )
                )
            }
        }
        // Sums over services: cost, crossing bytes, total bytes; overload is the worst of any service.
        struct Tally {
            var cost = 0.0
            var crossing = 0.0
            var total = 0.0
            var worst = 0.0
        }
        var tallies: [String: Tally] = [:]
        var order: [String] = ["measured", "envoy", "prefer-same-zone", "round-robin"]
        order += alphas.map { "zoneward α=\(formatNumber($0))" }
        for service in traffic {
            guard let definition = configuration.service(named: service.service) else { continue }
            let zones = configuration.zones.map(\.name)
            var demand: [String: Double] = [:]
            for (pair, bytes) in service.bytes { demand[pair.source, default: 0] += bytes }
            let base = PlanningProblem(configuration: configuration, service: definition, demand: demand)
            let n = zones.count
            let capacity = base.zones.map(\.capacity)
            let totalCapacity = capacity.reduce(0, +)
            let totalDemand = base.totalDemand
            guard totalDemand > 0 else { continue }
            var costMatrix: [Double] = []
            for s in zones { for t in zones { costMatrix.append(price(s, t) * 1e9) } }
            func tally(_ name: String, flow: (Int, Int) -> Double) {
                var entry = tallies[name] ?? Tally()
                var load = [Double](repeating: 0, count: n)
                for s in 0..<n {
                    for t in 0..<n {
                        let amount = flow(s, t)
                        guard amount > 0 else { continue }
                        load[t] += amount
                        entry.cost += amount * price(zones[s], zones[t])
                        entry.total += amount
                        if s != t { entry.crossing += amount }
                    }
                }
                for t in 0..<n where capacity[t] > 0 && totalCapacity > 0 {
                    entry.worst = max(entry.worst, (load[t] / totalDemand) / (capacity[t] / totalCapacity))
                }
                for t in 0..<n where capacity[t] == 0 && load[t] > 0 { entry.worst = .infinity }
                tallies[name] = entry
            }
            let index = Dictionary(zones.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
            var measured = [Double](repeating: 0, count: n * n)
            for (pair, bytes) in service.bytes {
                if let s = index[pair.source], let t = index[pair.destination] { measured[s * n + t] += bytes }
            }
            tally("measured") { measured[$0 * n + $1] }
            let problem = PlanningProblem(zones: base.zones, overloadFactor: 0, cost: costMatrix)
            let envoy = EnvoyBaseline.plan(problem)
            tally("envoy") { base.zones[$0].demand * envoy.route(from: $0, to: $1) }
            // Kubernetes trafficDistribution: PreferSameZone: local endpoints when the zone has any, else all.
            tally("prefer-same-zone") { s, t in
                let d = base.zones[s].demand
                if capacity[s] > 0 { return s == t ? d : 0 }
                return totalCapacity > 0 ? d * capacity[t] / totalCapacity : 0
            }
            tally("round-robin") { s, t in
                totalCapacity > 0 ? base.zones[s].demand * capacity[t] / totalCapacity : 0
            }
            for alpha in alphas {
                var sweep = problem
                sweep.overloadFactor = alpha
                let plan = ZonePlanner.plan(sweep)
                tally("zoneward α=\(formatNumber(alpha))") { plan.flow(from: $0, to: $1) }
            }
        }
        let alternatives = order.compactMap { name -> Alternative? in
            guard let entry = tallies[name] else { return nil }
            let alpha = name.hasPrefix("zoneward α=") ? Double(name.dropFirst("zoneward α=".count)) : nil
            return Alternative(
                name: name,
                alpha: alpha,
                cost: entry.cost,
                monthly: entry.cost * month,
                worstOverload: entry.worst,
                crossZoneShare: entry.total > 0 ? entry.crossing / entry.total : 0
            )
        }
        return CostReport(
            windowSeconds: window,
            prices: prices,
            pairs: pairs,
            alternatives: alternatives,
            alphaInForce: configuration.routing.overloadFactor
        )
    }
}
