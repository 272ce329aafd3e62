import Foundation
import GRDB
import ZonewardAPI

extension StateStore {
    static func registerFailoverMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v2-failover") { db in
            try db.create(table: "failoverOperation") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("service", .text).notNull().indexed()
                t.column("kind", .text).notNull()
                t.column("fromRegion", .text).notNull()
                t.column("toRegion", .text).notNull()
                t.column("state", .text).notNull()
                t.column("epochBefore", .integer).notNull()
                t.column("epochAfter", .integer)
                t.column("forced", .boolean).notNull()
                t.column("actor", .text).notNull()
                t.column("reason", .text).notNull()
                t.column("error", .text)
                t.column("createdAt", .datetime).notNull()
                t.column("updatedAt", .datetime).notNull()
            }
            try db.create(table: "failoverStep") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("operationId", .integer).notNull().indexed().references("failoverOperation")
                t.column("step", .text).notNull()
                t.column("status", .text).notNull()
                t.column("detail", .text).notNull()
                t.column("at", .datetime).notNull()
            }
            try db.create(table: "regionHealth") { t in
                t.column("service", .text).notNull()
                t.column("region", .text).notNull()
                t.column("up", .boolean).notNull()
                t.column("lagSeconds", .double)
                t.column("detail", .text).notNull()
                t.column("changedAt", .datetime).notNull()
                t.column("observedAt", .datetime).notNull()
                t.primaryKey(["service", "region"])
            }
        }
        migrator.registerMigration("v3-failover-runner") { db in
            try db.alter(table: "failoverOperation") { t in
                t.add(column: "runner", .text)
                t.add(column: "runnerSeenAt", .datetime)
            }
        }
    }

    /// Plans an operation, unless one for the same service is still running.
    public func planOperation(
        service: String,
        kind: FailoverOperation.Kind,
        from: String,
        to: String,
        epochBefore: Int64,
        forced: Bool,
        actor: String,
        reason: String,
        at now: Date
    ) throws(StateError) -> FailoverOperation {
        try write { db in
            if let running = try FailoverOperation.filter(Column("service") == service)
                .filter(![FailoverStep.done.rawValue, FailoverStep.failed.rawValue].contains(Column("state")))
                .fetchOne(db)
            {
                throw StateError.invalidArgument(
                    "service \(service) already has operation \(running.id ?? 0) in state \(running.state.rawValue); "
                        + "wait for it or run `zoneward failover resume \(running.id ?? 0)`"
                )
            }
            var operation = FailoverOperation(
                id: nil,
                service: service,
                kind: kind,
                fromRegion: from,
                toRegion: to,
                state: .planned,
                epochBefore: epochBefore,
                epochAfter: nil,
                forced: forced,
                actor: actor,
                reason: reason,
                error: nil,
                createdAt: now,
                updatedAt: now
            )
            try operation.insert(db)
            try Self.appendEvent(
                db,
                time: now,
                actor: actor,
                kind: "failover.planned",
                subject: service,
                detail: [
                    "operation": String(operation.id ?? 0), "kind": kind.rawValue, "from": from, "to": to,
                    "forced": String(forced), "reason": reason,
                ]
            )
            return operation
        }
    }

    /// Claims an operation for `runner` (compare-and-set): refused with `StateError.conflict` while another
    /// runner holds it, unless `canTakeOver(runner, lastSeen)` says that runner is gone. Renews the claim when
    /// `runner` already holds it.
    @discardableResult
    public func claimOperation(
        _ operationId: Int64,
        runner: String,
        at now: Date,
        canTakeOver: @escaping @Sendable (_ holder: String, _ lastSeen: Date) -> Bool
    ) throws(StateError) -> FailoverOperation {
        try write { db in
            guard var operation = try FailoverOperation.fetchOne(db, key: operationId) else {
                throw StateError.invalidArgument("no failover operation \(operationId)")
            }
            if let holder = operation.runner, holder != runner,
                !canTakeOver(holder, operation.runnerSeenAt ?? .distantPast)
            {
                let ago = Int(now.timeIntervalSince(operation.runnerSeenAt ?? now))
                throw StateError.conflict(
                    "operation \(operationId) is being run by \(holder) (seen \(ago) s ago); "
                        + "wait for it, or stop that process first"
                )
            }
            operation.runner = runner
            operation.runnerSeenAt = now
            try operation.update(db)
            return operation
        }
    }

    /// Gives up `runner`'s claim on an operation; does nothing when it does not hold it.
    public func releaseOperation(_ operationId: Int64, runner: String) throws(StateError) {
        try write { db in
            try db.execute(
                sql: "UPDATE failoverOperation SET runner = NULL, runnerSeenAt = NULL WHERE id = ? AND runner = ?",
                arguments: [operationId, runner]
            )
        }
    }

    /// Records that `step` of an operation started or ended, and moves the operation to `next` when given.
    ///
    /// Compare-and-set: the operation must still be at `step` (and, when `runner` is given, claimed by it),
    /// else nothing is written and `StateError.conflict` is thrown, so two runners cannot both move it on.
    public func recordStep(
        _ operationId: Int64,
        step: FailoverStep,
        status: FailoverStepRecord.Status,
        detail: String,
        next: FailoverStep? = nil,
        error: String? = nil,
        runner: String? = nil,
        at now: Date
    ) throws(StateError) {
        try write { db in
            guard var operation = try FailoverOperation.fetchOne(db, key: operationId) else {
                throw StateError.invalidArgument("no failover operation \(operationId)")
            }
            guard operation.state == step else {
                throw StateError.conflict(
                    "operation \(operationId) is at \(operation.state.rawValue), not \(step.rawValue): "
                        + "another runner moved it on"
                )
            }
            if let runner {
                guard operation.runner == runner else {
                    throw StateError.conflict(
                        "operation \(operationId) is now run by \(operation.runner ?? "nobody"), not \(runner)"
                    )
                }
                operation.runnerSeenAt = now
            }
            var record = FailoverStepRecord(
                id: nil,
                operationId: operationId,
                step: step,
                status: status,
                detail: detail,
                at: now
            )
            try record.insert(db)
            if let next {
                operation.state = next
                operation.updatedAt = now
                if let error { operation.error = error }
            }
            if next != nil || runner != nil { try operation.update(db) }
            if let next {
                if next.isFinal {
                    try Self.appendEvent(
                        db,
                        time: now,
                        actor: operation.actor,
                        kind: "failover.\(next.rawValue)",
                        subject: operation.service,
                        detail: [
                            "operation": String(operationId), "from": operation.fromRegion, "to": operation.toRegion,
                            "error": error ?? "",
                        ]
                    )
                }
            }
        }
    }

    /// The rerouting step, idempotent: moves the service to the operation's target region at `epoch` (default
    /// `epochBefore + 1`; a leader of a later term passes a greater one, derived from its term), exactly once.
    /// Run again after a crash, even by another leader, it finds the move made and changes nothing. Fails when
    /// someone else changed the primary since the operation was planned.
    @discardableResult
    public func reroute(
        _ operationId: Int64,
        epoch: Int64? = nil,
        term: Int64 = 0,
        at now: Date
    ) throws(StateError) -> ServiceState {
        try write { db in
            guard var operation = try FailoverOperation.fetchOne(db, key: operationId) else {
                throw StateError.invalidArgument("no failover operation \(operationId)")
            }
            let current = try ServiceState.fetchOne(db, key: operation.service)
            if let current, let after = operation.epochAfter, current.epoch == after,
                current.activeRegion == operation.toRegion
            {
                return current
            }
            let target = max(epoch ?? operation.epochBefore + 1, operation.epochBefore + 1)
            guard (current?.epoch ?? 0) == operation.epochBefore else {
                throw StateError.staleEpoch(
                    service: operation.service,
                    expected: operation.epochBefore,
                    actual: current?.epoch ?? 0
                )
            }
            let next = ServiceState(
                service: operation.service,
                activeRegion: operation.toRegion,
                epoch: target,
                updatedAt: now
            )
            try next.upsert(db)
            operation.epochAfter = target
            operation.updatedAt = now
            try operation.update(db)
            try Self.appendEvent(
                db,
                time: now,
                actor: operation.actor,
                kind: "service.active-region-changed",
                subject: operation.service,
                detail: [
                    "from": current?.activeRegion ?? operation.fromRegion, "to": operation.toRegion,
                    "epoch": String(target), "operation": String(operationId), "term": String(term),
                ]
            )
            return next
        }
    }

    public func operation(_ id: Int64) throws(StateError) -> FailoverOperation? {
        try read { db in try FailoverOperation.fetchOne(db, key: id) }
    }

    /// Newest first.
    public func operations(service: String? = nil, limit: Int = 20) throws(StateError) -> [FailoverOperation] {
        try read { db in
            var request = FailoverOperation.order(Column("id").desc).limit(limit)
            if let service { request = request.filter(Column("service") == service) }
            return try request.fetchAll(db)
        }
    }

    public func unfinishedOperations() throws(StateError) -> [FailoverOperation] {
        try read { db in
            try FailoverOperation
                .filter(![FailoverStep.done.rawValue, FailoverStep.failed.rawValue].contains(Column("state")))
                .order(Column("id"))
                .fetchAll(db)
        }
    }

    public func steps(of operationId: Int64) throws(StateError) -> [FailoverStepRecord] {
        try read { db in
            try FailoverStepRecord.filter(Column("operationId") == operationId).order(Column("id")).fetchAll(db)
        }
    }

    /// Records a region's health; an event is written when up/down changes.
    public func recordRegionHealth(
        service: String,
        region: String,
        up: Bool,
        lagSeconds: Double?,
        detail: String,
        at now: Date
    ) throws(StateError) {
        try write { db in
            let previous = try RegionHealth.fetchOne(db, key: ["service": service, "region": region])
            let changed = previous?.up != up
            let health = RegionHealth(
                service: service,
                region: region,
                up: up,
                lagSeconds: lagSeconds,
                detail: detail,
                changedAt: changed ? now : (previous?.changedAt ?? now),
                observedAt: now
            )
            try health.upsert(db)
            if changed {
                try Self.appendEvent(
                    db,
                    time: now,
                    actor: "controller",
                    kind: up ? "region.up" : "region.down",
                    subject: "\(service)/\(region)",
                    detail: ["detail": detail]
                )
            }
        }
    }

    public func regionHealth(service: String) throws(StateError) -> [RegionHealth] {
        try read { db in
            try RegionHealth.filter(Column("service") == service).order(Column("region")).fetchAll(db)
        }
    }
}
