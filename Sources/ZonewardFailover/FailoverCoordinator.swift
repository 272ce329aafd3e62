import Foundation
import Logging
import ZonewardModel
import ZonewardState

/// Drives failover operations through the state machine, writing each step to SQLite before and after it
/// runs, so an operation interrupted at any point is resumed (the step repeated) and reaches a final state.
public struct FailoverCoordinator: Sendable {
    public let store: StateStore
    public let configuration: ZonewardConfiguration
    public let logger: Logger

    public init(store: StateStore, configuration: ZonewardConfiguration, logger: Logger) {
        self.store = store
        self.configuration = configuration
        self.logger = logger
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
    @discardableResult
    public func run(_ operationId: Int64) async throws -> FailoverOperation {
        while true {
            guard let operation = try store.operation(operationId) else {
                throw DriverError("no failover operation \(operationId)")
            }
            let action = FailoverStateMachine.action(for: operation)
            if action == .finished { return operation }
            let step = operation.state
            try store.recordStep(operationId, step: step, status: .started, detail: "\(action)", at: Date())
            logger.info(
                "failover \(operationId) \(operation.service): \(step.rawValue)",
                metadata: ["failover.operation": "\(operationId)", "failover.step": "\(step.rawValue)"]
            )
            do {
                let detail = try await perform(action, operation)
                let next = FailoverStateMachine.next(after: step, succeeded: true)
                try store.recordStep(
                    operationId,
                    step: step,
                    status: .succeeded,
                    detail: detail,
                    next: next,
                    at: Date()
                )
            } catch {
                logger.error("failover \(operationId) \(operation.service): \(step.rawValue) failed: \(error)")
                try store.recordStep(
                    operationId,
                    step: step,
                    status: .failed,
                    detail: "\(error)",
                    next: .failed,
                    error: "\(step.rawValue): \(error)",
                    at: Date()
                )
            }
        }
    }

    private func perform(_ action: FailoverAction, _ operation: FailoverOperation) async throws -> String {
        guard let service = configuration.service(named: operation.service) else {
            throw DriverError("service \(operation.service) is no longer in the configuration")
        }
        let failover = service.failover ?? FailoverConfiguration()
        let context = DriverRunner.Context(
            service: operation.service,
            from: operation.fromRegion,
            to: operation.toRegion,
            epoch: operation.epochBefore + 1,
            operation: operation.id ?? 0,
            action: ""
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
            return try await DriverRunner.run(fence, context: fenceContext)
        case .promote:
            guard let promote = failover.promote else { return "no promote driver" }
            var promoteContext = context
            promoteContext.action = "promote"
            return try await DriverRunner.run(promote, context: promoteContext)
        case .reroute:
            let state = try store.reroute(operation.id ?? 0, at: Date())
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
