import Foundation
import ZonewardAPI

extension ControlSnapshot {
    /// The content of the state database at `now`, at version 0.
    public static func read(from store: StateStore, at now: Date) throws(StateError) -> ControlSnapshot {
        let services = Dictionary(
            uniqueKeysWithValues: try store.serviceStates().map {
                ($0.service, ServiceEntry(activeRegion: $0.activeRegion, epoch: $0.epoch))
            }
        )
        return ControlSnapshot(
            version: 0,
            services: services,
            drainedZones: try store.activeDrains(at: now).map(\.zone)
        )
    }
}
