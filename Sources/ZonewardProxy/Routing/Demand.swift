import Foundation
import Synchronization
import ZonewardModel

/// A request rate smoothed over `window`: an exponentially weighted moving average whose time constant is
/// half the window, so after a step change of the true rate the estimate has moved 86% of the way in one
/// window and 98% in two. (A time constant of a whole window would leave 14% after two windows: too slow
/// for a plan to follow a shift of the load within two windows, which is the point of measuring it.)
struct DemandRate: Sendable, Equatable {
    let window: Duration
    private(set) var rate: Double = 0
    private(set) var samples = 0

    init(window: Duration) {
        self.window = window
    }

    /// Adds `count` requests seen over `elapsed`.
    mutating func add(count: Int, over elapsed: Duration) {
        let seconds = elapsed / .seconds(1)
        guard seconds > 0, count >= 0 else { return }
        let instant = Double(count) / seconds
        samples += 1
        // Irregular ticks weigh by their length: exp(-Δt/τ) is the memory kept over Δt, τ = window / 2.
        let keep = exp(-2 * seconds / (window / .seconds(1)))
        rate = samples == 1 ? instant : keep * rate + (1 - keep) * instant
    }
}

/// Where a zone's demand in the plan came from.
public enum DemandSource: String, Sendable, Encodable, Equatable {
    /// Measured by the proxies of that zone.
    case measured
    /// The service's `demand:` from the configuration (scaled to the measured zones' rates).
    case configured
    /// Nothing known: equal demand per zone.
    case equal
}

/// One zone's demand as the planner uses it.
public struct ZoneDemand: Sendable, Equatable, Encodable {
    public var rate: Double
    public var source: DemandSource
}

/// Combines measured demand with its fallbacks, and decides when it moved enough to re-plan.
public enum DemandResolution {
    /// Per zone: measured when a zone has reports; else the configured demand, scaled so that configured
    /// and measured zones compare (by the ratio of measured to configured over the zones that have both);
    /// else equal demand (the mean of the measured rates, or 1 when nothing is measured).
    public static func resolve(
        zones: [String],
        measured: [String: Double],
        configured: [String: Double]?
    ) -> [String: ZoneDemand] {
        var result: [String: ZoneDemand] = [:]
        let measuredZones = zones.filter { measured[$0] != nil }
        if measuredZones.isEmpty {
            for zone in zones {
                if let configured {
                    result[zone] = ZoneDemand(rate: configured[zone] ?? 0, source: .configured)
                } else {
                    result[zone] = ZoneDemand(rate: 1, source: .equal)
                }
            }
            return result
        }
        let overlap = measuredZones.filter { (configured?[$0] ?? 0) > 0 }
        let configuredTotal = overlap.reduce(0) { $0 + (configured?[$1] ?? 0) }
        let measuredTotal = overlap.reduce(0) { $0 + (measured[$1] ?? 0) }
        let scale = configuredTotal > 0 ? measuredTotal / configuredTotal : nil
        let mean = measuredZones.reduce(0) { $0 + (measured[$1] ?? 0) } / Double(measuredZones.count)
        for zone in zones {
            if let rate = measured[zone] {
                result[zone] = ZoneDemand(rate: rate, source: .measured)
            } else if let scale, let declared = configured?[zone] {
                result[zone] = ZoneDemand(rate: declared * scale, source: .configured)
            } else {
                result[zone] = ZoneDemand(rate: mean, source: .equal)
            }
        }
        return result
    }

    /// The zones whose demand moved more than `threshold` (a share) from the plan in force. Relative to
    /// the zone's own demand, but never to less than 1% of the total, so a zone near zero does not re-plan
    /// the fleet on noise.
    static func moved(from old: [String: ZoneDemand], to new: [String: ZoneDemand], threshold: Double) -> [String] {
        let total = old.values.reduce(0) { $0 + $1.rate }
        var moved: [String] = []
        for zone in Set(old.keys).union(new.keys).sorted() {
            let before = old[zone]?.rate ?? 0
            let after = new[zone]?.rate ?? 0
            if old[zone]?.source != new[zone]?.source || abs(after - before) > threshold * max(before, 0.01 * total) {
                moved.append(zone)
            }
        }
        return moved
    }
}

/// Counts the requests (TCP: connections) of one service that start at this proxy: one relaxed atomic add
/// on the request path; the demand meter reads it once a second.
public final class DemandCounter: Sendable {
    let count = Atomic<Int>(0)

    public var total: Int { count.load(ordering: .relaxed) }
}
