import Foundation
import Testing
import ZonewardAPI
import ZonewardModel
import ZonewardState

@testable import ZonewardFailover

@Suite struct DrillAssessmentTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    static let yaml = """
        zones:
          - {name: za, region: ra}
          - {name: zb, region: rb}
        services:
          - name: orders
            listen: 127.0.0.1:1
            protocol: tcp
            routing: activeRegion
            regions: [ra, rb]
            endpoints:
              - {address: 127.0.0.1:2, zone: za}
              - {address: 127.0.0.1:3, zone: zb}
            failover:
              maxLagSeconds: 5
              lag: {url: "http://127.0.0.1:9/lag"}
              drill: {every: 7d, rtoTarget: 30s}
          - name: web
            listen: 127.0.0.1:4
            endpoints: [{address: 127.0.0.1:5, zone: za}]
        backups:
          - name: state
            source: {sqlite: /tmp/x.db}
            schedule: "17 * * * *"
            targets: [{filesystem: /tmp/b}]
            encryption: {keyFile: /tmp/k}
            drill: {every: 1h, rpoTarget: 2h, schedule: "0 3 * * 0"}
          - name: files
            source: {directory: /tmp/d}
            schedule: "17 * * * *"
            targets: [{filesystem: /tmp/b}]
            encryption: {keyFile: /tmp/k}
        """

    func switchover(finished: Date, rto: [Double], success: Bool = true, lag: Double? = 0.4) -> DrillRecord {
        DrillRecord(
            kind: .switchover,
            target: "orders",
            startedAt: finished - 20,
            finishedAt: finished,
            success: success,
            rtoSeconds: rto,
            rpoSeconds: lag,
            probeErrors: rto.map { _ in 0 },
            error: success ? nil : "operation 4 failed: promote timed out"
        )
    }

    @Test func targetsAreFailoverServicesThenBackupJobsWithTheirTargets() throws {
        let configuration = try ZonewardConfiguration.parse(yaml: Self.yaml)
        let targets = DrillAssessment.targets(configuration)
        #expect(targets.map(\.name) == ["orders", "state", "files"])
        #expect(targets.map(\.kind) == [.switchover, .restore, .restore])
        #expect(targets[0].strategy == "geo-replicated standby (ra → rb)")
        #expect(targets[0].rtoTargetSeconds == 30)
        // No rpoTarget in the drill policy: the service's maxLagSeconds is its RPO.
        #expect(targets[0].rpoTargetSeconds == 5)
        #expect(targets[1].strategy.hasPrefix("backups only"))
        #expect(targets[1].rpoTargetSeconds == 7200)
        #expect(targets[2].policy == nil)
    }

    @Test func thePostureLineSaysStrategyMeasurementsAgainstTargetsAndFreshness() throws {
        let configuration = try ZonewardConfiguration.parse(yaml: Self.yaml)
        let target = DrillAssessment.targets(configuration)[0]
        let last = switchover(finished: now - 3600, rto: [2.5, 41])
        let posture = DrillAssessment.posture(of: target, lastSuccess: last, newest: last, now: now)
        #expect(
            posture.line
                == "orders: geo-replicated standby (ra → rb); last switchover drill 2027-01-15T07:00:00Z (1h ago); "
                + "RPO 0.40 s (target 5.00 s: ok); RTO 41.0 s (legs 2.50 s, 41.0 s; target 30.0 s: OVER); "
                + "fresh (policy every 7d)"
        )
        #expect(posture.measuredRTOSeconds == 41)
        #expect(posture.overTarget)
        #expect(!posture.stale)
        #expect(posture.lastDrillSucceeded == true)
    }

    @Test func aFailedNewestDrillAndNoDrillAtAllAreSaid() throws {
        let configuration = try ZonewardConfiguration.parse(yaml: Self.yaml)
        let targets = DrillAssessment.targets(configuration)
        let failed = switchover(finished: now - 10, rto: [], success: false)
        let posture = DrillAssessment.posture(of: targets[0], lastSuccess: nil, newest: failed, now: now)
        #expect(posture.stale)
        #expect(posture.lastDrillSucceeded == false)
        #expect(posture.line.contains("no successful switchover drill"))
        #expect(posture.line.contains("RTO not measured (target 30.0 s)"))
        #expect(
            posture.line.contains("newest drill FAILED 2027-01-15T07:59:50Z: operation 4 failed: promote timed out")
        )
        #expect(posture.line.hasSuffix("STALE (policy every 7d)"))
        // Without a policy there is nothing to be stale against.
        let files = DrillAssessment.posture(of: targets[2], lastSuccess: nil, newest: nil, now: now)
        #expect(!files.stale)
        #expect(!files.line.contains("policy"))
    }

    @Test func stalenessFollowsTheInjectedClock() {
        let policy = DrillPolicy(every: .seconds(3600))
        let last = switchover(finished: now, rto: [1])
        #expect(!DrillAssessment.isStale(policy: policy, lastSuccess: last, now: now))
        #expect(!DrillAssessment.isStale(policy: policy, lastSuccess: last, now: now + 3600))
        #expect(DrillAssessment.isStale(policy: policy, lastSuccess: last, now: now + 3601))
        #expect(DrillAssessment.isStale(policy: policy, lastSuccess: nil, now: now))
        #expect(!DrillAssessment.isStale(policy: DrillPolicy(rtoTarget: .seconds(5)), lastSuccess: nil, now: now))
        #expect(!DrillAssessment.isStale(policy: nil, lastSuccess: nil, now: now))
    }

    @Test func posturesFromRecordsUseTheNewestSuccessPerTarget() throws {
        let configuration = try ZonewardConfiguration.parse(yaml: Self.yaml)
        let records = [
            switchover(finished: now - 7200, rto: [9]),
            switchover(finished: now - 60, rto: [3, 4]),
            switchover(finished: now - 5, rto: [], success: false),
            DrillRecord(
                kind: .restore,
                target: "state",
                startedAt: now - 7300,
                finishedAt: now - 7200,
                success: true,
                rtoSeconds: [12],
                rpoSeconds: 600
            ),
        ]
        let postures = DrillAssessment.postures(configuration: configuration, records: records, now: now)
        #expect(postures.map(\.target) == ["orders", "state", "files"])
        #expect(postures[0].measuredRTOSeconds == 4)
        #expect(postures[0].lastDrillSucceeded == false)
        #expect(!postures[0].stale)
        // The restore drill is two hours old against a policy of one hour.
        #expect(postures[1].stale)
        #expect(postures[1].measuredRPOSeconds == 600)
        #expect(!postures[1].overTarget)
    }

    @Test func theStatusReportCarriesPosturesAndRecentDrills() throws {
        let configuration = try ZonewardConfiguration.parse(yaml: Self.yaml)
        let store = try StateStore.inMemory()
        try store.recordDrill(switchover(finished: now - 60, rto: [3, 4]))
        let report = try StatusReport.build(configuration: configuration, store: store, now: now)
        let orders = try #require(report.services.first { $0.name == "orders" })
        #expect(orders.drPosture?.hasPrefix("orders: geo-replicated standby (ra → rb); last switchover drill") == true)
        #expect(report.drills?.posture.map(\.target) == ["orders", "state", "files"])
        #expect(report.drills?.recent.count == 1)
        // It survives the wire: the status page reads it from GET /v1/status.
        let decoded = try JSONDecoder().decode(StatusReport.self, from: try JSONEncoder().encode(report))
        #expect(decoded.drills == report.drills)
    }
}

@Suite struct DrillArgumentTests {
    @Test func validArgumentsBuildTheOptions() throws {
        let options = try SwitchoverDrill.validate(
            service: "orders",
            to: "rb",
            andBack: true,
            probeURL: "http://127.0.0.1:8080/healthz",
            probeCommand: nil,
            probeInterval: "250ms",
            timeout: "90s"
        )
        #expect(options.probe == .url("http://127.0.0.1:8080/healthz"))
        #expect(options.probeInterval == .milliseconds(250))
        #expect(options.legTimeout == .seconds(90))
        #expect(options.andBack)
    }

    @Test(
        arguments: [
            ("", "rb", nil, nil, "200ms", "120s", "SERVICE: give the service to switch over"),
            ("orders", " ", nil, nil, "200ms", "120s", "--to: give the region to switch over to"),
            (
                "orders", "rb", "http://a/", "true", "200ms", "120s",
                "--probe and --probe-command: give one of them, not both"
            ),
            (
                "orders", "rb", "ftp://a/", nil, "200ms", "120s",
                "--probe: expected an http:// or https:// URL, got \"ftp://a/\""
            ),
            ("orders", "rb", nil, "  ", "200ms", "120s", "--probe-command: is empty"),
            (
                "orders", "rb", nil, nil, "soon", "120s",
                "--probe-interval: expected a duration such as 200ms, 2s or 1m, got \"soon\""
            ),
            ("orders", "rb", nil, nil, "1ms", "120s", "--probe-interval: must be from 10ms to 1m, got 1ms"),
            ("orders", "rb", nil, nil, "200ms", "2h", "--timeout: must be from 1s to 1h, got 2h"),
        ] as [(String, String, String?, String?, String, String, String)]
    )
    func badArgumentsAreRefusedNamingTheArgument(
        _ input: (String, String, String?, String?, String, String, String)
    ) {
        let (service, to, url, command, interval, timeout, message) = input
        #expect(throws: SwitchoverDrill.ArgumentError(message)) {
            try SwitchoverDrill.validate(
                service: service,
                to: to,
                andBack: false,
                probeURL: url,
                probeCommand: command,
                probeInterval: interval,
                timeout: timeout
            )
        }
    }

    @Test func aRecordedDrillMustNameAKnownTargetOfItsKind() throws {
        let configuration = try ZonewardConfiguration.parse(yaml: DrillAssessmentTests.yaml)
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        var drill = DrillRecord(kind: .restore, target: "orders", startedAt: now, finishedAt: now, success: true)
        #expect(
            DrillValidation.problem(drill, configuration: configuration)
                == "target: \"orders\" is not a backup job (known: state, files)"
        )
        drill.kind = .switchover
        #expect(DrillValidation.problem(drill, configuration: configuration) == nil)
        drill.rtoSeconds = [.nan]
        #expect(DrillValidation.problem(drill, configuration: configuration)?.hasPrefix("rtoSeconds:") == true)
        drill.rtoSeconds = [1]
        drill.finishedAt = now - 1
        #expect(DrillValidation.problem(drill, configuration: configuration) == "finishedAt: before startedAt")
    }

    @Test func theSchedulerRunsADueDrillOncePerMinute() throws {
        let schedule = try #require(CronSchedule("*/5 * * * *"))
        let drills = [
            DrillScheduler.Scheduled(kind: .restore, target: "state", schedule: schedule) {
                DrillRecord(kind: .restore, target: "state", startedAt: Date(), finishedAt: Date(), success: true)
            }
        ]
        let due = Date(timeIntervalSince1970: 1_800_000_000)  // 08:00:00 UTC, a multiple of five minutes
        #expect(DrillScheduler.due(drills, now: due, lastRun: [:]).count == 1)
        #expect(DrillScheduler.due(drills, now: due + 30, lastRun: ["restore/state": due]).isEmpty)
        #expect(DrillScheduler.due(drills, now: due + 60, lastRun: ["restore/state": due]).isEmpty)
        #expect(DrillScheduler.due(drills, now: due + 300, lastRun: ["restore/state": due]).count == 1)
    }
}

@Suite struct DrillAPITests {
    static let drill = #"""
        {"kind": "switchover", "target": "orders", "startedAt": "2027-01-15T08:00:00Z",
         "finishedAt": "2027-01-15T08:00:09Z", "success": true, "rtoSeconds": [2.25, 3.5], "rpoSeconds": 0.5,
         "probeErrors": [1, 0], "detail": "ra → rb; rb → ra", "actor": "alice"}
        """#

    @Test func aRecordedDrillIsListedExportedAndInTheStatus() async throws {
        let controller = try makeController()
        let app = controller.makeApplication()
        try await app.test(.router) { client in
            try await client.execute(
                uri: "/v1/drills",
                method: .post,
                headers: authorized,
                body: jsonBody(Self.drill)
            ) { response in
                #expect(response.status == .created)
            }
            try await client.execute(uri: "/v1/drills?kind=switchover", method: .get, headers: authorized) {
                response in
                #expect(response.status == .ok)
                let decoder = JSONDecoder()
                decoder.dateDecodingStrategy = .iso8601
                let drills = try decoder.decode([DrillRecord].self, from: Data(response.body.readableBytesView))
                #expect(drills.map(\.rtoSeconds) == [[2.25, 3.5]])
                #expect(drills.first?.id == 1)
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(text.contains(#"zoneward_drill_rto_seconds{kind="switchover",target="orders"} 3.5"#))
                #expect(text.contains(#"zoneward_drill_rpo_seconds{kind="switchover",target="orders"} 0.5"#))
                #expect(
                    text.contains(
                        #"zoneward_drill_last_success_timestamp_seconds{kind="switchover",target="orders"} 1800000009"#
                    )
                )
            }
        }
    }

    @Test func aDrillOfAnUnknownTargetOrKindIsRefused() async throws {
        let app = try makeController().makeApplication()
        try await app.test(.router) { client in
            let unknown = Self.drill.replacingOccurrences(of: #""target": "orders""#, with: #""target": "nosuch""#)
            try await client.execute(uri: "/v1/drills", method: .post, headers: authorized, body: jsonBody(unknown)) {
                #expect($0.status == .badRequest)
                #expect(errorMessage($0) == #"target: "nosuch" is not a failover service (known: orders)"#)
            }
            try await client.execute(uri: "/v1/drills?kind=fire", method: .get, headers: authorized) {
                #expect($0.status == .badRequest)
                #expect(errorMessage($0) == #"kind: expected restore or switchover, got "fire""#)
            }
            try await client.execute(uri: "/v1/drills", method: .get, headers: authorized) {
                #expect(String(buffer: $0.body) == "[]\n")
            }
        }
    }
}
