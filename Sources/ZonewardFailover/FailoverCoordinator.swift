import Foundation
import Logging
import ZonewardModel
import ZonewardState

/// Drives failover operations through the state machine, writing each step to SQLite before and after it
/// runs, so an operation interrupted at any point is resumed (the step repeated) and reaches a final state.
///
/// An operation is claimed by one runner (this process) while it runs, and every step is recorded by
/// compare-and-set, so the controller and a break-glass `failover resume --db` cannot both run it. Writes that
/// find SQLite busy are retried.
public struct FailoverCoordinator: Sendable {
    public let store: StateStore
    public let configuration: ZonewardConfiguration
    public let logger: Logger
    /// Who runs operations through this coordinator, as `host/pid/nonce`.
    public let runner: String
    /// A claim not renewed for this long may be taken over (its runner is presumed gone).
    public var lease: Duration = .seconds(60)
    /// How often a running operation renews its claim.
    public var heartbeat: Duration = .seconds(10)
    /// How often, and how far apart, a write that found the database busy is tried again.
    public var busyAttempts = 40
    public var busyDelay: Duration = .milliseconds(250)
    /// Whether this process may act, and with which term: asked before every state write and driver call.
    /// A single replica's gate always answers term 0.
    public let gate: LeadershipGate

    public init(
        store: StateStore,
        configuration: ZonewardConfiguration,
        logger: Logger,
        runner: String = RunnerIdentity.make(),
        gate: LeadershipGate? = nil
    ) {
        self.store = store
        self.configuration = configuration
        self.logger = logger
        self.runner = runner
        self.gate = gate ?? .single(me: LeaderRecord(id: runner, url: ""))
    }

    /// The active region and epoch of a service: from the state, else its primary at epoch 0.
    public func activeRegion(of service: ServiceConfiguration) throws -> (region: String, epoch: Int64) {
        if let state = try store.serviceState(service.name) { return (state.activeRegion, state.epoch) }
        return (service.primaryRegion ?? "", 0)
    }

    /// Evaluates the guards of moving `service` to `target` now, measuring the target's lag.
    public func guards(
        service: ServiceConfiguration,
        target: String,
        force: Bool,
        automatic: Bool
    ) async throws -> [GuardResult] {
        let (active, _) = try activeRegion(of: service)
        let health = Dictionary(
            uniqueKeysWithValues: try store.regionHealth(service: service.name).map { ($0.region, $0) }
        )
        var lag: Double?
        var lagError: String?
        if let source = service.failover?.lag, service.failover?.maxLagSeconds != nil {
            do {
                lag = try await RegionProbe.lag(source, region: target)
            } catch {
                lagError = "\(error)"
            }
        }
        return FailoverGuards.evaluate(
            .init(
                service: service,
                activeRegion: active,
                target: target,
                health: health,
                lag: lag,
                lagError: lagError,
                force: force,
                automatic: automatic,
                lastChange: try store.serviceState(service.name)?.updatedAt,
                now: Date()
            )
        )
    }

    /// The plan of moving `service` to `target` now: switchover or failover, guards, steps. Changes nothing.
    public func plan(service: ServiceConfiguration, to target: String, force: Bool) async throws -> FailoverPlan {
        let (active, _) = try activeRegion(of: service)
        let guards = try await guards(service: service, target: target, force: force, automatic: false)
        let primaryUp = try store.regionHealth(service: service.name).first { $0.region == active }?.up ?? true
        return FailoverPlan(
            service: service.name,
            kind: primaryUp ? "switchover" : "failover",
            from: active,
            to: target,
            guards: guards,
            steps: FailoverStateMachine.remainingSteps(from: .planned).map(\.rawValue),
            operation: nil,
            refused: guards.contains { !$0.passed }
        )
    }

    /// Runs an operation from its current state to a final one; returns it as it ended.
    ///
    /// Throws `StateError.conflict` when another live runner holds the operation. When the task is cancelled
    /// (SIGTERM) during a step, the step's failure is not recorded: the operation stays at that step, released,
    /// to be resumed, and this throws `CancellationError`.
    @discardableResult
    public func run(_ operationId: Int64) async throws -> FailoverOperation {
        let lease = self.lease
        // With an election, leadership is the claim: the leader of the current term takes over an operation an
        // earlier leader held (that one can no longer act: its gate expired before this term began).
        let elected = !gate.isSingle
        _ = try gate.term()
        try await retryingBusy {
            try store.claimOperation(operationId, runner: runner, at: Date()) { holder, lastSeen in
                elected || RunnerIdentity.isGone(holder, lastSeen: lastSeen, lease: lease, now: Date())
            }
        }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await renewClaim(operationId) }
            do {
                var operation = try await runSteps(operationId)
                group.cancelAll()
                try? store.releaseOperation(operationId, runner: runner)
                operation.runner = nil
                operation.runnerSeenAt = nil
                return operation
            } catch {
                group.cancelAll()
                try? store.releaseOperation(operationId, runner: runner)
                throw error
            }
        }
    }

    /// Renews the claim every `heartbeat` until cancelled.
    private func renewClaim(_ operationId: Int64) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: heartbeat)
            if Task.isCancelled { return }
            do {
                _ = try gate.term()
                try store.claimOperation(operationId, runner: runner, at: Date()) { _, _ in false }
            } catch {
                logger.warning("failover \(operationId): cannot renew the claim: \(error)")
            }
        }
    }

    private func runSteps(_ operationId: Int64) async throws -> FailoverOperation {
        while true {
            guard let operation = try await retryingBusy({ try store.operation(operationId) }) else {
                throw DriverError("no failover operation \(operationId)")
            }
            let action = FailoverStateMachine.action(for: operation)
            if action == .finished { return operation }
            let step = operation.state
            try await record(operationId, step: step, status: .started, detail: "\(action)")
            logger.info(
                "failover \(operationId) \(operation.service): \(step.rawValue)",
                metadata: ["failover.operation": "\(operationId)", "failover.step": "\(step.rawValue)"]
            )
            let outcome: Result<String, any Error>
            do {
                outcome = .success(try await perform(action, operation))
            } catch {
                outcome = .failure(error)
            }
            switch outcome {
            case .success(let detail):
                let next = FailoverStateMachine.next(after: step, succeeded: true)
                try await record(operationId, step: step, status: .succeeded, detail: detail, next: next)
            case .failure(let error) where Task.isCancelled || error is CancellationError || error is NotLeaderError:
                logger.notice("failover \(operationId) \(operation.service): \(step.rawValue) interrupted; resumable")
                throw error is NotLeaderError ? error : CancellationError()
            case .failure(let error):
                logger.error("failover \(operationId) \(operation.service): \(step.rawValue) failed: \(error)")
                try await record(
                    operationId,
                    step: step,
                    status: .failed,
                    detail: "\(error)",
                    next: .failed,
                    error: "\(step.rawValue): \(error)"
                )
            }
        }
    }

    /// Records a step by compare-and-set as this runner, retrying while the database is busy.
    private func record(
        _ operationId: Int64,
        step: FailoverStep,
        status: FailoverStepRecord.Status,
        detail: String,
        next: FailoverStep? = nil,
        error: String? = nil
    ) async throws {
        try await retryingBusy {
            _ = try gate.term()
            return try store.recordStep(
                operationId,
                step: step,
                status: status,
                detail: detail,
                next: next,
                error: error,
                runner: runner,
                at: Date()
            )
        }
    }

    /// Runs a state write or read, trying again up to `busyAttempts` times while SQLite answers busy.
    @discardableResult
    func retryingBusy<T>(_ body: () throws -> T) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try body()
            } catch let error as StateError where error.isBusy && attempt < busyAttempts {
                attempt += 1
                logger.debug("state database busy; trying again (\(attempt)/\(busyAttempts))")
                try? await Task.sleep(for: busyDelay)
            }
        }
    }

    private func perform(_ action: FailoverAction, _ operation: FailoverOperation) async throws -> String {
        guard let service = configuration.service(named: operation.service) else {
            throw DriverError("service \(operation.service) is no longer in the configuration")
        }
        let failover = service.failover ?? FailoverConfiguration()
        let term = try gate.term()
        let context = DriverRunner.Context(
            service: operation.service,
            from: operation.fromRegion,
            to: operation.toRegion,
            epoch: LeadershipGate.epoch(after: operation.epochBefore, term: term),
            operation: operation.id ?? 0,
            action: "",
            term: term
        )
        switch action {
        case .checkGuards:
            let results = try await guards(
                service: service,
                target: operation.toRegion,
                force: operation.forced,
                automatic: false
            )
            let refused = results.filter { !$0.passed }
            guard refused.isEmpty else {
                throw DriverError(
                    "guards refused: " + refused.map { "\($0.name) (\($0.detail))" }.joined(separator: "; ")
                )
            }
            return results.map { "\($0.name): \($0.detail)\($0.overridden ? " [forced]" : "")" }.joined(separator: "; ")
        case .fence:
            guard let fence = failover.fence else { return "no fence driver; proxies are fenced by the epoch" }
            var fenceContext = context
            fenceContext.action = "fence"
            _ = try gate.term()
            return try await DriverRunner.run(fence, context: fenceContext)
        case .promote:
            guard let promote = failover.promote else { return "no promote driver" }
            var promoteContext = context
            promoteContext.action = "promote"
            _ = try gate.term()
            return try await DriverRunner.run(promote, context: promoteContext)
        case .reroute:
            let state = try await retryingBusy {
                let term = try gate.term()
                return try store.reroute(
                    operation.id ?? 0,
                    epoch: LeadershipGate.epoch(after: operation.epochBefore, term: term),
                    term: term,
                    at: Date()
                )
            }
            return "\(operation.service) now active in \(state.activeRegion) at epoch \(state.epoch)"
        case .verify(let region):
            guard let probe = failover.probes[region] else { return "no probe for \(region); not verified" }
            let deadline = ContinuousClock.now + failover.verifyTimeout
            var last = ""
            while ContinuousClock.now < deadline {
                let (up, detail) = await RegionProbe.check(probe)
                if up { return detail }
                last = detail
                try await Task.sleep(for: min(probe.interval, .milliseconds(250)))
            }
            throw DriverError(
                "\(region) did not pass its probe within \(TimeSpan.format(failover.verifyTimeout)): \(last)"
            )
        case .finished:
            return ""
        }
    }
}

/// Names the process running an operation (`host/pid/start/nonce`, `start` being the process's start time
/// from /proc) and tells whether such a runner is gone.
public enum RunnerIdentity {
    public static func make() -> String {
        let pid = getpid()
        return "\(hostName)/\(pid)/\(startTime(of: pid) ?? "0")/\(UUID().uuidString.prefix(8).lowercased())"
    }

    /// Whether a claim by `holder`, last renewed at `lastSeen`, may be taken over: it was not renewed within
    /// `lease`, or its process on this host no longer exists (or its pid now names another process, as after
    /// a container restart where the controller is pid 1 again).
    public static func isGone(_ holder: String, lastSeen: Date, lease: Duration, now: Date) -> Bool {
        if now.timeIntervalSince(lastSeen) > lease.seconds { return true }
        let parts = holder.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == hostName, let pid = pid_t(parts[1]) else { return false }
        if kill(pid, 0) != 0 && errno == ESRCH { return true }
        if let start = startTime(of: pid), start != parts[2] { return true }
        return false
    }

    static let hostName: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    /// The start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat), if readable.
    static func startTime(of pid: pid_t) -> String? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // After "(comm)" come the fields from the 3rd on: the 22nd is at index 19.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? String(fields[19]) : nil
    }
}
