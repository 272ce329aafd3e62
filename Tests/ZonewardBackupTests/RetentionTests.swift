import Foundation
import Testing
import ZonewardBackup

@Suite struct RetentionTests {
    let hour: TimeInterval = 3600
    let start = Date(timeIntervalSince1970: 1_798_761_600)  // 2027-01-01T00:00:00Z, a Friday

    /// Hourly backups over 40 days.
    var items: [RetentionPolicy.Item] {
        (0..<(40 * 24)).map { RetentionPolicy.Item(id: "b\($0)", time: start + Double($0) * hour, verified: false) }
    }

    func kept(_ policy: RetentionPolicy, _ items: [RetentionPolicy.Item]) -> [String] {
        policy.decide(items).filter { !$0.keptBy.isEmpty }.map(\.item.id)
    }

    @Test func keepsTheLastN() {
        #expect(kept(RetentionPolicy(keepLast: 3), items) == ["b959", "b958", "b957"])
    }

    @Test func keepsTheNewestOfEachDay() {
        let result = kept(RetentionPolicy(keepDaily: 3), items)
        // The newest backup of each of the last three days: 23:00 of days 39, 38, 37.
        #expect(result == ["b959", "b935", "b911"])
    }

    @Test func rulesCombineAndSayWhy() {
        let decisions = RetentionPolicy(keepLast: 2, keepDaily: 2, keepWeekly: 2, keepMonthly: 2).decide(items)
        let newest = decisions.first { $0.item.id == "b959" }
        #expect(newest?.keptBy == ["last 2", "daily 2", "weekly 2", "monthly 2"])
        // January's newest backup is kept by the monthly rule.
        #expect(decisions.first { $0.item.id == "b743" }?.keptBy == ["monthly 2"])
        #expect(decisions.filter { !$0.keptBy.isEmpty }.count == 5)
    }

    @Test func neverLetsTheNewestVerifiedBackupGo() {
        var list = items
        list[10].verified = true
        list[20].verified = true
        let result = RetentionPolicy(keepLast: 1).decide(list)
        #expect(result.first { $0.item.id == "b20" }?.keptBy == ["newest verified"])
        #expect(result.first { $0.item.id == "b10" }?.keptBy.isEmpty == true)
    }
}
