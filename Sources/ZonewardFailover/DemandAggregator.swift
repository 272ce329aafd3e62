import Foundation
import Synchronization
import ZonewardState

/// The fleet's demand from the proxies' reports: per service and zone, the sum over the zone's proxies of
/// their latest report. A report older than three demand windows no longer counts (that proxy is gone).
public final class DemandAggregator: Sendable {
    private struct Entry {
        var report: DemandReport
        var at: Date
    }

    private let reports = Mutex<[String: Entry]>([:])
    /// How long a report counts: three demand windows.
    public let lifetime: Duration

    public init(window: Duration) {
        lifetime = window * 3
    }

    public func record(_ report: DemandReport, at now: Date) {
        reports.withLock { $0[report.proxy] = Entry(report: report, at: now) }
    }

    /// Rates by service and zone at `now`, rounded to three significant digits (so that noise below that
    /// does not make a new snapshot version); nil when no report counts.
    public func demand(at now: Date) -> [String: [String: Double]]? {
        let cutoff = now.addingTimeInterval(-Double(lifetime.components.seconds))
        let live = reports.withLock { reports in
            reports = reports.filter { $0.value.at >= cutoff }
            return Array(reports.values)
        }
        guard !live.isEmpty else { return nil }
        var demand: [String: [String: Double]] = [:]
        for entry in live {
            for (service, rate) in entry.report.services where rate.isFinite && rate >= 0 {
                demand[service, default: [:]][entry.report.zone, default: 0] += rate
            }
        }
        return demand.mapValues { $0.mapValues(Self.rounded) }
    }

    /// When the newest report that still counts arrived; nil when none counts.
    public func newestReport(at now: Date) -> Date? {
        let cutoff = now.addingTimeInterval(-Double(lifetime.components.seconds))
        return reports.withLock { reports in reports.values.map(\.at).filter { $0 >= cutoff }.max() }
    }

    static func rounded(_ value: Double) -> Double {
        guard value > 0 else { return 0 }
        let scale = pow(10, 2 - floor(log10(value)))
        return (value * scale).rounded() / scale
    }
}
