import Foundation

/// A 5-field cron expression (minute hour day-of-month month day-of-week) with `*`, lists, ranges and
/// steps, evaluated in UTC. When both day fields are restricted, either may match (as in cron).
public struct CronSchedule: Sendable, Equatable {
    public let expression: String
    let minutes: Set<Int>
    let hours: Set<Int>
    let days: Set<Int>
    let months: Set<Int>
    let weekdays: Set<Int>
    let daysRestricted: Bool
    let weekdaysRestricted: Bool

    /// Parses `expression`; nil when it is not valid 5-field cron.
    public init?(_ expression: String) {
        let fields = expression.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard fields.count == 5,
            let minutes = Self.parse(fields[0], 0...59),
            let hours = Self.parse(fields[1], 0...23),
            let days = Self.parse(fields[2], 1...31),
            let months = Self.parse(fields[3], 1...12),
            var weekdays = Self.parse(fields[4], 0...7)
        else { return nil }
        if weekdays.contains(7) { weekdays.insert(0) }
        self.expression = expression
        self.minutes = minutes
        self.hours = hours
        self.days = days
        self.months = months
        self.weekdays = weekdays
        daysRestricted = fields[2] != "*"
        weekdaysRestricted = fields[4] != "*"
    }

    private static func parse(_ field: String, _ range: ClosedRange<Int>) -> Set<Int>? {
        var values: Set<Int> = []
        for part in field.split(separator: ",") {
            var body = Substring(part)
            var step = 1
            if let slash = body.firstIndex(of: "/") {
                guard let parsed = Int(body[body.index(after: slash)...]), parsed > 0 else { return nil }
                step = parsed
                body = body[..<slash]
            }
            let bounds: ClosedRange<Int>
            if body == "*" {
                bounds = range
            } else if let dash = body.firstIndex(of: "-") {
                guard let low = Int(body[..<dash]), let high = Int(body[body.index(after: dash)...]), low <= high
                else { return nil }
                bounds = low...high
            } else {
                guard let value = Int(body) else { return nil }
                bounds = value...(step > 1 ? range.upperBound : value)
            }
            guard range.contains(bounds.lowerBound), range.contains(bounds.upperBound) else { return nil }
            values.formUnion(stride(from: bounds.lowerBound, through: bounds.upperBound, by: step))
        }
        return values.isEmpty ? nil : values
    }

    /// Whether the schedule fires in the minute that contains `date`.
    public func matches(_ date: Date) -> Bool {
        let c = Self.calendar.dateComponents([.minute, .hour, .day, .month, .weekday], from: date)
        guard let minute = c.minute, let hour = c.hour, let day = c.day, let month = c.month, let weekday = c.weekday
        else { return false }
        let dayMatches: Bool
        let weekdayMatch = weekdays.contains(weekday - 1)
        switch (daysRestricted, weekdaysRestricted) {
        case (true, true): dayMatches = days.contains(day) || weekdayMatch
        case (true, false): dayMatches = days.contains(day)
        case (false, true): dayMatches = weekdayMatch
        case (false, false): dayMatches = true
        }
        return minutes.contains(minute) && hours.contains(hour) && months.contains(month) && dayMatches
    }

    /// The first firing strictly after `date` (to the minute), searching up to a year ahead.
    public func next(after date: Date) -> Date? {
        let start = Self.calendar.dateInterval(of: .minute, for: date)?.start ?? date
        var candidate = start.addingTimeInterval(60)
        for _ in 0..<(366 * 24 * 60) {
            if matches(candidate) { return candidate }
            candidate.addTimeInterval(60)
        }
        return nil
    }

    static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        return calendar
    }()
}
