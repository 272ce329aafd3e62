import Testing
import ZonewardModel

/// Out-of-range input is refused at validation with the field path, never a trap or a non-finite value.
@Suite struct InputBoundsTests {
    @Test func aDurationTooLongForDurationIsRefusedNotTrapped() {
        #expect(TimeSpan.parse("99999999999999999999h") == nil)
        #expect(throws: TimeSpan.ParseError.tooLong) { try TimeSpan.parseChecked("99999999999999999999h") }
        // So many digits that the number itself is infinite as a Double.
        #expect(throws: TimeSpan.ParseError.tooLong) {
            try TimeSpan.parseChecked(String(repeating: "9", count: 400) + "s")
        }
        #expect(throws: TimeSpan.ParseError.tooLong) { try TimeSpan.parseChecked("36500d1ms") }
        #expect(TimeSpan.parse("36500d") == TimeSpan.maximum)
        #expect(throws: TimeSpan.ParseError.malformed) { try TimeSpan.parseChecked("soon") }
        // Non-ASCII digits are not digits of a duration.
        #expect(TimeSpan.parse("٣s") == nil)
    }

    @Test func aConfigDurationTooLongNamesTheField() {
        let found = problems(service: "healthCheck: {interval: 99999999999999999999h}")
        #expect(found == [#"services[0].healthCheck.interval: must be at most 36500d, got "99999999999999999999h""#])
    }

    @Test func aHugeNumberNamesTheField() {
        #expect(
            problems(service: "demand: {a: 1e308}")
                == ["services[0].demand.a: must be ≤ 1000000000000, got 1e+308"]
        )
        #expect(
            topologyProblems("zones: [{name: a, region: r, demand: 1e308, capacity: 1}]")
                == ["zones[0].demand: must be ≤ 1000000000000, got 1e+308"]
        )
        #expect(
            topologyProblems("overloadFactor: 1e300\nzones: [{name: a, region: r, demand: 1, capacity: 1}]")
                == ["overloadFactor: must be ≤ 1000000000000, got 1e+300"]
        )
    }

    /// YAML 1.1 reads `1:2:3` as base-60; Yams multiplies without overflow checks and traps on long ones.
    @Test func aSexagesimalWholeNumberIsRefusedNotTrapped() {
        let found = problems(service: "healthCheck: {unhealthyThreshold: 1:1:1:1:1:1:1:1:1:1:1:1}")
        #expect(
            found == [
                #"services[0].healthCheck.unhealthyThreshold: expected a whole number, got "1:1:1:1:1:1:1:1:1:1:1:1""#
            ]
        )
    }

    @Test func aHugeWholeNumberNamesTheField() {
        #expect(
            problems(service: "healthCheck: {unhealthyThreshold: 9223372036854775807}")
                == ["services[0].healthCheck.unhealthyThreshold: must be ≤ 1000000000, got 9223372036854775807"]
        )
        #expect(
            problems(service: "healthCheck: {unhealthyThreshold: 99999999999999999999}")
                == [#"services[0].healthCheck.unhealthyThreshold: expected a whole number, got "99999999999999999999""#]
        )
    }

    private func problems(service extra: String) -> [String] {
        let yaml = """
            zones: [{name: a, region: r}]
            services:
              - name: web
                listen: 127.0.0.1:8080
                endpoints: [{address: 127.0.0.1:1, zone: a}]
                \(extra)
            """
        do {
            _ = try ZonewardConfiguration.parse(yaml: yaml)
            return []
        } catch {
            return error.problems.map(\.description)
        }
    }

    private func topologyProblems(_ text: String) -> [String] {
        do {
            _ = try PlanTopology.parse(text)
            return []
        } catch {
            return error.problems.map(\.description)
        }
    }
}
