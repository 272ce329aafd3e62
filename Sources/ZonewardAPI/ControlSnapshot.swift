import Foundation

/// What proxies follow: per service the active region and its epoch, and the zones drained now. The
/// controller serves it at `/v1/snapshot`; `version` increases whenever the content changes, and `boot`
/// names the controller process that numbered it: versions of different boots do not compare.
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
    /// The controller process (boot) that numbered `version`; nil from a controller that predates boots.
    public var boot: String?
    public var services: [String: ServiceEntry]
    public var drainedZones: [String]
    /// The fleet's measured demand, requests (TCP: connections) per second by service and source zone, from
    /// the proxies' reports; nil from a controller without reports.
    public var demand: [String: [String: Double]]?
    /// When the newest report behind `demand` arrived, as of the snapshot's last change (it is not content:
    /// a new report alone does not make a new version).
    public var demandAt: Date?

    public init(
        version: Int,
        boot: String? = nil,
        services: [String: ServiceEntry],
        drainedZones: [String],
        demand: [String: [String: Double]]? = nil
    ) {
        self.version = version
        self.boot = boot
        self.services = services
        self.drainedZones = drainedZones
        self.demand = demand
    }

    /// Equal content, whatever the version.
    public func sameContent(as other: ControlSnapshot) -> Bool {
        services == other.services && drainedZones == other.drainedZones && demand == other.demand
    }
}

/// Where a follower of the controller's snapshots is: the boot and version of the last snapshot it took.
/// A snapshot from another boot is always news, whatever its version: a restarted controller numbers anew.
public struct SnapshotCursor: Sendable, Equatable {
    public var boot: String?
    public var version: Int

    public init(boot: String? = nil, version: Int = 0) {
        self.boot = boot
        self.version = version
    }

    /// Moves to `snapshot`; returns whether it is news (another boot, or a later version of the same boot).
    @discardableResult
    public mutating func advance(to snapshot: ControlSnapshot) -> Bool {
        let news = snapshot.boot != boot || snapshot.version > version
        boot = snapshot.boot
        version = snapshot.version
        return news
    }

    private static let bootCharacters = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-"))

    /// The query of the next long poll: `after=VERSION` and, once known, `boot=BOOT`.
    public var query: String {
        var query = "after=\(version)"
        if let boot, let encoded = boot.addingPercentEncoding(withAllowedCharacters: Self.bootCharacters) {
            query += "&boot=\(encoded)"
        }
        return query
    }
}

/// The body of `POST /v1/reports`: one proxy's measured demand, requests (TCP: new connections) per second
/// that start in its zone, per service, smoothed over `window`.
public struct DemandReport: Codable, Sendable, Equatable {
    /// The reporting proxy (its pod or host name): a later report from the same proxy replaces its last.
    public var proxy: String
    public var zone: String
    /// Rate per service.
    public var services: [String: Double]

    public init(proxy: String, zone: String, services: [String: Double]) {
        self.proxy = proxy
        self.zone = zone
        self.services = services
    }
}
