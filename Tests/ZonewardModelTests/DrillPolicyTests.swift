import Foundation
import Testing
import ZonewardModel

@Suite struct DrillPolicyTests {
    func yaml(job: String = "", failover: String = "") -> String {
        """
        zones:
          - {name: za, region: ra}
          - {name: zb, region: rb}
        services:
          - name: orders
            listen: 127.0.0.1:1
            regions: [ra, rb]
            endpoints:
              - {address: 127.0.0.1:2, zone: za}
              - {address: 127.0.0.1:3, zone: zb}
            failover: {mode: manual\(failover)}
        backups:
          - name: state
            source: {sqlite: /tmp/x.db}
            schedule: "17 * * * *"
            targets: [{filesystem: /tmp/b}]
            encryption: {keyFile: /tmp/k}\(job)
        """
    }

    func problems(_ text: String) -> [String] {
        do {
            _ = try ZonewardConfiguration.parse(yaml: text)
            return []
        } catch {
            return error.problems.map(\.description)
        }
    }

    @Test func decodesThePoliciesOfJobsAndServices() throws {
        let configuration = try ZonewardConfiguration.parse(
            yaml: yaml(
                job: "\n    drill: {every: 7d, schedule: \"0 3 * * 0\", rtoTarget: 10m, rpoTarget: 1h}",
                failover: ", drill: {every: 30d, rtoTarget: 30s}"
            )
        )
        let job = try #require(configuration.backupJob(named: "state")?.drill)
        #expect(
            job
                == DrillPolicy(
                    every: .seconds(7 * 86_400),
                    schedule: "0 3 * * 0",
                    rtoTarget: .seconds(600),
                    rpoTarget: .seconds(3600)
                )
        )
        let service = try #require(configuration.service(named: "orders")?.failover?.drill)
        #expect(service.every == .seconds(30 * 86_400))
        #expect(service.schedule == nil)
        #expect(configuration.backupJob(named: "state")?.drill?.rtoTarget == .seconds(600))
    }

    @Test func withoutAPolicyThereIsNone() throws {
        let configuration = try ZonewardConfiguration.parse(yaml: yaml())
        #expect(configuration.backupJob(named: "state")?.drill == nil)
        #expect(configuration.service(named: "orders")?.failover?.drill == nil)
    }

    @Test func badFieldsAreNamed() {
        #expect(
            problems(yaml(job: "\n    drill: {every: often}"))
                == [#"backups[0].drill.every: expected a duration such as 500ms, 2s, 30m or 1h, got "often""#]
        )
        #expect(
            problems(yaml(failover: ", drill: {schedule: \"weekly\"}"))
                == [
                    #"services[0].failover.drill.schedule: expected a 5-field cron expression (minute hour day month weekday) such as "0 3 * * 0", got "weekly""#
                ]
        )
        #expect(
            problems(yaml(failover: ", drill: {every: 0s}"))
                == ["services[0].failover.drill.every: must be at least 1s, got 0s"]
        )
        #expect(
            problems(yaml(job: "\n    drill: {rtoTaget: 5m}")).first?.hasPrefix("backups[0].drill.rtoTaget:") == true
        )
        #expect(
            problems(yaml(job: "\n    drill: {}"))
                == ["backups[0].drill: give at least one of every, schedule, rtoTarget, rpoTarget"]
        )
    }
}
