import Foundation

/// How often a DR drill must prove a backup job or a failover service recoverable, and against which
/// targets: `drill: {every, schedule, rtoTarget, rpoTarget}` on a backup job or a service's failover block.
public struct DrillPolicy: Sendable, Equatable {
    /// The oldest the last successful drill may be: `drill status` (and `backup status`) exit 1 beyond it.
    public var every: Duration?
    /// A 5-field cron expression: the controller (its leader) runs the drill then. Nil: drills are run by hand
    /// or by a CronJob (`zoneward drill …`).
    public var schedule: String?
    /// The recovery time objective: a restore (or each switchover leg) must take at most this long.
    public var rtoTarget: Duration?
    /// The recovery point objective: the data restored may be at most this old. For a failover service the
    /// default is its `maxLagSeconds`.
    public var rpoTarget: Duration?

    public init(
        every: Duration? = nil,
        schedule: String? = nil,
        rtoTarget: Duration? = nil,
        rpoTarget: Duration? = nil
    ) {
        self.every = every
        self.schedule = schedule
        self.rtoTarget = rtoTarget
        self.rpoTarget = rpoTarget
    }
}

extension ZonewardConfiguration {
    /// Decodes `drill: {every: 7d, schedule: "0 3 * * 0", rtoTarget: 5m, rpoTarget: 1h}`; every field optional,
    /// durations at least 1s, the schedule valid cron.
    static func decodeDrillPolicy(_ value: DocumentValue, _ reader: DocumentReader) -> DrillPolicy? {
        guard let fields = reader.mapping(value, known: ["every", "schedule", "rtoTarget", "rpoTarget"]) else {
            return nil
        }
        var policy = DrillPolicy()
        policy.every = fields["every"].flatMap { reader.duration($0, minimum: .seconds(1)) }
        policy.rtoTarget = fields["rtoTarget"].flatMap { reader.duration($0, minimum: .milliseconds(1)) }
        policy.rpoTarget = fields["rpoTarget"].flatMap { reader.duration($0, minimum: .zero) }
        if let scheduleValue = fields["schedule"], let schedule = reader.string(scheduleValue) {
            if CronSchedule(schedule) == nil {
                reader.report(
                    scheduleValue.path,
                    "expected a 5-field cron expression (minute hour day month weekday) such as \"0 3 * * 0\", "
                        + "got \"\(schedule)\""
                )
            } else {
                policy.schedule = schedule
            }
        }
        if fields.isEmpty {
            reader.report(value.path, "give at least one of every, schedule, rtoTarget, rpoTarget")
        }
        return policy
    }
}
