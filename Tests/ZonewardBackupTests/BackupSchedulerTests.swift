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
            logger: logger
        )
        let group = ServiceGroup(services: [scheduler], logger: logger)
        let running = Task { try await group.run() }
        try await Task.sleep(for: .milliseconds(200))
        let stopping = ContinuousClock.now
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(ContinuousClock.now - stopping < .seconds(2))
    }
}
