import Foundation
import Logging
import NIOHTTP1
import Synchronization
import ZonewardDiscovery
import ZonewardModel

/// Leader election on a `coordination.k8s.io/v1` Lease, by client-go's rules.
///
/// Every `retryPeriod` a candidate reads the Lease; it may take it when nobody holds it, or when the record
/// has not changed for the Lease's duration as observed by the candidate's *own* clock (the time it first saw
/// this record, never the `renewTime` written in it, so clocks need not agree). Taking or renewing is a PUT
/// with the `resourceVersion` read, so of two racing candidates one gets 409 Conflict. Taking it from another
/// holder (or from nobody) increments `leaseTransitions`, which is the term. A successful PUT sent at `t`
/// grants the gate until `t + renewDeadline` (client-go: renewDeadline < leaseDuration, so the leader stops
/// acting before any candidate can see the Lease expire). On cancellation the leader releases the Lease
/// (empty holder), so the next candidate takes it at its next try.
public struct KubernetesLeaseElection: LeaderElection {
    public let namespace: String
    public let name: String
    public let leaseDuration: Duration
    public let renewDeadline: Duration
    public let retryPeriod: Duration
    /// Whether a cancelled leader releases the Lease (client-go's ReleaseOnCancel).
    public var resignsOnCancel = true
    let client: KubernetesClient
    let logger: Logger
    let now: @Sendable () -> ContinuousClock.Instant
    let wallClock: @Sendable () -> Date
    /// The replica running the election: fenced writes check the Lease is still held by it.
    let identity = Identity()

    final class Identity: Sendable {
        private let record = Mutex<LeaderRecord?>(nil)
        var me: LeaderRecord? {
            get { record.withLock { $0 } }
            set { record.withLock { $0 = newValue } }
        }
    }

    /// The annotation holding the holder's API URL (holderIdentity holds its id).
    public static let leaderURLAnnotation = "zoneward.io/leader-url"

    public init(
        _ configuration: ControllerHAConfiguration.KubernetesLeaseElection,
        client: KubernetesClient,
        logger: Logger,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { .now },
        wallClock: @escaping @Sendable () -> Date = { Date() }
    ) throws(ElectionError) {
        try Self.validate(configuration)
        namespace = configuration.namespace ?? client.configuration.namespace ?? "default"
        name = configuration.lease
        leaseDuration = configuration.leaseDuration
        renewDeadline = configuration.renewDeadline
        retryPeriod = configuration.retryPeriod
        self.client = client
        self.logger = logger
        self.now = now
        self.wallClock = wallClock
    }

    /// client-go's rules, naming the field at fault.
    static func validate(_ configuration: ControllerHAConfiguration.KubernetesLeaseElection) throws(ElectionError) {
        let lease = configuration.lease
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-.")
        guard !lease.isEmpty, lease.count <= 253, lease.allSatisfy({ allowed.contains($0) }) else {
            throw .configuration("kubernetes.lease: \"\(lease.prefix(80))\" is not a valid Kubernetes object name")
        }
        if let namespace = configuration.namespace {
            guard !namespace.isEmpty, namespace.count <= 63, namespace.allSatisfy({ allowed.contains($0) }),
                !namespace.contains(".")
            else {
                throw .configuration("kubernetes.namespace: \"\(namespace.prefix(80))\" is not a valid namespace")
            }
        }
        let durations = [
            ("leaseDuration", configuration.leaseDuration), ("renewDeadline", configuration.renewDeadline),
            ("retryPeriod", configuration.retryPeriod),
        ]
        for (field, duration) in durations where duration > TimeSpan.maximum {
            throw .configuration("kubernetes.\(field): must be at most \(TimeSpan.format(TimeSpan.maximum))")
        }
        guard configuration.retryPeriod > .zero else {
            throw .configuration("kubernetes.retryPeriod: must be positive")
        }
        guard configuration.leaseDuration >= .seconds(1) else {
            throw .configuration("kubernetes.leaseDuration: must be at least 1s")
        }
        guard configuration.renewDeadline < configuration.leaseDuration else {
            throw .configuration(
                "kubernetes.renewDeadline (\(configuration.renewDeadline)) must be below kubernetes.leaseDuration "
                    + "(\(configuration.leaseDuration))"
            )
        }
        guard configuration.renewDeadline > configuration.retryPeriod * 1.2 else {
            throw .configuration(
                "kubernetes.renewDeadline (\(configuration.renewDeadline)) must exceed 1.2 × kubernetes.retryPeriod "
                    + "(\(configuration.retryPeriod))"
            )
        }
    }

    var leasePath: String { "/apis/coordination.k8s.io/v1/namespaces/\(namespace)/leases/\(name)" }
    var collectionPath: String { "/apis/coordination.k8s.io/v1/namespaces/\(namespace)/leases" }

    var leaseDurationSeconds: Int64 {
        let (seconds, attoseconds) = leaseDuration.components
        return max(1, seconds + (attoseconds > 0 ? 1 : 0))
    }

    var requestTimeout: Duration { max(retryPeriod, .seconds(1)) }

    // MARK: One attempt

    /// What a candidate last saw of the Lease, and when by its own clock.
    struct Observation: Sendable {
        var spec: JSONValue?
        var time: ContinuousClock.Instant?
        /// The highest leaseTransitions seen, so a Lease deleted and created again does not lower the term.
        var highestTransitions: Int64?
        /// The object as the last successful write of ours returned it (for the release).
        var written: JSONValue?
    }

    enum Attempt: Sendable, Equatable {
        /// Taken (from nobody or another holder): the new term.
        case acquired(term: Int64)
        /// Still ours, renewed.
        case renewed(term: Int64)
        /// Another replica holds it and it has not expired.
        case held(by: LeaderRecord)
        /// Someone else wrote the Lease between our read and write (409).
        case conflict
    }

    /// The Lease as stored, or nil when there is none.
    func fetch(timeout: Duration? = nil) async throws -> JSONValue? {
        do {
            return try await client.send(
                .GET,
                leasePath,
                body: JSONValue?.none,
                timeout: timeout ?? requestTimeout,
                as: JSONValue.self
            )
        } catch {
            if error.statusCode == 404 { return nil }
            throw error
        }
    }

    /// client-go's tryAcquireOrRenew against `current` (as just fetched); `sentAt` is set to when the write was
    /// sent, which is what leadership is counted from.
    func tryAcquireOrRenew(
        me: LeaderRecord,
        current: JSONValue?,
        observation: inout Observation,
        sentAt: inout ContinuousClock.Instant,
        timeout: Duration? = nil
    ) async throws -> Attempt {
        let observedAt = now()
        let stamp = Self.microTime(wallClock())
        guard let current else {
            let transitions = observation.highestTransitions.map { $0.saturatingSuccessor } ?? 0
            let spec: JSONValue = [
                "holderIdentity": .string(me.id), "leaseDurationSeconds": .integer(leaseDurationSeconds),
                "acquireTime": .string(stamp), "renewTime": .string(stamp), "leaseTransitions": .integer(transitions),
            ]
            let object: JSONValue = [
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": [
                    "name": .string(name), "namespace": .string(namespace),
                    "annotations": [Self.leaderURLAnnotation: .string(me.url)],
                ],
                "spec": spec,
            ]
            sentAt = now()
            do {
                let created = try await client.send(
                    .POST,
                    collectionPath,
                    body: object,
                    timeout: timeout ?? requestTimeout,
                    as: JSONValue.self
                )
                observation.spec = created["spec"] ?? spec
                observation.time = observedAt
                observation.highestTransitions = max(observation.highestTransitions ?? transitions, transitions)
                observation.written = created
                return .acquired(term: transitions)
            } catch {
                if error.statusCode == 409 { return .conflict }
                throw error
            }
        }
        let spec = current["spec"] ?? [:]
        if observation.spec != spec || observation.time == nil {
            observation.spec = spec
            observation.time = observedAt
        }
        let holder = spec["holderIdentity"]?.string ?? ""
        let transitions = max(0, spec["leaseTransitions"]?.int64 ?? 0)
        observation.highestTransitions = max(observation.highestTransitions ?? transitions, transitions)
        let recordedSeconds = spec["leaseDurationSeconds"]?.int64 ?? 0
        let duration = recordedSeconds > 0 ? Duration.seconds(min(recordedSeconds, 86_400 * 365)) : leaseDuration
        if !holder.isEmpty, holder != me.id, let seen = observation.time, observedAt < seen + duration {
            let url = current["metadata"]?["annotations"]?[Self.leaderURLAnnotation]?.string ?? ""
            return .held(by: LeaderRecord(id: holder, url: url))
        }
        let ours = holder == me.id
        // Taking it over from anyone else, or from nobody, is a transition; the term only grows.
        let term = ours ? transitions : max(transitions, observation.highestTransitions ?? 0).saturatingSuccessor
        var updated = current
        var newSpec = spec
        newSpec["holderIdentity"] = .string(me.id)
        newSpec["leaseDurationSeconds"] = .integer(leaseDurationSeconds)
        newSpec["renewTime"] = .string(stamp)
        newSpec["leaseTransitions"] = .integer(term)
        if !ours || spec["acquireTime"]?.string == nil { newSpec["acquireTime"] = .string(stamp) }
        updated["spec"] = newSpec
        var metadata = current["metadata"] ?? [:]
        var annotations = metadata["annotations"] ?? [:]
        if annotations.object == nil { annotations = [:] }
        annotations[Self.leaderURLAnnotation] = .string(me.url)
        metadata["annotations"] = annotations
        updated["metadata"] = metadata
        sentAt = now()
        do {
            let written = try await client.send(
                .PUT,
                leasePath,
                body: updated,
                timeout: timeout ?? requestTimeout,
                as: JSONValue.self
            )
            observation.spec = written["spec"] ?? newSpec
            observation.time = observedAt
            observation.highestTransitions = max(observation.highestTransitions ?? term, term)
            observation.written = written
            return ours ? .renewed(term: term) : .acquired(term: term)
        } catch {
            if error.statusCode == 409 { return .conflict }
            throw error
        }
    }

    // MARK: Running

    public func run(gate: LeadershipGate) async throws {
        identity.me = gate.me
        var machine = LeaseStateMachine(validity: renewDeadline)
        var observation = Observation()
        var log = logger
        log[metadataKey: "election"] = "kubernetes"
        log[metadataKey: "lease"] = "\(namespace)/\(name)"
        var next = now()
        while !Task.isCancelled {
            let wake = machine.validUntil.map { min($0, next) } ?? next
            do {
                try await Task.sleep(until: wake, clock: .continuous)
            } catch {
                break
            }
            if gate.apply(machine.tick(now: now())) {
                log.warning("could not renew the Lease within renewDeadline; stopped acting")
            }
            guard now() >= next else { continue }
            next = now() + retryPeriod
            // A leader's attempt must end by its deadline; a candidate's within a retry period or so.
            let timeout = machine.validUntil.map { max($0 - now(), .milliseconds(100)) } ?? requestTimeout
            var sentAt = now()
            do {
                let current = try await fetch(timeout: timeout)
                let remaining = machine.validUntil.map { max($0 - now(), .milliseconds(100)) } ?? requestTimeout
                let attempt = try await tryAcquireOrRenew(
                    me: gate.me,
                    current: current,
                    observation: &observation,
                    sentAt: &sentAt,
                    timeout: remaining
                )
                switch attempt {
                case .acquired(let term):
                    if machine.isLeader { gate.apply(machine.lost(leader: nil)) }
                    gate.apply(machine.acquired(term: term, sentAt: sentAt, now: now()))
                    if machine.isLeader { log.notice("elected leader", metadata: ["term": "\(term)"]) }
                case .renewed(let term):
                    if machine.isLeader, machine.highestTerm == term {
                        gate.apply(machine.renewed(sentAt: sentAt, now: now()))
                    } else {
                        gate.apply(machine.acquired(term: term, sentAt: sentAt, now: now()))
                    }
                case .held(let leader):
                    if gate.leader != leader || machine.isLeader {
                        log.info("following", metadata: ["leader": "\(leader.id)"])
                    }
                    gate.apply(machine.lost(leader: leader))
                case .conflict:
                    // Someone else wrote it: read again at once (a renewal may still make its deadline).
                    log.debug("the Lease changed under us (409); reading it again")
                    gate.apply(machine.renewFailed(now: now()))
                    next = now()
                }
            } catch {
                if Task.isCancelled { break }
                log.warning("Lease request failed", metadata: ["error": "\(error)"])
                gate.apply(machine.renewFailed(now: now()))
            }
        }
        if machine.isLeader || observation.written?["spec"]?["holderIdentity"]?.string == gate.me.id,
            resignsOnCancel
        {
            gate.apply(machine.resigned())
            let released = await Task { await release(me: gate.me, observation: observation) }.value
            log.notice(released ? "released the Lease" : "could not release the Lease; it expires by itself")
        }
        gate.apply(machine.resigned())
    }

    /// Clears holderIdentity if the Lease is still ours (client-go's release), keeping the transition count.
    func release(me: LeaderRecord, observation: Observation) async -> Bool {
        var object = observation.written
        for _ in 0..<3 {
            guard let current = object, current["spec"]?["holderIdentity"]?.string == me.id else { return false }
            var updated = current
            var spec = current["spec"] ?? [:]
            let stamp = Self.microTime(wallClock())
            spec["holderIdentity"] = .string("")
            spec["leaseDurationSeconds"] = .integer(1)
            spec["renewTime"] = .string(stamp)
            spec["acquireTime"] = .string(stamp)
            updated["spec"] = spec
            do {
                _ = try await client.send(.PUT, leasePath, body: updated, timeout: requestTimeout, as: JSONValue.self)
                return true
            } catch {
                guard error.statusCode == 409 else { return false }
                object = try? await fetch()
            }
        }
        return false
    }

    // MARK: Fenced store

    static func annotation(_ name: String) -> String { "zoneward.io/" + name }

    public func fencedWrite(name: String, value: String, term: Int64) async throws -> Bool {
        try FencedName.validate(name)
        guard let me = identity.me else { return false }
        for _ in 0..<5 {
            guard let current = try await fetch(), current["spec"]?["holderIdentity"]?.string == me.id,
                current["spec"]?["leaseTransitions"]?.int64 ?? 0 == term
            else { return false }
            var updated = current
            var metadata = current["metadata"] ?? [:]
            var annotations = metadata["annotations"] ?? [:]
            if annotations.object == nil { annotations = [:] }
            annotations[Self.annotation(name)] = .string(value)
            metadata["annotations"] = annotations
            updated["metadata"] = metadata
            do {
                // The resourceVersion read above is the precondition: a takeover in between gets 409.
                _ = try await client.send(.PUT, leasePath, body: updated, timeout: requestTimeout, as: JSONValue.self)
                return true
            } catch {
                if error.statusCode == 409 { continue }
                throw error
            }
        }
        return false
    }

    public func read(name: String) async throws -> String? {
        try FencedName.validate(name)
        return try await fetch()?["metadata"]?["annotations"]?[Self.annotation(name)]?.string
    }

    // MARK: Time

    /// A Kubernetes MicroTime: RFC 3339 in UTC with microseconds, e.g. `2025-01-02T03:04:05.123456Z`.
    static func microTime(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        guard interval.isFinite, abs(interval) < 1e11 else { return "1970-01-01T00:00:00.000000Z" }
        var whole = interval.rounded(.down)
        var micros = Int(((interval - whole) * 1_000_000).rounded())
        if micros >= 1_000_000 {
            whole += 1
            micros -= 1_000_000
        }
        var seconds = time_t(whole)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func padded(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let date = "\(padded(parts.tm_year + 1900, 4))-\(padded(parts.tm_mon + 1, 2))-\(padded(parts.tm_mday, 2))"
        let time = "\(padded(parts.tm_hour, 2)):\(padded(parts.tm_min, 2)):\(padded(parts.tm_sec, 2))"
        return "\(date)T\(time).\(padded(Int32(micros), 6))Z"
    }
}

extension DiscoveryError {
    /// The HTTP status the API server answered with, if it answered.
    var statusCode: Int? {
        if case .status(let code, _, _) = self { return code }
        return nil
    }
}
