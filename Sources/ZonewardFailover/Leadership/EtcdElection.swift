import Foundation
import Logging
import NIOSSL
import ZonewardModel

/// Leader election on etcd's v3 JSON gateway.
///
/// Campaign: grant a lease with the TTL, then one transaction: if `<prefix>leader` does not exist, put this
/// replica's `LeaderRecord` there attached to the lease, else read it to learn who leads. The term is the
/// key's create revision (revisions only grow, so a later leader always has a higher term). The leader
/// renews its lease every TTL/3 and checks that the key is still its own; each success grants the gate until
/// the renewal's send time + TTL − safety margin. Followers watch the key (and poll it every TTL/5 in case the
/// watch breaks) and campaign as soon as it is deleted or its lease expires. On cancellation the leader
/// revokes its lease, which deletes the key, so the next replica takes over at once.
public struct EtcdElection: LeaderElection {
    public let prefix: String
    public let ttl: Duration
    public let safetyMargin: Duration
    /// Whether a cancelled leader revokes its lease (resigns); tests turn it off to act out a killed leader.
    public var resignsOnCancel = true
    let gateway: EtcdGateway
    let logger: Logger
    let now: @Sendable () -> ContinuousClock.Instant

    public var leaderKey: String { prefix + "leader" }

    /// The key `fencedWrite(name:…)` writes.
    public func stateKey(_ name: String) -> String { prefix + "state/" + name }

    public init(
        _ configuration: ControllerHAConfiguration.EtcdElection,
        safetyMargin: Duration,
        logger: Logger,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }
    ) throws(ElectionError) {
        try self.init(configuration, safetyMargin: safetyMargin, logger: logger, faults: ElectionFaults(), now: now)
    }

    init(
        _ configuration: ControllerHAConfiguration.EtcdElection,
        safetyMargin: Duration,
        logger: Logger,
        faults: ElectionFaults,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }
    ) throws(ElectionError) {
        guard !configuration.endpoints.isEmpty else {
            throw .configuration("etcd.endpoints: at least one etcd client URL is needed")
        }
        for endpoint in configuration.endpoints {
            guard let url = URL(string: endpoint), url.scheme == "http" || url.scheme == "https", url.host != nil
            else {
                throw .configuration("etcd.endpoints: \"\(endpoint)\" is not an http:// or https:// URL")
            }
        }
        guard configuration.ttl <= TimeSpan.maximum else {
            throw .configuration("etcd.ttl: must be at most \(TimeSpan.format(TimeSpan.maximum))")
        }
        guard configuration.ttl >= .seconds(1) else {
            throw .configuration("etcd.ttl: \(configuration.ttl) is below etcd's minimum of 1s")
        }
        guard safetyMargin >= .zero, safetyMargin < configuration.ttl else {
            throw .configuration(
                "safetyMargin: \(safetyMargin) must be at least 0 and below etcd.ttl (\(configuration.ttl))"
            )
        }
        guard !configuration.prefix.isEmpty else { throw .configuration("etcd.prefix: must not be empty") }
        prefix = configuration.prefix
        ttl = configuration.ttl
        self.safetyMargin = safetyMargin
        self.logger = logger
        self.now = now
        gateway = EtcdGateway(
            endpoints: configuration.endpoints,
            tls: try Self.tls(configuration),
            faults: faults
        )
    }

    static func tls(
        _ configuration: ControllerHAConfiguration.EtcdElection
    ) throws(ElectionError) -> NIOSSL.TLSConfiguration? {
        let usesTLS =
            configuration.endpoints.contains { $0.hasPrefix("https:") } || configuration.caFile != nil
            || configuration.certFile != nil || configuration.keyFile != nil
        guard usesTLS else { return nil }
        var tls = NIOSSL.TLSConfiguration.makeClientConfiguration()
        if let caFile = configuration.caFile {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw .configuration("etcd.caFile: cannot load \(caFile): \(error)")
            }
        }
        switch (configuration.certFile, configuration.keyFile) {
        case (nil, nil): break
        case (let certFile?, let keyFile?):
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certFile).map { .certificate($0) }
            } catch {
                throw .configuration("etcd.certFile: cannot load \(certFile): \(error)")
            }
            do {
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            } catch {
                throw .configuration("etcd.keyFile: cannot load \(keyFile): \(error)")
            }
        case (nil, _?): throw .configuration("etcd.keyFile is set without etcd.certFile")
        case (_?, nil): throw .configuration("etcd.certFile is set without etcd.keyFile")
        }
        return tls
    }

    // MARK: Timings

    /// The TTL asked of etcd, in whole seconds (never below the configured TTL).
    var ttlSeconds: Int64 {
        let (seconds, attoseconds) = ttl.components
        return max(1, seconds + (attoseconds > 0 ? 1 : 0))
    }

    var renewInterval: Duration { ttl / 3 }
    var pollInterval: Duration { ttl / 5 }
    var retryDelay: Duration { min(ttl / 5, .milliseconds(500)) }
    var requestTimeout: Duration { max(ttl / 3, .seconds(1)) }

    // MARK: Running

    enum Campaign {
        case won(term: Int64, lease: Int64, sentAt: ContinuousClock.Instant)
        case following(LeaderRecord?, createRevision: Int64, revision: Int64)
        /// The key holds this replica's record under an older lease (an earlier campaign whose answer was lost).
        case stale(lease: Int64)
        case retry
    }

    public func run(gate: LeadershipGate) async throws {
        var machine = LeaseStateMachine(validity: ttl - safetyMargin)
        let record: Data
        do {
            record = try JSONEncoder().encode(gate.me)
        } catch {
            throw ElectionError.configuration("cannot encode this replica's leader record: \(error)")
        }
        var log = logger
        log[metadataKey: "election"] = "etcd"
        log[metadataKey: "key"] = "\(leaderKey)"
        while !Task.isCancelled {
            let outcome: Campaign
            do {
                outcome = try await campaign(record: record, me: gate.me)
            } catch {
                if Task.isCancelled { break }
                log.warning("campaign failed; retrying", metadata: ["error": "\(error)"])
                gate.apply(machine.tick(now: now()))
                try? await Task.sleep(for: retryDelay)
                continue
            }
            switch outcome {
            case .won(let term, let lease, let sentAt):
                let campaignAgain = gate.apply(machine.acquired(term: term, sentAt: sentAt, now: now()))
                guard !campaignAgain, machine.isLeader else {
                    await revokeDetached(lease, log)
                    continue
                }
                log.notice("elected leader", metadata: ["term": "\(term)"])
                await lead(term: term, lease: lease, machine: &machine, gate: gate, log: log)
                if Task.isCancelled {
                    if resignsOnCancel {
                        await revokeDetached(lease, log)
                        log.notice("resigned", metadata: ["term": "\(term)"])
                    }
                    gate.apply(machine.resigned())
                    return
                }
                log.warning("lost leadership", metadata: ["term": "\(term)"])
            case .following(let leader, let createRevision, let revision):
                gate.apply(machine.lost(leader: leader))
                log.info("following", metadata: ["leader": "\(leader?.id ?? "?")"])
                await follow(createRevision: createRevision, revision: revision, machine: &machine, gate: gate)
            case .stale(let lease):
                log.info("the leader key holds this replica's record under an old lease; revoking it")
                do {
                    try await gateway.revoke(lease: lease, timeout: requestTimeout)
                } catch {
                    try? await Task.sleep(for: retryDelay)
                }
            case .retry:
                try? await Task.sleep(for: retryDelay)
            }
        }
        gate.apply(machine.resigned())
    }

    /// One campaign: grant a lease, then create the key if absent, else read it.
    func campaign(record: Data, me: LeaderRecord) async throws -> Campaign {
        let sentAt = now()
        let lease = try await gateway.grant(ttl: ttlSeconds, timeout: requestTimeout)
        let answer: (succeeded: Bool, read: EtcdGateway.KeyValue?, revision: Int64)
        do {
            answer = try await gateway.putIf(
                createRevisionOf: leaderKey,
                equals: 0,
                put: leaderKey,
                value: record,
                lease: lease.id,
                orRead: leaderKey,
                timeout: requestTimeout
            )
        } catch {
            await revokeDetached(lease.id, logger)
            throw error
        }
        if answer.succeeded {
            // The put is the transaction's only write: the key's create revision is the header's revision.
            return .won(term: answer.revision, lease: lease.id, sentAt: sentAt)
        }
        await revokeDetached(lease.id, logger)
        guard let current = answer.read else { return .retry }
        let leader = try? JSONDecoder().decode(LeaderRecord.self, from: current.value)
        if leader?.id == me.id, current.lease != 0 {
            return .stale(lease: current.lease)
        }
        return .following(leader, createRevision: current.createRevision, revision: answer.revision)
    }

    /// Renews the lease until leadership is lost or the task is cancelled.
    func lead(
        term: Int64,
        lease: Int64,
        machine: inout LeaseStateMachine,
        gate: LeadershipGate,
        log: Logger
    ) async {
        var next = now() + renewInterval
        while !Task.isCancelled {
            guard let until = machine.validUntil else { return }
            do {
                try await Task.sleep(until: min(next, until), clock: .continuous)
            } catch {
                return
            }
            if gate.apply(machine.tick(now: now())) { return }
            guard now() >= next else { continue }
            let sentAt = now()
            let timeout = max(min(until - sentAt, requestTimeout), .milliseconds(100))
            do {
                let remaining = try await gateway.keepAlive(lease: lease, timeout: timeout)
                let (current, _) = try await gateway.range(leaderKey, timeout: timeout)
                guard remaining > 0, let current, current.createRevision == term, current.lease == lease else {
                    let leader = current.flatMap { try? JSONDecoder().decode(LeaderRecord.self, from: $0.value) }
                    log.warning(
                        "the lease or the leader key is gone",
                        metadata: ["ttl": "\(remaining)", "holder": "\(leader?.id ?? "none")"]
                    )
                    gate.apply(machine.lost(leader: leader))
                    return
                }
                if gate.apply(machine.renewed(sentAt: sentAt, now: now())) { return }
                next = sentAt + renewInterval
            } catch {
                if Task.isCancelled { return }
                log.warning("keep-alive failed", metadata: ["error": "\(error)"])
                if gate.apply(machine.renewFailed(now: now())) { return }
                next = now() + retryDelay
            }
        }
    }

    enum FollowOutcome: Sendable {
        case gone
        case changed(LeaderRecord?, createRevision: Int64, revision: Int64)
    }

    /// Follows until the leader key is deleted (or the task is cancelled), keeping the gate's leader current.
    func follow(
        createRevision: Int64,
        revision: Int64,
        machine: inout LeaseStateMachine,
        gate: LeadershipGate
    ) async {
        var createRevision = createRevision
        var revision = revision
        while !Task.isCancelled {
            let outcome = await watchOrPoll(createRevision: createRevision, revision: revision)
            switch outcome {
            case .gone?, nil: return
            case .changed(let leader, let newCreateRevision, let newRevision):
                gate.apply(machine.lost(leader: leader))
                createRevision = newCreateRevision
                revision = newRevision
            }
        }
    }

    /// The first of: the watch seeing the key deleted or re-created, or a poll seeing the same.
    private func watchOrPoll(createRevision: Int64, revision: Int64) async -> FollowOutcome? {
        await withTaskGroup(of: FollowOutcome?.self) { group in
            group.addTask { await watchKey(createRevision: createRevision, revision: revision) }
            group.addTask { await pollKey(createRevision: createRevision) }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    private func watchKey(createRevision: Int64, revision: Int64) async -> FollowOutcome? {
        var from = revision.saturatingSuccessor
        while !Task.isCancelled {
            do {
                for try await events in gateway.watch(leaderKey, from: from) {
                    for event in events {
                        if let modRevision = event.kv?.modRevision, modRevision >= from {
                            from = modRevision.saturatingSuccessor
                        }
                        switch event.type {
                        case .delete: return .gone
                        case .put:
                            guard let kv = event.kv, kv.createRevision != createRevision else { continue }
                            let leader = try? JSONDecoder().decode(LeaderRecord.self, from: kv.value)
                            return .changed(leader, createRevision: kv.createRevision, revision: kv.modRevision)
                        }
                    }
                }
            } catch {
                logger.debug("watch broke; re-watching", metadata: ["error": "\(error)"])
            }
            // The poll covers the gap; re-watch shortly.
            try? await Task.sleep(for: retryDelay)
        }
        return nil
    }

    private func pollKey(createRevision: Int64) async -> FollowOutcome? {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: pollInterval)
            } catch {
                return nil
            }
            guard let (current, revision) = try? await gateway.range(leaderKey, timeout: requestTimeout) else {
                continue
            }
            guard let current else { return .gone }
            if current.createRevision != createRevision {
                let leader = try? JSONDecoder().decode(LeaderRecord.self, from: current.value)
                return .changed(leader, createRevision: current.createRevision, revision: revision)
            }
        }
        return nil
    }

    /// Revokes `lease` even from a cancelled task (a resignation must still be sent).
    private func revokeDetached(_ lease: Int64, _ log: Logger) async {
        let gateway = gateway
        let timeout = requestTimeout
        let revoked = await Task {
            do {
                try await gateway.revoke(lease: lease, timeout: timeout)
                return true
            } catch {
                return false
            }
        }.value
        if !revoked { log.debug("could not revoke lease \(lease); it expires by itself") }
    }

    // MARK: Fenced store

    public func fencedWrite(name: String, value: String, term: Int64) async throws -> Bool {
        try FencedName.validate(name)
        // Term 0 would compare equal to an absent key: no leader, no write.
        guard term > 0 else { return false }
        return try await gateway.putIf(
            createRevisionOf: leaderKey,
            equals: term,
            put: stateKey(name),
            value: Data(value.utf8),
            orRead: leaderKey,
            timeout: requestTimeout
        ).succeeded
    }

    public func read(name: String) async throws -> String? {
        try FencedName.validate(name)
        return try await gateway.range(stateKey(name), timeout: requestTimeout).kv.map {
            String(decoding: $0.value, as: UTF8.self)
        }
    }
}

/// Names `fencedWrite` accepts: what both stores can hold as a key suffix or an annotation name.
enum FencedName {
    static let reserved: Set<String> = ["leader-url"]

    static func validate(_ name: String) throws(ElectionError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        guard !name.isEmpty, name.count <= 63, name.allSatisfy({ allowed.contains($0) }),
            let first = name.first, first.isLetter || first.isNumber,
            let last = name.last, last.isLetter || last.isNumber
        else {
            throw .invalidName(
                "\"\(name.prefix(80))\": use 1 to 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric"
            )
        }
        guard !reserved.contains(name) else { throw .invalidName("\"\(name)\" is reserved") }
    }
}

extension Int64 {
    /// `self + 1`, or `self` at the maximum: stores' numbers are input, and input must not trap.
    var saturatingSuccessor: Int64 { self == .max ? .max : self + 1 }
}
