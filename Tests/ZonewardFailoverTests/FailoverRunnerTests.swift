import Foundation
import GRDB
import Logging
import NIOPosix
import ServiceLifecycle
import Testing
import ZonewardModel
import ZonewardState

@testable import ZonewardFailover

/// A configuration with one manual-failover service `orders` (regions ra, rb) and `failover` as its block.
func ordersConfiguration(failover: String = "{mode: manual}") throws -> ZonewardConfiguration {
    try ZonewardConfiguration.parse(
        yaml: """
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
                failover: \(failover)
            """
    )
}

var quietLogger: Logger {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
}

func planSwitchover(_ store: StateStore) throws -> Int64 {
    let operation = try store.planOperation(
        service: "orders",
        kind: .switchover,
        from: "ra",
        to: "rb",
        epochBefore: 0,
        forced: false,
        actor: "test",
        reason: "test",
        at: Date()
    )
    return try #require(operation.id)
}

@Suite struct FailoverRunnerTests {
    @Test func recordStepMovesOnlyFromTheStateItExpects() throws {
        let store = try StateStore.inMemory()
        let id = try planSwitchover(store)
        try store.recordStep(id, step: .planned, status: .succeeded, detail: "ok", next: .fencing, at: Date())
        // A second runner that still believes the operation is planned is refused and writes nothing.
        #expect(throws: StateError.self) {
            try store.recordStep(id, step: .planned, status: .succeeded, detail: "again", next: .fencing, at: Date())
        }
        #expect(try store.operation(id)?.state == .fencing)
        #expect(try store.steps(of: id).count == 1)
    }

    /// The break-glass `failover resume --db` and a running controller cannot both run an operation.
    @Test func aLiveRunnersClaimIsRefused() async throws {
        let store = try StateStore.inMemory()
        let id = try planSwitchover(store)
        let controller = RunnerIdentity.make()
        try store.claimOperation(id, runner: controller, at: Date()) { _, _ in false }
        let breakGlass = FailoverCoordinator(
            store: store,
            configuration: try ordersConfiguration(),
            logger: quietLogger
        )
        await #expect(throws: StateError.self) { try await breakGlass.run(id) }
        #expect(try store.operation(id)?.state == .planned)
        #expect(try store.steps(of: id).isEmpty)

        // The claim of a process that no longer exists is taken over at once.
        let gone = "\(RunnerIdentity.hostName)/\(try exitedProcessId())/1/controller"
        try store.claimOperation(id, runner: gone, at: Date()) { _, _ in true }
        let operation = try await breakGlass.run(id)
        #expect(operation.state == .done)
        #expect(operation.runner == nil)
    }

    @Test func aStaleClaimIsTakenOver() throws {
        let now = Date()
        #expect(RunnerIdentity.isGone("elsewhere/1/1/x", lastSeen: now - 61, lease: .seconds(60), now: now))
        #expect(!RunnerIdentity.isGone("elsewhere/1/1/x", lastSeen: now - 5, lease: .seconds(60), now: now))
        #expect(!RunnerIdentity.isGone(RunnerIdentity.make(), lastSeen: now, lease: .seconds(60), now: now))
        // The same pid started at another time is another process: a restarted container's pid 1, say.
        let start = try #require(RunnerIdentity.startTime(of: getpid()))
        let earlier = "\(RunnerIdentity.hostName)/\(getpid())/\(start)0/x"
        #expect(RunnerIdentity.isGone(earlier, lastSeen: now, lease: .seconds(60), now: now))
    }

    /// Measured before: a busy database while recording a step's result failed the operation or left it hanging.
    @Test func stepsAreRecordedThroughABusyDatabase() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("zoneward-busy-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("state.db").path
        var configuration = Configuration()
        configuration.busyMode = .immediateError
        let store = try StateStore(try DatabasePool(path: path, configuration: configuration))
        let id = try planSwitchover(store)
        var coordinator = FailoverCoordinator(
            store: store,
            configuration: try ordersConfiguration(),
            logger: quietLogger
        )
        coordinator.busyDelay = .milliseconds(20)
        // Another process holds the write lock for 400 ms.
        let other = try DatabaseQueue(path: path)
        let locked = Task.detached {
            try other.inDatabase { db in
                try db.execute(sql: "BEGIN EXCLUSIVE")
                Thread.sleep(forTimeInterval: 0.4)
                try db.execute(sql: "COMMIT")
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        let operation = try await coordinator.run(id)
        try await locked.value
        #expect(operation.state == .done)
        #expect(try store.steps(of: id).filter { $0.status == .succeeded }.count == 5)
    }

    /// Measured before: SIGTERM during `verifying` cancelled the probe wait and recorded the operation `failed`.
    @Test func cancellationDuringVerifyingLeavesTheOperationResumable() async throws {
        let store = try StateStore.inMemory()
        let configuration = try ordersConfiguration(
            failover: "{mode: manual, probes: {rb: {tcp: 127.0.0.1:1, interval: 100ms}}, verifyTimeout: 30s}"
        )
        try store.recordRegionHealth(service: "orders", region: "rb", up: true, lagSeconds: nil, detail: "", at: Date())
        let id = try planSwitchover(store)
        let coordinator = FailoverCoordinator(store: store, configuration: configuration, logger: quietLogger)
        let running = Task { try await coordinator.run(id) }
        for _ in 0..<1000 where try store.operation(id)?.state != .verifying {
            try await Task.sleep(for: .milliseconds(10))
        }
        try await Task.sleep(for: .milliseconds(100))
        running.cancel()
        await #expect(throws: CancellationError.self) { try await running.value }
        let operation = try #require(try store.operation(id))
        #expect(operation.state == .verifying)
        #expect(operation.error == nil)
        #expect(operation.runner == nil)
        #expect(try store.unfinishedOperations().map(\.id) == [id])
    }
}

/// The pid of a process that has exited and been reaped.
func exitedProcessId() throws -> pid_t {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/true")
    try process.run()
    process.waitUntilExit()
    return process.processIdentifier
}

@Suite struct ControllerShutdownTests {
    /// SIGTERM while an operation is verifying: the controller stops, and the operation stays resumable.
    @Test func gracefulShutdownDuringVerifyingLeavesTheOperationResumable() async throws {
        let configuration = try ordersConfiguration(
            failover: "{mode: manual, probes: {rb: {tcp: 127.0.0.1:1, interval: 100ms}}, verifyTimeout: 60s}"
        )
        let store = try StateStore.inMemory()
        let id = try planSwitchover(store)
        for (step, next) in [
            (FailoverStep.planned, FailoverStep.fencing), (.fencing, .promoting), (.promoting, .rerouting),
        ] {
            try store.recordStep(id, step: step, status: .succeeded, detail: "test", next: next, at: Date())
        }
        try store.reroute(id, at: Date())
        try store.recordStep(id, step: .rerouting, status: .succeeded, detail: "test", next: .verifying, at: Date())
        let controller = ControllerService(
            settings: .init(configuration: configuration, listen: HostPort(host: "127.0.0.1", port: 0), token: "t"),
            store: store,
            group: MultiThreadedEventLoopGroup.singleton,
            logger: quietLogger
        )
        let group = ServiceGroup(services: [controller], logger: quietLogger)
        let running = Task { try await group.run() }
        // The controller resumes the operation at start and waits for rb's probe.
        for _ in 0..<1000
        where try !store.steps(of: id).contains(where: { $0.step == .verifying && $0.status == .started }) {
            try await Task.sleep(for: .milliseconds(10))
        }
        await group.triggerGracefulShutdown()
        try await running.value
        let operation = try #require(try store.operation(id))
        #expect(operation.state == .verifying)
        #expect(operation.error == nil)
        #expect(operation.runner == nil)
    }
}
