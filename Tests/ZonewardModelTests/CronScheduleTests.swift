import Foundation
import Testing
import ZonewardModel

@Suite struct CronScheduleTests {
    let base = Date(timeIntervalSince1970: 1_798_761_600)  // 2027-01-01T00:00:00Z, a Friday

    @Test func hourlyAtMinute17() throws {
        let schedule = try #require(CronSchedule("17 * * * *"))
        #expect(schedule.next(after: base) == base + 17 * 60)
        #expect(schedule.next(after: base + 17 * 60) == base + 3600 + 17 * 60)
    }

    @Test func stepsListsAndRanges() throws {
        let schedule = try #require(CronSchedule("*/15 9-17 * * 1-5"))
        // Friday 00:00 → Friday 09:00.
        #expect(schedule.next(after: base) == base + 9 * 3600)
        #expect(CronSchedule("0 0,12 * * *")?.next(after: base) == base + 12 * 3600)
    }

    @Test func weekdaysAndSundayAsSeven() throws {
        // The next Sunday 03:00 after Friday 2027-01-01 is 2027-01-03.
        #expect(CronSchedule("0 3 * * 7")?.next(after: base) == base + 2 * 86_400 + 3 * 3600)
        #expect(CronSchedule("0 3 * * 0")?.next(after: base) == base + 2 * 86_400 + 3 * 3600)
    }

    @Test(arguments: ["", "* * * *", "60 * * * *", "* 24 * * *", "*/0 * * * *", "a * * * *", "5-1 * * * *"])
    func refusesInvalidExpressions(expression: String) {
        #expect(CronSchedule(expression) == nil)
    }
}
