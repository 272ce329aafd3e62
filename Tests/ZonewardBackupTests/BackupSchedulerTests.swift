import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import Testing
import ZonewardBackup
import ZonewardModel
import ZonewardState

@Suite struct BackupSchedulerTests {
    /// Measured before: the scheduler never returned, so a controller with backup jobs ignored SIGTERM.
    @Test func stopsOnGracefulShutdown() async throws {
        var configuration = ZonewardConfiguration(zones: [ZoneConfiguration(name: "z", region: "r")])
        configuration.backups = [
            BackupJobConfiguration(
                name: "app",
                source: .sqlite("/nonexistent/app.db"),
                schedule: "0 0 1 1 *",
                targets: [.filesystem("/nonexistent/backups")],
                keyFile: "/nonexistent/backup.key"
            )
        ]
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let scheduler = BackupScheduler(
            runner: BackupRunner(store: try StateStore.inMemory(), configuration: configuration),
            registry: PrometheusCollectorRegistry(),
            logger: logger,
            sweepInterval: .seconds(3600)
        )
        let group = ServiceGroup(services: [scheduler], logger: logger)
        let running = Task { try await group.run() }
        try await Task.sleep(for: .milliseconds(200))
        await group.triggerGracefulShutdown()
        // Stopped by the shutdown, not by its next sweep an hour away (bounded, so a scheduler that never stops
        // fails, not hangs).
        let stopped = await withTaskGroup(of: Bool.self) { race in
            race.addTask {
                _ = try? await running.value
                return true
            }
            race.addTask {
                // Far over the stalls a busy 2-core pool has shown (12.5 s), far under the sweep.
                try? await Task.sleep(for: .seconds(120))
                return false
            }
            let first = await race.next() ?? false
            running.cancel()
            race.cancelAll()
            return first
        }
        #expect(stopped)
    }
}
