import ZonewardState

/// What the coordinator does for an operation in a given state.
public enum FailoverAction: Sendable, Equatable {
    /// Re-check the guards right before acting.
    case checkGuards
    case fence(region: String)
    case promote(region: String)
    /// Move the service to the new region at epoch + 1 (exactly once).
    case reroute
    case verify(region: String)
    case finished
}

/// The failover/switchover state machine, pure: `planned → fencing → promoting → rerouting → verifying →
/// done | failed`. The coordinator performs the action of the current state, records the outcome, and asks
/// for the next state. Every action is idempotent, so a coordinator that died mid-step repeats the step.
public enum FailoverStateMachine {
    public static func action(for operation: FailoverOperation) -> FailoverAction {
        switch operation.state {
        case .planned: return .checkGuards
        case .fencing: return .fence(region: operation.fromRegion)
        case .promoting: return .promote(region: operation.toRegion)
        case .rerouting: return .reroute
        case .verifying: return .verify(region: operation.toRegion)
        case .done, .failed: return .finished
        }
    }

    /// The state after `state`'s action succeeded or failed.
    public static func next(after state: FailoverStep, succeeded: Bool) -> FailoverStep {
        guard succeeded else { return state.isFinal ? state : .failed }
        switch state {
        case .planned: return .fencing
        case .fencing: return .promoting
        case .promoting: return .rerouting
        case .rerouting: return .verifying
        case .verifying: return .done
        case .done: return .done
        case .failed: return .failed
        }
    }

    /// Every step from `state` to the end, for `--dry-run` and `plan`.
    public static func remainingSteps(from state: FailoverStep) -> [FailoverStep] {
        var steps: [FailoverStep] = []
        var current = state
        while !current.isFinal {
            steps.append(current)
            current = next(after: current, succeeded: true)
        }
        return steps + [current]
    }
}
