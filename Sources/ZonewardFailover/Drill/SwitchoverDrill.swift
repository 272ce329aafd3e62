import Foundation
import ZonewardAPI
import ZonewardModel

/// A switchover drill: a planned switchover of a service through the controller (and, with `andBack`, its
/// return), measuring per leg the RTO (from the request until the operation is done and the service answers
/// in the new region) and the errors a bounded loop of probe requests saw meanwhile.
public struct SwitchoverDrill: Sendable {
    /// How the service is asked whether it answers.
    public enum Probe: Sendable, Equatable {
        /// GET; 2xx or 3xx is an answer.
        case url(String)
        /// `/bin/sh -c COMMAND`; exit 0 is an answer. Its environment has `ZONEWARD_SERVICE` and
        /// `ZONEWARD_REGION`: the region that must answer (empty while the operation is in flight, when
        /// either may).
        case command(String)
    }

    /// What the drill does, checked by `validate`.
    public struct Options: Sendable, Equatable {
        public var service: String
        public var to: String
        public var andBack: Bool
        public var probe: Probe?
        /// Between two probe requests.
        public var probeInterval: Duration
        /// The longest one probe request may take.
        public var probeTimeout: Duration
        /// The longest one leg may take, from the request to the first answer in the new region.
        public var legTimeout: Duration
        /// How long the return leg waits for the guards to allow it (the old primary probed up, its lag).
        public var settleTimeout: Duration
        /// `/bin/sh -c COMMAND` after each leg, to make the old primary a standby of the new one again, with
        /// `ZONEWARD_SERVICE`, `ZONEWARD_FROM` (the old primary) and `ZONEWARD_TO` in its environment.
        public var rejoin: String?
        public var actor: String
    }

    /// A bad command-line argument: the message names it.
    public struct ArgumentError: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    /// Checks the arguments of `zoneward drill switchover` and builds the options.
    public static func validate(
        service: String,
        to: String,
        andBack: Bool,
        probeURL: String?,
        probeCommand: String?,
        probeInterval: String = "200ms",
        probeTimeout: String = "2s",
        timeout: String = "120s",
        settleTimeout: String = "60s",
        rejoin: String? = nil,
        actor: String = "operator"
    ) throws(ArgumentError) -> Options {
        guard !service.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ArgumentError("SERVICE: give the service to switch over")
        }
        guard !to.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ArgumentError("--to: give the region to switch over to")
        }
        var probe: Probe?
        switch (probeURL, probeCommand) {
        case (.some, .some):
            throw ArgumentError("--probe and --probe-command: give one of them, not both")
        case (.some(let url), nil):
            guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""),
                parsed.host?.isEmpty == false
            else {
                throw ArgumentError("--probe: expected an http:// or https:// URL, got \"\(url)\"")
            }
            probe = .url(url)
        case (nil, .some(let command)):
            guard !command.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw ArgumentError("--probe-command: is empty")
            }
            probe = .command(command)
        case (nil, nil):
            probe = nil
        }
        if let rejoin, rejoin.trimmingCharacters(in: .whitespaces).isEmpty {
            throw ArgumentError("--rejoin-command: is empty")
        }
        return Options(
            service: service,
            to: to,
            andBack: andBack,
            probe: probe,
            probeInterval: try duration(probeInterval, "--probe-interval", .milliseconds(10)...(.seconds(60))),
            probeTimeout: try duration(probeTimeout, "--probe-timeout", .milliseconds(10)...(.seconds(60))),
            legTimeout: try duration(timeout, "--timeout", .seconds(1)...(.seconds(3600))),
            settleTimeout: try duration(settleTimeout, "--settle-timeout", .zero...(.seconds(3600))),
            rejoin: rejoin,
            actor: actor
        )
    }

    static func duration(
        _ text: String,
        _ name: String,
        _ range: ClosedRange<Duration>
    ) throws(ArgumentError) -> Duration {
        guard let value = TimeSpan.parse(text) else {
            throw ArgumentError("\(name): expected a duration such as 200ms, 2s or 1m, got \"\(text)\"")
        }
        guard range.contains(value) else {
            throw ArgumentError(
                "\(name): must be from \(TimeSpan.format(range.lowerBound)) to \(TimeSpan.format(range.upperBound)), "
                    + "got \(text)"
            )
        }
        return value
    }

    /// One leg's measurements.
    public struct Leg: Sendable, Equatable {
        public var from: String
        public var to: String
        public var operation: Int64?
        public var rtoSeconds: Double?
        public var probeErrors: Int
        public var probes: Int
        /// The target's replication lag when the leg started, when the controller had measured it.
        public var lagSeconds: Double?
        public var error: String?
    }

    public let options: Options
    let client: ControllerClient
    let log: @Sendable (String) -> Void

    public init(options: Options, client: ControllerClient, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.options = options
        self.client = client
        self.log = log
    }

    /// Runs the legs and returns the drill's record (never throws: a failure is a failed drill, with why).
    public func run() async -> DrillRecord {
        let startedAt = Date()
        var legs: [Leg] = []
        var failure: String?
        do {
            let status = try await client.status().value
            guard let service = status.services.first(where: { $0.name == options.service }) else {
                let known = status.services.map(\.name).joined(separator: ", ")
                throw DriverError("service: \"\(options.service)\" is not a failover service (known: \(known))")
            }
            let home = service.activeRegion
            guard home != options.to else {
                throw DriverError("--to: \(options.to) is already the active region of \(options.service)")
            }
            var plan = [(home, options.to)]
            if options.andBack { plan.append((options.to, home)) }
            for (index, (from, to)) in plan.enumerated() {
                if index > 0 { try await settle(to: to) }
                let leg = try await runLeg(from: from, to: to)
                legs.append(leg)
                if let legError = leg.error { throw DriverError(legError) }
                if let rejoin = options.rejoin { try await runRejoin(rejoin, from: from, to: to) }
            }
        } catch {
            failure = "\(error)"
        }
        let detail = legs.map { leg in
            "\(leg.from) → \(leg.to): operation \(leg.operation.map(String.init) ?? "-"), RTO "
                + (leg.rtoSeconds.map { String(format: "%.2f s", $0) } ?? "-")
                + (leg.probes > 0 ? ", \(leg.probeErrors) of \(leg.probes) probes failed" : "")
                + (leg.lagSeconds.map { String(format: ", lag %.2f s at the start", $0) } ?? "")
        }
        let lags = legs.compactMap(\.lagSeconds)
        return DrillRecord(
            kind: .switchover,
            target: options.service,
            startedAt: startedAt,
            finishedAt: max(Date(), startedAt),
            success: failure == nil && legs.allSatisfy { $0.rtoSeconds != nil },
            rtoSeconds: legs.compactMap(\.rtoSeconds),
            rpoSeconds: lags.max(),
            probeErrors: legs.map(\.probeErrors),
            detail: detail.joined(separator: "; "),
            error: failure,
            actor: options.actor
        )
    }

    /// Waits until the guards allow moving the primary to `to` (bounded by `settleTimeout`).
    func settle(to: String) async throws {
        let deadline = ContinuousClock.now + options.settleTimeout
        var plan = try await dryRun(to: to)
        while plan.refused, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(500))
            plan = try await dryRun(to: to)
        }
        if plan.refused {
            let refused = plan.guards.filter { !$0.passed }.map { "\($0.name) (\($0.detail))" }
            throw DriverError(
                "the return to \(to) stayed refused for \(TimeSpan.format(options.settleTimeout)): "
                    + refused.joined(separator: "; ")
            )
        }
    }

    func dryRun(to: String) async throws -> FailoverPlan {
        try await client.failover(
            FailoverRequest(
                service: options.service,
                to: to,
                force: false,
                dryRun: true,
                actor: options.actor,
                reason: nil
            )
        )
    }

    /// One leg: the request, then the operation and the probes until the service answers in `to`.
    func runLeg(from: String, to: String) async throws -> Leg {
        var leg = Leg(from: from, to: to, probeErrors: 0, probes: 0)
        let status = try? await client.status().value
        leg.lagSeconds =
            status?.services.first { $0.name == options.service }?.regions.first { $0.region == to }?
            .lagSeconds
        log("leg \(from) → \(to): requesting the switchover")
        let clock = ContinuousClock()
        let started = clock.now
        let deadline = started + options.legTimeout
        let plan = try await client.failover(
            FailoverRequest(
                service: options.service,
                to: to,
                force: false,
                dryRun: false,
                actor: options.actor,
                reason: "switchover drill"
            )
        )
        guard !plan.refused, let id = plan.operation else {
            let refused = plan.guards.filter { !$0.passed }.map { "\($0.name) (\($0.detail))" }
            leg.error = "the switchover \(from) → \(to) was refused: \(refused.joined(separator: "; "))"
            return leg
        }
        leg.operation = id
        var done: ContinuousClock.Instant?
        while clock.now < deadline {
            if done == nil {
                let operation = try await client.operation(id).operation
                if operation.state.isFinal {
                    guard operation.state == .done else {
                        leg.error = "operation \(id) \(operation.state.rawValue): \(operation.error ?? "")"
                        return leg
                    }
                    done = clock.now
                    log(
                        String(
                            format: "leg \(from) → \(to): operation \(id) done after %.2f s",
                            (clock.now - started).seconds
                        )
                    )
                }
            }
            if let probe = options.probe {
                leg.probes += 1
                let answered = await Self.ask(
                    probe,
                    service: options.service,
                    region: done == nil ? "" : to,
                    timeout: options.probeTimeout
                )
                if !answered { leg.probeErrors += 1 }
                if answered, done != nil {
                    leg.rtoSeconds = (clock.now - started).seconds
                    return leg
                }
            } else if let done {
                leg.rtoSeconds = (done - started).seconds
                return leg
            }
            try await Task.sleep(for: options.probeInterval)
        }
        leg.error =
            done == nil
            ? "operation \(id) was not done within \(TimeSpan.format(options.legTimeout))"
            : "the service did not answer in \(to) within \(TimeSpan.format(options.legTimeout))"
        return leg
    }

    /// One probe request: whether the service answered (in `region`, when the probe can tell).
    static func ask(_ probe: Probe, service: String, region: String, timeout: Duration) async -> Bool {
        switch probe {
        case .url(let url):
            return await RegionProbe.check(ProbeConfiguration(target: .http(url), timeout: timeout)).up
        case .command(let command):
            let outcome = try? await DriverRunner.runCommand(
                ["/bin/sh", "-c", command],
                environment: ["ZONEWARD_SERVICE": service, "ZONEWARD_REGION": region],
                timeout: timeout
            )
            return outcome?.0 == 0
        }
    }

    func runRejoin(_ command: String, from: String, to: String) async throws {
        log("rejoining \(from) as a standby of \(to)")
        let (status, output) = try await DriverRunner.runCommand(
            ["/bin/sh", "-c", command],
            environment: ["ZONEWARD_SERVICE": options.service, "ZONEWARD_FROM": from, "ZONEWARD_TO": to],
            timeout: .seconds(300)
        )
        guard status == 0 else {
            throw DriverError("--rejoin-command exited \(status) after \(from) → \(to): \(output.suffix(300))")
        }
    }
}
