import ZonewardModel

/// What draining one more zone does to each service: the cross-zone share before and after, and whether
/// a region the service serves from would be left with no capacity.
public struct DrainImpact: Sendable, Equatable {
    public var service: String
    public var crossZoneBefore: Double
    public var crossZoneAfter: Double
    public var crossRegionBefore: Double
    public var crossRegionAfter: Double
    /// Regions that serve the service now and would have no capacity after the drain.
    public var regionsLeftEmpty: [String]

    /// True when the drain would leave the service without capacity in one of its serving regions.
    public var isUnsafe: Bool { !regionsLeftEmpty.isEmpty }

    /// Assesses draining `zone` on top of `drainedZones` for every service of `configuration`.
    ///
    /// - Parameter activeRegions: the active region per service (from the state); default the primary.
    public static func assess(
        draining zone: String,
        configuration: ZonewardConfiguration,
        drainedZones: Set<String>,
        activeRegions: [String: String] = [:]
    ) -> [DrainImpact] {
        let after = drainedZones.union([zone])
        return configuration.services.map { service in
            let active = activeRegions[service.name]
            let before = PlanningProblem(
                configuration: configuration,
                service: service,
                drainedZones: drainedZones,
                activeRegion: active
            )
            let afterProblem = PlanningProblem(
                configuration: configuration,
                service: service,
                drainedZones: after,
                activeRegion: active
            )
            let planBefore = ZonePlanner.plan(before)
            let planAfter = ZonePlanner.plan(afterProblem)
            let servingBefore = capacityByRegion(before)
            let servingAfter = capacityByRegion(afterProblem)
            let emptied = configuration.regions.filter { (servingBefore[$0] ?? 0) > 0 && (servingAfter[$0] ?? 0) == 0 }
            return DrainImpact(
                service: service.name,
                crossZoneBefore: planBefore.crossZoneFraction,
                crossZoneAfter: planAfter.crossZoneFraction,
                crossRegionBefore: planBefore.crossRegionFraction,
                crossRegionAfter: planAfter.crossRegionFraction,
                regionsLeftEmpty: emptied
            )
        }
    }

    private static func capacityByRegion(_ problem: PlanningProblem) -> [String: Double] {
        problem.zones.reduce(into: [:]) { $0[$1.region, default: 0] += $1.capacity }
    }
}
