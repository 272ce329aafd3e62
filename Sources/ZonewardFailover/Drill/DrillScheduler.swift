import Foundation
import Logging
import ServiceLifecycle
import ZonewardAPI
import ZonewardModel
import ZonewardState

/// Runs DR drills on their cron schedules (`drill.schedule`) inside the controller, like backups: only while
/// this replica leads (a single controller always does), each drill at most once per matching minute, one at a
/// time, recording each result in the state database.
public final class DrillScheduler: Service, Sendable {
    /// A drill the controller runs by itself.
    public struct Scheduled: Sendable {
        public var kind: DrillRecord.Kind
        public var target: String
        public var schedule: CronSchedule
        public var run: @Sendable () async -> DrillRecord

        public init(
            kind: DrillRecord.Kind,
            target: String,
            schedule: CronSchedule,
            run: @escaping @Sendable () async -> DrillRecord
        ) {
            self.kind = kind
            self.target = target
            self.schedule = schedule
            self.run = run
        }
    }

    let drills: [Scheduled]
    let store: StateStore
    let logger: Logger
    let leads: @Sendable () -> Bool

    public init(
        drills: [Scheduled],
        store: StateStore,
        logger: Logger,
        leads: @escaping @Sendable () -> Bool
    ) {
        self.drills = drills
        self.store = store
        self.logger = logger
        self.leads = leads
    }

    /// The drills due in the minute of `now` that did not run in that minute yet (`lastRun` by target).
    public static func due(_ drills: [Scheduled], now: Date, lastRun: [String: Date]) -> [Scheduled] {
        let minute = floor(now.timeIntervalSince1970 / 60)
        return drills.filter { drill in
            guard drill.schedule.matches(now) else { return false }
            let key = "\(drill.kind.rawValue)/\(drill.target)"
            return lastRun[key].map { floor($0.timeIntervalSince1970 / 60) != minute } ?? true
        }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.schedule() }
    }

    private func schedule() async {
        guard !drills.isEmpty else { return }
        logger.info(
            "drill scheduler: \(drills.map { "\($0.kind.rawValue) \($0.target) at \"\($0.schedule.expression)\"" }.joined(separator: ", "))"
        )
        var lastRun: [String: Date] = [:]
        while !Task.isCancelled {
            let now = Date()
            if leads() {
                for drill in Self.due(drills, now: now, lastRun: lastRun) {
                    lastRun["\(drill.kind.rawValue)/\(drill.target)"] = now
                    let record = await drill.run()
                    guard leads() else {
                        logger.warning(
                            "\(drill.kind.rawValue) drill of \(drill.target) ended after leadership was lost; not recorded"
                        )
                        continue
                    }
                    do {
                        try store.recordDrill(record)
                        if record.success {
                            let rto = record.rtoSeconds.map(DrillAssessment.formatSeconds).joined(separator: " / ")
                            let rpo = record.rpoSeconds.map(DrillAssessment.formatSeconds) ?? "-"
                            logger.info(
                                "\(drill.kind.rawValue) drill of \(drill.target) succeeded: RTO \(rto), RPO \(rpo)"
                            )
                        } else {
                            logger.error(
                                "\(drill.kind.rawValue) drill of \(drill.target) failed: \(record.error ?? "")"
                            )
                        }
                    } catch {
                        logger.error("cannot record the \(drill.kind.rawValue) drill of \(drill.target): \(error)")
                    }
                }
            }
            try? await Task.sleep(for: .seconds(15))
        }
    }
}
