import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import ZonewardModel
import ZonewardState

@testable import ZonewardFailover

@Suite struct ControllerStatusPageTests {
    let now = Date(timeIntervalSince1970: 1_750_000_000)

    func job(_ name: String, schedule: String = "0 4 * * *") -> BackupJobConfiguration {
        BackupJobConfiguration(
            name: name,
            source: .sqlite("/nonexistent/app.db"),
            schedule: schedule,
            targets: [.filesystem("/nonexistent/backups")],
            keyFile: "/nonexistent/key"
        )
    }

    func record(_ job: String, _ state: BackupRecord.State, startedAgo: TimeInterval) -> BackupRecord {
        var record = BackupRecord(id: "\(job)-\(Int(startedAgo))", job: job, startedAt: now - startedAgo)
        record.state = state
        return record
    }

    /// A daily job is fresh while its newest verified backup is at most two days old; a newer completed but
    /// unverified one does not count.
    @Test func backupFreshnessCountsOnlyVerifiedBackups() {
        let daily = job("app")
        let fresh = BackupFreshness(
            job: daily,
            records: [record("app", .completed, startedAgo: 600), record("app", .verified, startedAgo: 86_400)],
            now: now
        )
        #expect(fresh.fresh)
        #expect(fresh.allowedSeconds == 2 * 86_400)
        #expect(fresh.verifiedAge(at: now) == 86_400)
        #expect(fresh.lastCompletedAt == now - 600)
        #expect(fresh.latestState == "completed")

        let stale = BackupFreshness(job: daily, records: [record("app", .verified, startedAgo: 3 * 86_400)], now: now)
        #expect(!stale.fresh)
        let none = BackupFreshness(job: daily, records: [record("app", .completed, startedAgo: 60)], now: now)
        #expect(!none.fresh)
        #expect(none.lastVerifiedAt == nil)
    }

    func status(service: String, job: String) -> ControllerStatus {
        ControllerStatus(
            report: StatusReport(services: [
                .init(
                    name: service,
                    activeRegion: "rb",
                    epoch: 7,
                    mode: "automatic",
                    regions: [
                        .init(region: "ra", up: false, lagSeconds: nil, detail: "refused", observedAt: nil),
                        .init(region: "rb", up: true, lagSeconds: 0.25, detail: "ok", observedAt: nil),
                    ],
                    lastOperation: nil,
                    automaticFailover: "would not fire: no standby region is up"
                )
            ]),
            inFlight: [:],
            backups: [
                BackupFreshness(job: self.job(job), records: [record(job, .verified, startedAgo: 3600)], now: now),
                BackupFreshness(job: self.job("old"), records: [record("old", .failed, startedAgo: 60)], now: now),
            ],
            role: "single",
            term: nil,
            leaderURL: nil,
            stateAge: nil,
            generatedAt: now
        )
    }

    @Test func thePageShowsServicesEpochsRegionsAndBackupFreshness() {
        let html = ControllerStatusPage.render(status(service: "orders", job: "app"))
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"))
        #expect(html.contains("<td data-service=\"orders\"><strong>orders</strong></td>"))
        #expect(html.contains("<td class=\"num\" data-epoch=\"orders\">7</td>"))
        #expect(html.contains("ra down"))
        #expect(html.contains("rb up, lag 0.2 s") || html.contains("rb up, lag 0.3 s"))
        #expect(
            html.contains("<td data-job=\"app\"><strong>app</strong></td><td><span class=\"badge ok\">fresh</span>")
        )
        #expect(
            html.contains("<td data-job=\"old\"><strong>old</strong></td><td><span class=\"badge bad\">stale</span>")
        )
        #expect(html.contains("60 min ago"))
        #expect(!html.contains("<script"))
        // Nothing external: no script, stylesheet or image is fetched.
        #expect(!html.contains("<link") && !html.contains(" src="))
    }

    /// Service, region, job names and details are escaped: a name with markup stays text.
    @Test func namesAreEscaped() {
        var hostile = status(service: "<script>alert(1)</script>", job: "a\"b<i>")
        hostile.report.services[0].regions[0].detail = "<img src=x onerror=alert(1)>"
        hostile.report.services[0].automaticFailover = "<b>fire</b>"
        let html = ControllerStatusPage.render(hostile)
        #expect(!html.contains("<script"))
        #expect(!html.contains("<img"))
        #expect(!html.contains("<b>fire"))
        #expect(!html.contains("<i>"))
        #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        #expect(html.contains("data-job=\"a&quot;b&lt;i&gt;\""))
    }

    /// GET / needs the read token, like /v1/status, and shows the operation in flight at its step.
    @Test func theRouteNeedsTheTokenAndShowsTheOperationInFlight() async throws {
        let controller = try makeController()
        let id = try planSwitchover(controller.store)
        try controller.store.recordStep(
            id,
            step: .planned,
            status: .succeeded,
            detail: "guards passed",
            next: .fencing,
            at: Date()
        )
        let app = controller.makeApplication()
        try await app.test(.router) { client in
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .unauthorized)
            }
            try await client.execute(uri: "/", method: .get, headers: authorized) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/html; charset=utf-8")
                let html = String(buffer: response.body)
                #expect(html.contains("data-service=\"orders\""))
                #expect(html.contains("data-epoch=\"orders\">0<"))
                #expect(html.contains("in flight: fencing"))
                #expect(html.contains("#\(id) switchover ra → rb"))
                #expect(html.contains("planned succeeded: guards passed"))
                #expect(html.contains("No backup job is configured."))
            }
        }
    }

    @Test func agesReadAsSecondsMinutesHoursOrDaysAndNeverTrap() {
        #expect(ControllerStatusPage.age(59.9) == "59 s")
        #expect(ControllerStatusPage.age(3600) == "60 min")
        #expect(ControllerStatusPage.age(7200) == "2 h")
        #expect(ControllerStatusPage.age(3 * 86400) == "3 d")
        #expect(ControllerStatusPage.age(-5) == "0 s")
        #expect(ControllerStatusPage.age(1e300).hasSuffix(" d"))
        #expect(ControllerStatusPage.age(.infinity) == "—")
    }

    /// The DR section renders nothing until the report carries posture or drills.
    @Test func theDRSectionIsEmptyWithoutData() {
        #expect(ControllerStatusPage.drSection(status(service: "orders", job: "app")).isEmpty)
    }

    /// With drills in the report: each posture with its verdict and measured figures against the targets
    /// (over target marked), and the newest drills with their RTO per leg; names are escaped.
    @Test func theDRSectionShowsPostureAndRecentDrills() {
        var page = status(service: "orders", job: "app")
        let posture = [
            DrillPosture(
                kind: .switchover,
                target: "orders",
                strategy: "geo-replicated standby (ra, rb)",
                rtoTargetSeconds: 2,
                rpoTargetSeconds: 5,
                lastSuccessAt: "2025-06-15T15:00:00Z",
                measuredRTOSeconds: 2.62,
                measuredRPOSeconds: 0,
                lastDrillSucceeded: true,
                maxAgeSeconds: 86_400,
                stale: false,
                overTarget: true,
                line: "orders: RTO 2.62 s over its 2 s target"
            ),
            DrillPosture(
                kind: .restore,
                target: "<app>",
                strategy: "backups only",
                rtoTargetSeconds: nil,
                rpoTargetSeconds: nil,
                lastSuccessAt: nil,
                measuredRTOSeconds: nil,
                measuredRPOSeconds: nil,
                lastDrillSucceeded: nil,
                maxAgeSeconds: 3600,
                stale: true,
                overTarget: false,
                line: "never drilled"
            ),
        ]
        let recent = [
            DrillRecord(
                kind: .switchover,
                target: "orders",
                startedAt: now - 60,
                finishedAt: now - 50,
                success: true,
                rtoSeconds: [0.63, 2.62],
                rpoSeconds: 0,
                probeErrors: [1, 2]
            )
        ]
        page.report.drills = DrillSummary(posture: posture, recent: recent)
        let html = ControllerStatusPage.drSection(page)
        #expect(html.contains("DR posture and drills"))
        #expect(html.contains("data-drill=\"switchover orders\""))
        #expect(html.contains("over target"))
        #expect(html.contains("2.62 s (2.00 s)"))
        #expect(html.contains("&lt;app&gt;") && !html.contains("<app>"))
        #expect(html.contains("stale"))
        #expect(html.contains("0.63 s, 2.62 s"))
        #expect(html.contains("1, 2"))
    }
}
