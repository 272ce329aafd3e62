/// The input of `zoneward plan`: zones with their demand and capacity, the overload factor and the costs.
public struct PlanTopology: Sendable, Equatable {
    /// One zone of the topology file.
    public struct Zone: Sendable, Equatable {
        public var name: String
        public var region: String
        /// Traffic that originates in the zone (requests/s or any unit; only ratios matter).
        public var demand: Double
        /// Sum of the weights of the zone's healthy, undrained endpoints.
        public var capacity: Double

        public init(name: String, region: String, demand: Double, capacity: Double) {
            self.name = name
            self.region = region
            self.demand = demand
            self.capacity = capacity
        }

        public var configuration: ZoneConfiguration { ZoneConfiguration(name: name, region: region) }
    }

    /// α ≥ 0; default 0.2.
    public var overloadFactor: Double
    public var costs: CostConfiguration
    public var zones: [Zone]

    public init(overloadFactor: Double = 0.2, costs: CostConfiguration = .init(), zones: [Zone]) {
        self.overloadFactor = overloadFactor
        self.costs = costs
        self.zones = zones
    }

    /// Reads and validates a topology file (YAML or JSON).
    public static func load(file path: String) throws(ConfigurationError) -> PlanTopology {
        let text = try readDocument(path)
        do {
            return try parse(text)
        } catch {
            throw ConfigurationError(file: path, problems: error.problems)
        }
    }

    /// Parses and validates a topology document (YAML or JSON).
    public static func parse(_ text: String) throws(ConfigurationError) -> PlanTopology {
        let reader = DocumentReader()
        guard let root = reader.parse(text),
            let fields = reader.mapping(root, known: ["overloadFactor", "costs", "zones"])
        else {
            throw ConfigurationError(problems: reader.problems)
        }
        var topology = PlanTopology(zones: [])
        if let alpha = fields["overloadFactor"] {
            topology.overloadFactor = reader.number(alpha) ?? topology.overloadFactor
        }
        if let zonesValue = reader.required(fields, "zones", in: root) {
            let decoded = decodeZones(zonesValue, reader, extraFields: ["demand", "capacity"])
            for (zone, zoneFields, item) in decoded {
                let demand = reader.required(zoneFields, "demand", in: item).flatMap { reader.number($0) }
                let capacity = reader.required(zoneFields, "capacity", in: item).flatMap { reader.number($0) }
                if let demand, let capacity {
                    topology.zones.append(
                        Zone(name: zone.name, region: zone.region, demand: demand, capacity: capacity)
                    )
                }
            }
            if let costs = fields["costs"] {
                topology.costs = decodeCosts(costs, zoneNames: decoded.map(\.zone.name), reader) ?? topology.costs
            }
            if reader.problems.isEmpty, !topology.zones.isEmpty, topology.zones.allSatisfy({ $0.capacity == 0 }) {
                reader.report(zonesValue.path, "every zone has capacity 0: nothing can serve the demand")
            }
        }
        guard reader.problems.isEmpty else { throw ConfigurationError(problems: reader.problems) }
        return topology
    }
}
