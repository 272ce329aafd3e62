import Foundation
import ZonewardAPI
import ZonewardModel
import ZonewardState

/// What the controller's status page (`GET /`) shows, as plain values: the same facts as `/v1/status`,
/// `/v1/leadership`, `/v1/operations/ID` and `/v1/backups`, nothing more.
struct ControllerStatus: Sendable {
    /// The step an unfinished operation is at, with its newest step record.
    struct InFlight: Sendable, Equatable {
        var step: String
        var detail: String
        var at: Date?
    }

    var report: StatusReport
    /// By service: the operation in flight, when its last operation is not finished.
    var inFlight: [String: InFlight]
    var backups: [BackupFreshness]
    /// `leader`, `follower` or `single`.
    var role: String
    var term: Int64?
    var leaderURL: String?
    /// Seconds since a follower last confirmed its copy is the newest.
    var stateAge: Double?
    var generatedAt: Date
}

extension ControllerStatus {
    /// Reads the status from the controller's state, without probing anything.
    static func build(
        configuration: ZonewardConfiguration,
        store: StateStore,
        leadership: LeadershipReport,
        now: Date
    ) throws -> ControllerStatus {
        let report = try StatusReport.build(configuration: configuration, store: store, now: now)
        var inFlight: [String: InFlight] = [:]
        for service in report.services {
            guard let operation = service.lastOperation, FailoverStep(rawValue: operation.state)?.isFinal == false
            else { continue }
            let newest = try store.steps(of: operation.id).last
            inFlight[service.name] = InFlight(
                step: operation.state,
                detail: newest.map { "\($0.step.rawValue) \($0.status.rawValue): \($0.detail)" } ?? "",
                at: newest?.at
            )
        }
        let backups = try configuration.backups.map { job in
            BackupFreshness(job: job, records: try store.backups(job: job.name, limit: 100), now: now)
        }
        return ControllerStatus(
            report: report,
            inFlight: inFlight,
            backups: backups,
            role: leadership.role,
            term: leadership.term,
            leaderURL: leadership.leader?.url,
            stateAge: leadership.stateAge,
            generatedAt: now
        )
    }
}

/// Renders the controller's status page: each service's active region, epoch, region health and operation
/// in flight, then backup freshness per job. Every name is escaped.
enum ControllerStatusPage {
    /// Seconds between the page's reloads.
    static let refreshSeconds = 5

    static func render(_ status: ControllerStatus) -> String {
        var body = "<h1>Zoneward controller</h1>\n"
        var meta = [status.role + (status.role == "leader" ? status.term.map { " (term \($0))" } ?? "" : "")]
        if status.role == "follower" {
            meta.append("leader: " + (status.leaderURL.flatMap { $0.isEmpty ? nil : $0 } ?? "none known"))
            if let age = status.stateAge {
                meta.append("state copy confirmed \(HTMLPage.decimal(age, places: 1)) s ago")
            }
        }
        meta.append("generated \(status.generatedAt.formatted(.iso8601))")
        meta.append("refreshes every \(refreshSeconds) s")
        body += "<p class=\"meta\">\(HTMLPage.escape(meta.joined(separator: " · "))) · the same facts as "
        body += "/v1/status, /v1/leadership and /v1/backups</p>\n"
        body += servicesSection(status)
        body += drSection(status)
        body += backupsSection(status)
        return HTMLPage.document(title: "Zoneward controller", refreshSeconds: refreshSeconds, body: body)
    }

    static func servicesSection(_ status: ControllerStatus) -> String {
        var html = "<h2>Failover services</h2>\n"
        guard !status.report.services.isEmpty else { return html + "<p>No service has failover configured.</p>\n" }
        let rows = status.report.services.map { service -> [String] in
            let name = HTMLPage.escape(service.name)
            return [
                "<td data-service=\"\(name)\"><strong>\(name)</strong></td>",
                HTMLPage.escape(service.activeRegion),
                "<td class=\"num\" data-epoch=\"\(name)\">\(service.epoch)</td>",
                HTMLPage.escape(service.mode),
                service.regions.map(region).joined(separator: "<br>"),
                operation(service, inFlight: status.inFlight[service.name], now: status.generatedAt),
                HTMLPage.escape(service.automaticFailover),
            ]
        }
        html += HTMLPage.table(
            ["Service", "Active region", "Epoch", "Mode", "Regions", "Operation", "Automatic failover"],
            rows,
            id: "services"
        )
        return html
    }

    static func region(_ region: StatusReport.Region) -> String {
        var text = region.region
        let tone: HTMLPage.Tone
        switch region.up {
        case .some(true):
            text += " up"
            tone = .ok
        case .some(false):
            text += " down"
            tone = .bad
        case .none:
            text += " unknown"
            tone = .idle
        }
        if let lag = region.lagSeconds { text += ", lag \(HTMLPage.decimal(lag, places: 1)) s" }
        return HTMLPage.badge(text, tone) + " <small>\(HTMLPage.escape(region.detail))</small>"
    }

    static func operation(_ service: StatusReport.Service, inFlight: ControllerStatus.InFlight?, now: Date) -> String {
        guard let operation = service.lastOperation else { return "none" }
        let summary = "#\(operation.id) \(operation.kind) \(operation.from) → \(operation.to)"
        if let inFlight {
            var html = HTMLPage.badge("in flight: \(inFlight.step)", .warn) + " " + HTMLPage.escape(summary)
            if !inFlight.detail.isEmpty {
                let since = inFlight.at.map { " (\(age(now.timeIntervalSince($0))) ago)" } ?? ""
                html += "<br><small>\(HTMLPage.escape(inFlight.detail + since))</small>"
            }
            return html
        }
        let tone: HTMLPage.Tone = operation.state == FailoverStep.failed.rawValue ? .bad : .idle
        var html = HTMLPage.badge("last: \(operation.state)", tone) + " " + HTMLPage.escape(summary)
        html += "<br><small>\(HTMLPage.escape(operation.updatedAt))"
        if let error = operation.error { html += ": \(HTMLPage.escape(error))" }
        return html + "</small>"
    }

    /// Each backup job's and service's DR posture (strategy, the RTO and RPO its last drill measured
    /// against the targets, freshness), then the newest drills: what `drill status` and `drill history`
    /// say. Nothing when the report has no drills part (a controller that predates drills).
    static func drSection(_ status: ControllerStatus) -> String {
        guard let drills = status.report.drills else { return "" }
        var html = "<h2>DR posture and drills</h2>\n"
        if drills.posture.isEmpty {
            html += "<p>No backup job or failover service has a drill policy or a recorded drill.</p>\n"
        } else {
            let rows = drills.posture.map { posture -> [String] in
                let name = HTMLPage.escape(posture.target)
                let verdict: String
                if posture.lastDrillSucceeded == false {
                    verdict = HTMLPage.badge("last drill failed", .bad)
                } else if posture.stale {
                    verdict = HTMLPage.badge("stale", .bad)
                } else if posture.overTarget {
                    verdict = HTMLPage.badge("over target", .warn)
                } else if posture.lastSuccessAt == nil {
                    verdict = HTMLPage.badge("never drilled", .idle)
                } else {
                    verdict = HTMLPage.badge("ok", .ok)
                }
                return [
                    "<td data-drill=\"\(posture.kind.rawValue) \(name)\"><strong>\(name)</strong> "
                        + "<small>\(posture.kind.rawValue)</small></td>",
                    HTMLPage.escape(posture.strategy),
                    verdict,
                    measured(posture.measuredRTOSeconds, target: posture.rtoTargetSeconds),
                    measured(posture.measuredRPOSeconds, target: posture.rpoTargetSeconds),
                    HTMLPage.escape(posture.lastSuccessAt ?? "never"),
                    "<small>\(HTMLPage.escape(posture.line))</small>",
                ]
            }
            html += HTMLPage.table(
                ["Target", "Strategy", "Posture", "RTO (target)", "RPO (target)", "Last success", "Summary"],
                rows,
                id: "dr-posture"
            )
        }
        guard !drills.recent.isEmpty else { return html }
        let recent = drills.recent.prefix(10).map { record -> [String] in
            [
                HTMLPage.escape(ISO8601DateFormatter().string(from: record.startedAt)),
                HTMLPage.escape("\(record.kind.rawValue) \(record.target)"),
                record.success ? HTMLPage.badge("ok", .ok) : HTMLPage.badge("failed", .bad),
                HTMLPage.escape(record.rtoSeconds.map { HTMLPage.decimal($0) + " s" }.joined(separator: ", ")),
                HTMLPage.escape(record.rpoSeconds.map { HTMLPage.decimal($0) + " s" } ?? "—"),
                HTMLPage.escape(record.probeErrors.map(String.init).joined(separator: ", ")),
                "<small>\(HTMLPage.escape(record.error ?? record.detail))</small>",
            ]
        }
        html += HTMLPage.table(
            ["Started", "Drill", "Result", "RTO per leg", "RPO", "Probe errors", "Detail"],
            Array(recent),
            id: "drills"
        )
        return html
    }

    /// A measured figure in seconds with its target, marked when over it.
    static func measured(_ value: Double?, target: Double?) -> String {
        let text = value.map { HTMLPage.decimal($0) + " s" } ?? "—"
        let goal = target.map { " (" + HTMLPage.decimal($0) + " s)" } ?? ""
        if let value, let target, value > target { return HTMLPage.badge(text + goal, .warn) }
        return HTMLPage.escape(text + goal)
    }

    static func backupsSection(_ status: ControllerStatus) -> String {
        var html = "<h2>Backups</h2>\n"
        guard !status.backups.isEmpty else { return html + "<p>No backup job is configured.</p>\n" }
        let now = status.generatedAt
        let rows = status.backups.map { backup -> [String] in
            let name = HTMLPage.escape(backup.job)
            let latest: String
            switch backup.latestState {
            case .none: latest = "none"
            case .some(let state):
                latest =
                    HTMLPage.badge(state, state == "failed" ? .bad : (state == "running" ? .warn : .idle))
                    + (backup.latestError.map { " <small>\(HTMLPage.escape($0))</small>" } ?? "")
            }
            return [
                "<td data-job=\"\(name)\"><strong>\(name)</strong></td>",
                backup.fresh ? HTMLPage.badge("fresh", .ok) : HTMLPage.badge("stale", .bad),
                backup.verifiedAge(at: now).map { HTMLPage.escape(age($0) + " ago") } ?? "never",
                backup.lastCompletedAt.map { HTMLPage.escape(age(now.timeIntervalSince($0)) + " ago") } ?? "never",
                HTMLPage.escape(age(backup.allowedSeconds) + " (schedule \"\(backup.schedule)\")"),
                latest,
            ]
        }
        html += HTMLPage.table(
            ["Job", "Freshness", "Last verified", "Last completed", "Allowed age", "Latest run"],
            rows,
            id: "backups"
        )
        return html
    }

    /// A duration for people: seconds, minutes, hours or days.
    static func age(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "—" }
        let s = max(0, seconds)
        // Formatted as doubles: an absurd age (a clock far off) prints, never traps converting to Int.
        if s < 120 { return String(format: "%.0f s", s.rounded(.down)) }
        if s < 7200 { return String(format: "%.0f min", (s / 60).rounded(.down)) }
        if s < 172_800 { return String(format: "%.0f h", (s / 3600).rounded(.down)) }
        return String(format: "%.0f d", (s / 86400).rounded(.down))
    }
}
