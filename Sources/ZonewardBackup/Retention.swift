import Foundation

/// Which backups a retention policy keeps, like restic's `forget --keep-*`: the newest `keepLast`, then
/// the newest backup of each of the last `keepDaily` days, `keepWeekly` ISO weeks and `keepMonthly`
/// months that have one. The newest verified backup is never let go. Pure: the calendar is passed in.
public struct RetentionPolicy: Sendable, Equatable {
    public var keepLast: Int
    public var keepDaily: Int
    public var keepWeekly: Int
    public var keepMonthly: Int

    public init(keepLast: Int = 0, keepDaily: Int = 0, keepWeekly: Int = 0, keepMonthly: Int = 0) {
        self.keepLast = keepLast
        self.keepDaily = keepDaily
        self.keepWeekly = keepWeekly
        self.keepMonthly = keepMonthly
    }

    /// One backup as the policy sees it.
    public struct Item: Sendable, Equatable {
        public var id: String
        public var time: Date
        public var verified: Bool

        public init(id: String, time: Date, verified: Bool) {
            self.id = id
            self.time = time
            self.verified = verified
        }
    }

    /// For every item, the rules that keep it (empty: it may go).
    public func decide(_ items: [Item], calendar: Calendar = Self.utc) -> [(item: Item, keptBy: [String])] {
        let newestFirst = items.sorted { $0.time > $1.time }
        var reasons: [String: [String]] = [:]
        for item in newestFirst.prefix(keepLast) { reasons[item.id, default: []].append("last \(keepLast)") }
        func keepPeriods(_ count: Int, _ name: String, _ period: (Date) -> DateComponents) {
            var seen: Set<DateComponents> = []
            for item in newestFirst where seen.count < count {
                if seen.insert(period(item.time)).inserted {
                    reasons[item.id, default: []].append("\(name) \(count)")
                }
            }
        }
        keepPeriods(keepDaily, "daily", { calendar.dateComponents([.year, .month, .day], from: $0) })
        keepPeriods(keepWeekly, "weekly", { calendar.dateComponents([.yearForWeekOfYear, .weekOfYear], from: $0) })
        keepPeriods(keepMonthly, "monthly", { calendar.dateComponents([.year, .month], from: $0) })
        if let newestVerified = newestFirst.first(where: \.verified) {
            reasons[newestVerified.id, default: []].append("newest verified")
        }
        return newestFirst.map { ($0, reasons[$0.id] ?? []) }
    }

    public static var utc: Calendar {
        var calendar = Calendar(identifier: .iso8601)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        return calendar
    }
}
