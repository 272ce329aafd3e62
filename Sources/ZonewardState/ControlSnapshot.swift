import Foundation

/// What proxies follow: per service the active region and its epoch, and the zones drained now. The
/// controller serves it at `/v1/snapshot`; `version` increases whenever the content changes.
public struct ControlSnapshot: Codable, Sendable, Equatable {
    public struct ServiceEntry: Codable, Sendable, Equatable {
        public var activeRegion: String
        public var epoch: Int64

        public init(activeRegion: String, epoch: Int64) {
            self.activeRegion = activeRegion
            self.epoch = epoch
        }
    }

    public var version: Int
    public var services: [String: ServiceEntry]
    public var drainedZones: [String]

    public init(version: Int, services: [String: ServiceEntry], drainedZones: [String]) {
        self.version = version
        self.services = services
        self.drainedZones = drainedZones
    }

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

    /// Equal content, whatever the version.
    public func sameContent(as other: ControlSnapshot) -> Bool {
        services == other.services && drainedZones == other.drainedZones
    }
}
