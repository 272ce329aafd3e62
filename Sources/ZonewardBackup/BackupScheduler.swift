import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import ZonewardModel
import ZonewardState

/// Runs backup jobs on their cron schedules inside the controller, marks runs whose process died as
/// failed within a minute (no heartbeat for 45 s, swept every 15 s), and keeps per-job metrics.
public final class BackupScheduler: Service, Sendable {
    let runner: BackupRunner
    let registry: PrometheusCollectorRegistry
    let logger: Logger
    /// False for a replica of an elected controller: jobs run from the CronJob (`backup run --controller`)
    /// and this only keeps the metrics, read from the replica's copy of the catalog (it writes nothing).
    let runsJobs: Bool
    /// The wait between sweeps (15 s: an orphaned run is failed within a minute).
    let sweepInterval: Duration

    public init(
        runner: BackupRunner,
        registry: PrometheusCollectorRegistry,
        logger: Logger,
        runsJobs: Bool = true,
        sweepInterval: Duration = .seconds(15)
    ) {
        self.runner = runner
        self.registry = registry
        self.logger = logger
        self.runsJobs = runsJobs
        self.sweepInterval = sweepInterval
    }

    /// Runs until graceful shutdown (SIGTERM): the wait between sweeps and a backup in progress are cancelled
    /// then, so the controller stops within its drain time.
    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.schedule() }
    }

    private func schedule() async {
        guard runsJobs else {
            while !Task.isCancelled {
                publishMetrics()
                try? await Task.sleep(for: sweepInterval)
            }
            return
        }
        let schedules = runner.configuration.backups.compactMap { job in CronSchedule(job.schedule).map { (job, $0) } }
        guard !schedules.isEmpty else { return }
        logger.info(
            "backup scheduler: \(schedules.map { "\($0.0.name) at \"\($0.1.expression)\"" }.joined(separator: ", "))"
        )
        var lastRun: [String: Date] = [:]
        publishMetrics()
        while !Task.isCancelled {
            let now = Date()
            // The catalog may change from outside (`backup run --controller`, the CLI): keep the gauges current.
            publishMetrics()
            if let swept = try? runner.store.sweepOrphanedBackups(staleAfter: 45, at: now), !swept.isEmpty {
                logger.warning("backups orphaned (their process died): \(swept.map(\.id).joined(separator: ", "))")
            }
            for (job, schedule) in schedules where schedule.matches(now) {
                let minute = floor(now.timeIntervalSince1970 / 60)
                if let last = lastRun[job.name], floor(last.timeIntervalSince1970 / 60) == minute { continue }
                lastRun[job.name] = now
                do {
                    let record = try await runner.run(job)
                    logger.info("backup \(record.id) completed: \(record.storedBytes ?? 0) bytes stored")
                    if job.verify != .never {
                        try await runner.verify(record.id)
                    }
                } catch {
                    logger.error("backup job \(job.name) failed: \(error)")
                }
                publishMetrics()
            }
            try? await Task.sleep(for: sweepInterval)
        }
    }

    /// Sets the per-job gauges from the catalog.
    public func publishMetrics() {
        for job in runner.configuration.backups {
            let backups = (try? runner.store.backups(job: job.name)) ?? []
            let labels = [("job", job.name)]
            if let success = backups.first(where: { $0.state == .completed || $0.state == .verified }) {
                gauge(
                    "zoneward_backup_last_success_timestamp_seconds",
                    "When the job's last good backup started.",
                    labels
                )
                .set(to: success.startedAt.timeIntervalSince1970)
                gauge("zoneward_backup_stored_bytes", "Bytes stored by the job's last good backup.", labels)
                    .set(to: Double(success.storedBytes ?? 0))
                gauge("zoneward_backup_source_bytes", "Source bytes of the job's last good backup.", labels)
                    .set(to: Double(success.plainBytes ?? 0))
                if let finished = success.finishedAt {
                    gauge("zoneward_backup_duration_seconds", "How long the job's last good backup took.", labels)
                        .set(to: finished.timeIntervalSince(success.startedAt))
                }
            }
            if let verified = backups.first(where: { $0.state == .verified }) {
                gauge(
                    "zoneward_backup_last_verified_timestamp_seconds",
                    "When the job's last verified backup started.",
                    labels
                )
                .set(to: verified.startedAt.timeIntervalSince1970)
            }
        }
    }

    private func gauge(_ name: String, _ help: String, _ labels: [(String, String)]) -> Gauge {
        registry.makeGauge(
            descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help),
            labels: labels
        )
    }
}
