import Foundation
import ZonewardAPI
import ZonewardModel
import ZonewardState

/// What the drills say about recoverability, pure: per backup job and failover service, the strategy, the
/// RPO and RTO the last successful drill measured against the targets, and whether it is stale.
public enum DrillAssessment {
    /// Something drills prove recoverable: a backup job (restore drills) or a failover service (switchovers).
    public struct Target: Sendable, Equatable {
        public var kind: DrillRecord.Kind
        public var name: String
        public var strategy: String
        public var policy: DrillPolicy?
        public var rtoTargetSeconds: Double?
        public var rpoTargetSeconds: Double?

        public init(
            kind: DrillRecord.Kind,
            name: String,
            strategy: String,
            policy: DrillPolicy?,
            rtoTargetSeconds: Double?,
            rpoTargetSeconds: Double?
        ) {
            self.kind = kind
            self.name = name
            self.strategy = strategy
            self.policy = policy
            self.rtoTargetSeconds = rtoTargetSeconds
            self.rpoTargetSeconds = rpoTargetSeconds
        }
    }

    /// Every failover service (a geo-replicated standby; RPO target from `drill.rpoTarget`, else
    /// `maxLagSeconds`), then every backup job (backups only).
    public static func targets(_ configuration: ZonewardConfiguration) -> [Target] {
        var targets: [Target] = []
        for service in configuration.services {
            guard let failover = service.failover else { continue }
            let standbys = service.regions.dropFirst()
            targets.append(
                Target(
                    kind: .switchover,
                    name: service.name,
                    strategy: "geo-replicated standby (\(service.primaryRegion ?? "?") → "
                        + "\(standbys.joined(separator: ", ")))",
                    policy: failover.drill,
                    rtoTargetSeconds: failover.drill?.rtoTarget?.seconds,
                    rpoTargetSeconds: failover.drill?.rpoTarget?.seconds ?? failover.maxLagSeconds
                )
            )
        }
        for job in configuration.backups {
            targets.append(
                Target(
                    kind: .restore,
                    name: job.name,
                    strategy: "backups only (job \(job.name), \"\(job.schedule)\")",
                    policy: job.drill,
                    rtoTargetSeconds: job.drill?.rtoTarget?.seconds,
                    rpoTargetSeconds: job.drill?.rpoTarget?.seconds
                )
            )
        }
        return targets
    }

    /// Whether the last successful drill is older than the policy's `every` (or missing while it asks for
    /// one); false without a policy. The age counts from when that drill finished.
    public static func isStale(policy: DrillPolicy?, lastSuccess: DrillRecord?, now: Date) -> Bool {
        guard let every = policy?.every else { return false }
        guard let lastSuccess else { return true }
        return now.timeIntervalSince(lastSuccess.finishedAt) > every.seconds
    }

    /// The posture of `target` from its last successful drill and its newest drill (successful or not).
    public static func posture(
        of target: Target,
        lastSuccess: DrillRecord?,
        newest: DrillRecord?,
        now: Date
    ) -> DrillPosture {
        let stale = isStale(policy: target.policy, lastSuccess: lastSuccess, now: now)
        let rto = lastSuccess?.worstRTOSeconds
        let rpo = lastSuccess?.rpoSeconds
        let rtoOver = rto.flatMap { value in target.rtoTargetSeconds.map { value > $0 } } ?? false
        let rpoOver = rpo.flatMap { value in target.rpoTargetSeconds.map { value > $0 } } ?? false
        var parts = ["\(target.name): \(target.strategy)"]
        if let lastSuccess {
            let age = now.timeIntervalSince(lastSuccess.finishedAt)
            parts.append(
                "last \(target.kind.rawValue) drill \(iso8601(lastSuccess.finishedAt)) (\(formatSeconds(age)) ago)"
            )
        } else {
            parts.append("no successful \(target.kind.rawValue) drill")
        }
        parts.append(
            "RPO \(measured(rpo, legs: [], target: target.rpoTargetSeconds, over: rpoOver))"
        )
        parts.append(
            "RTO \(measured(rto, legs: lastSuccess?.rtoSeconds ?? [], target: target.rtoTargetSeconds, over: rtoOver))"
        )
        if let newest, !newest.success {
            parts.append("newest drill FAILED \(iso8601(newest.finishedAt)): \(newest.error ?? "no detail")")
        }
        if let every = target.policy?.every {
            parts.append("\(stale ? "STALE" : "fresh") (policy every \(TimeSpan.format(every)))")
        }
        return DrillPosture(
            kind: target.kind,
            target: target.name,
            strategy: target.strategy,
            rtoTargetSeconds: target.rtoTargetSeconds,
            rpoTargetSeconds: target.rpoTargetSeconds,
            lastSuccessAt: lastSuccess.map { iso8601($0.finishedAt) },
            measuredRTOSeconds: rto,
            measuredRPOSeconds: rpo,
            lastDrillSucceeded: newest?.success,
            maxAgeSeconds: target.policy?.every?.seconds,
            stale: stale,
            overTarget: rtoOver || rpoOver,
            line: parts.joined(separator: "; ")
        )
    }

    /// Every target's posture, read from the store.
    public static func postures(
        configuration: ZonewardConfiguration,
        store: StateStore,
        now: Date
    ) throws(StateError) -> [DrillPosture] {
        var postures: [DrillPosture] = []
        for target in targets(configuration) {
            postures.append(
                posture(
                    of: target,
                    lastSuccess: try store.lastSuccessfulDrill(kind: target.kind, target: target.name),
                    newest: try store.drills(kind: target.kind, target: target.name, limit: 1).first,
                    now: now
                )
            )
        }
        return postures
    }

    /// The postures computed from a list of drill records (as the controller's API lists them).
    public static func postures(
        configuration: ZonewardConfiguration,
        records: [DrillRecord],
        now: Date
    ) -> [DrillPosture] {
        targets(configuration).map { target in
            let mine = records.filter { $0.kind == target.kind && $0.target == target.name }
                .sorted { $0.startedAt > $1.startedAt }
            return posture(of: target, lastSuccess: mine.first { $0.success }, newest: mine.first, now: now)
        }
    }

    /// `2.1 s (legs 2.1 s, 1.8 s; target 30 s: ok)`, or `not measured (target …)`.
    static func measured(_ value: Double?, legs: [Double], target: Double?, over: Bool) -> String {
        let targetText = target.map { "target \(formatSeconds($0))" }
        guard let value else { return "not measured" + (targetText.map { " (\($0))" } ?? "") }
        var notes: [String] = []
        if legs.count > 1 { notes.append("legs " + legs.map(formatSeconds).joined(separator: ", ")) }
        if let targetText { notes.append(targetText + (over ? ": OVER" : ": ok")) }
        return formatSeconds(value) + (notes.isEmpty ? "" : " (\(notes.joined(separator: "; ")))")
    }

    /// Seconds for people: `2.13 s` under ten seconds, `42.1 s` under two minutes, else `3m20s`, `2d4h`.
    public static func formatSeconds(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        if abs(seconds) < 10 { return String(format: "%.2f s", seconds) }
        if abs(seconds) < 120 { return String(format: "%.1f s", seconds) }
        return TimeSpan.format(.seconds(Int64(seconds.rounded())))
    }
}
