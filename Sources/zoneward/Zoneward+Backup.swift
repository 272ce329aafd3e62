import ArgumentParser
import Foundation
import Synchronization
import ZonewardBackup
import ZonewardFailover
import ZonewardModel
import ZonewardState

extension Zoneward {
    /// `zoneward backup …`.
    struct Backup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take, list, verify and restore encrypted, checksummed backups.",
            discussion: """
                A backup is a consistent SQLite snapshot (online backup API), compressed (the job's codec: zstd \
                by default, or gzip), encrypted with AES-256-GCM in authenticated 1 MiB blocks, checksummed \
                (SHA-256), written to each target under a temporary name and renamed, with a JSON manifest \
                beside it. The catalog (the state database) lists it only once every object is written whole \
                (fsynced, its size checked); `backup verify` restores it to prove it.
                """,
            subcommands: [Run.self, List.self, Status.self, Verify.self, Restore.self, ShipState.self, Prune.self]
        )
    }
}

/// `--config` and `--db`, shared by the backup commands.
struct BackupOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Configuration file with the backups: jobs.", valueName: "file"))
    var config: String

    @OptionGroup var database: DatabaseOptions

    func runner() throws -> BackupRunner {
        BackupRunner(store: try openStore(database.db), configuration: try loadConfiguration(config))
    }

    /// A runner for reading the catalog that never creates the database: when the file does not exist (lost
    /// with its controller), the catalog is an empty one in memory and the backups are found on the targets.
    func readingRunner() throws -> (runner: BackupRunner, databaseExists: Bool) {
        let configuration = try loadConfiguration(config)
        guard FileManager.default.fileExists(atPath: database.db) else {
            return (BackupRunner(store: try StateStore.inMemory(), configuration: configuration), false)
        }
        return (BackupRunner(store: try openStore(database.db), configuration: configuration), true)
    }

    /// The jobs `--job` names (all when nil), or a clear bad-input error.
    func jobs(_ name: String?, in configuration: ZonewardConfiguration) throws -> [BackupJobConfiguration] {
        guard let name else { return configuration.backups }
        guard let job = configuration.backupJob(named: name) else {
            printError(
                "--job: unknown job \"\(name)\" (known: \(configuration.backups.map(\.name).joined(separator: ", ")))"
            )
            throw ExitCode.badInput
        }
        return [job]
    }
}

extension Zoneward.Backup {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take a backup of every job, or of one; what the CronJob runs.",
            discussion: """
                With --controller (the controller's URL, or its replicas' separated by commas) the catalog \
                entries are recorded through the controller's API (a token with the backup scope), so the \
                job needs no access to the state database: what a Kubernetes CronJob with no volume runs.

                Examples:
                  zoneward backup run --job state --config config/zoneward.yaml --db ./zoneward.db
                  zoneward backup run --config /etc/zoneward/zoneward.yaml \\
                      --controller http://zoneward-controller:9900 --token-file /var/run/zoneward/backup.token

                Exit codes: 0 every job succeeded, 1 a job failed (or no controller answered), 2 bad input \
                (e.g. a key file that is malformed or readable by group or others).
                """
        )

        @Option(help: "Only this job.") var job: String?
        @OptionGroup var options: BackupOptions

        @Option(
            help: ArgumentHelp(
                "Record the catalog through the controller at this URL (or these, comma-separated) instead of --db.",
                valueName: "urls"
            )
        )
        var controller: String?

        @Option(help: ArgumentHelp("The bearer token file for --controller (backup scope).", valueName: "file"))
        var tokenFile: String?

        func run() async throws {
            let signals = removePlaintextOnSignals()
            defer { for source in signals { source.cancel() } }
            let runner = try makeRunner()
            var jobs = runner.configuration.backups
            if let job {
                guard let found = runner.configuration.backupJob(named: job) else {
                    printError("--job: unknown job \"\(job)\" (known: \(jobs.map(\.name).joined(separator: ", ")))")
                    throw ExitCode.badInput
                }
                jobs = [found]
            }
            guard !jobs.isEmpty else {
                printError("the configuration declares no backups: jobs")
                throw ExitCode.badInput
            }
            var failed = false
            var badInput = false
            for job in jobs {
                let started = Date()
                do {
                    var total: Int64?
                    if case .sqlite(let path) = job.source {
                        total =
                            (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value
                    }
                    let progress = ProgressLine(label: job.name, total: total)
                    let record = try await runner.run(job) { progress.update($0) }
                    progress.end()
                    let seconds = Date().timeIntervalSince(started)
                    print(
                        "\(record.id): completed, \(record.plainBytes ?? 0) bytes → \(record.storedBytes ?? 0) stored "
                            + "in \(String(format: "%.1f", seconds)) s, sha256 \(record.sha256 ?? "")"
                    )
                    let lastVerified = try await verifiedBefore(job: job.name, runner: runner)
                    let due =
                        job.verify == .always
                        || (job.verify == .daily
                            && (lastVerified.map { Date().timeIntervalSince($0.startedAt) > 86_400 } ?? true))
                    if due {
                        _ = try await runner.verify(record.id)
                        if let sink = runner.catalog as? RemoteCatalogSink {
                            _ = try await sink.client.markBackupVerified(record.id)
                        }
                        print("\(record.id): verified")
                    }
                } catch {
                    printError("backup job \(job.name) failed: \(error)")
                    failed = true
                    let code = await runFailureExitCode(error)
                    badInput = badInput || code == .badInput
                }
            }
            if badInput { throw ExitCode.badInput }
            if failed { throw ExitCode.failure }
        }

        /// A runner recording to the state database, or through the controller with --controller.
        func makeRunner() throws -> BackupRunner {
            guard let controller else {
                if tokenFile != nil { printError("--token-file: goes with --controller; ignored") }
                return try options.runner()
            }
            guard let tokenFile else {
                printError("--token-file: --controller needs the controller's bearer token (backup scope)")
                throw ExitCode.badInput
            }
            let client = try controllerClient(controller, token: try readToken(tokenFile))
            let mirror = try StateStore.inMemory()
            return BackupRunner(
                store: mirror,
                configuration: try loadConfiguration(options.config),
                catalog: RemoteCatalogSink(client: client, mirror: mirror)
            )
        }

        /// The newest verified backup of `job`, from the catalog where it is kept.
        func verifiedBefore(job: String, runner: BackupRunner) async throws -> BackupRecord? {
            if let sink = runner.catalog as? RemoteCatalogSink {
                return try await sink.client.backups(job: job, limit: 200).value.first { $0.state == .verified }
            }
            return try runner.store.backups(job: job).first { $0.state == .verified }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the backups in the catalog, newest first; or those on the targets.",
            discussion: """
                When the catalog has no entry (the state database is new or its file is gone) or with \
                --from-target, the backups are found by the manifests beside the objects on each job's \
                targets (directory listings, S3 ListObjectsV2); the location column says where. With --state, \
                the shipped copies of the controller's state (<job>/state/) are listed instead, newest first.

                Examples:
                  zoneward backup list --format json --config config/zoneward.yaml
                  zoneward backup list --from-target --job state --config config/zoneward.yaml
                  zoneward backup list --state --config config/zoneward.yaml
                """
        )

        @Option(help: "Only this job.") var job: String?
        @Option(help: "Output format: table for people, json for scripts.") var format: OutputFormat = .table
        @Flag(help: "List the manifests on the jobs' targets, not the catalog.") var fromTarget = false
        @Flag(help: "List the shipped controller state copies (controller.ha.state.job, or --job).") var state = false
        @OptionGroup var options: BackupOptions

        func run() async throws {
            let (runner, databaseExists) = try options.readingRunner()
            if state {
                let replica = try stateReplica(job: job, configuration: runner.configuration)
                let copies = try await listStateCopies(replica)
                if format == .json { return try printJSON(copies.reversed()) }
                var rows = [["name", "term", "sequence"]]
                for copy in copies.reversed() { rows.append([copy.name, String(copy.term), String(copy.sequence)]) }
                print(TextTable.render(rows))
                return
            }
            let jobs = try options.jobs(job, in: runner.configuration)
            var records = try runner.store.backups(job: job)
            var locations: [String: String] = [:]
            if fromTarget || records.isEmpty {
                if !fromTarget {
                    printError(
                        databaseExists
                            ? "the catalog has no backups\(job.map { " of \($0)" } ?? ""): listing the targets"
                            : "the state database \(options.database.db) does not exist: listing the targets"
                    )
                }
                records = []
                for job in jobs {
                    do {
                        for backup in try await runner.targetBackups(of: job) {
                            records.append(backup.record)
                            locations[backup.manifest.id] = backup.objects.map(\.description).joined(separator: " ")
                        }
                    } catch {
                        printError("backup job \(job.name): \(error)")
                        throw await runFailureExitCode(error)
                    }
                }
                records.sort { ($0.startedAt, $0.id) > ($1.startedAt, $1.id) }
            }
            if format == .json { return try printJSON(records) }
            var rows = [["id", "job", "state", "started", "bytes", "stored", locations.isEmpty ? "error" : "location"]]
            for record in records {
                rows.append([
                    record.id, record.job, locations.isEmpty ? record.state.rawValue : "on target",
                    iso8601(record.startedAt), record.plainBytes.map(String.init) ?? "-",
                    record.storedBytes.map(String.init) ?? "-", locations[record.id] ?? record.error ?? "",
                ])
            }
            print(TextTable.render(rows))
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Test-restore a backup: decrypt, checksum, integrity_check, row counts.",
            discussion: """
                Example:
                  zoneward backup verify --latest --config config/zoneward.yaml

                Exit codes: 0 verified, 1 the backup is bad (the message names the chunk or check), 2 bad input.
                """
        )

        @Argument(help: "The backup's id.") var id: String?
        @Flag(help: "The newest completed backup.") var latest = false
        @OptionGroup var options: BackupOptions

        func validate() throws {
            guard (id == nil) != (latest == false) || (id != nil && !latest) else {
                throw ValidationError("give a backup ID or --latest")
            }
        }

        func run() async throws {
            let signals = removePlaintextOnSignals()
            defer { for source in signals { source.cancel() } }
            let runner = try options.runner()
            var target = id
            if latest {
                target = try runner.store.backups().first { $0.state == .completed || $0.state == .verified }?.id
            }
            guard let target else {
                printError("no completed backup to verify")
                throw ExitCode.failure
            }
            do {
                let progress = ProgressLine(
                    label: "verify \(target)",
                    total: try runner.store.backup(target)?.plainBytes
                )
                let record = try await runner.verify(target) { progress.update($0) }
                progress.end()
                print("\(record.id): verified (checksum, integrity_check and row counts match the manifest)")
            } catch {
                printError("\(target): verification failed: \(error)")
                throw await runFailureExitCode(error)
            }
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Restore a backup to a file, atomically; from the catalog or from the targets alone.",
            discussion: """
                Never replaces an existing file without --force; writes a temporary file, checks it (checksum, \
                decryption, integrity_check, row counts), then renames it into place and removes stale \
                -wal/-shm files. A directory backup is extracted into the directory --to (absent or empty, \
                else --force), refusing any entry that would land outside it (absolute names, .., links \
                pointing out); --archive writes the tar file instead.

                The backup is looked up in the catalog (the state database) first; when the catalog has no \
                entry for it (or the database file is gone), or with --from-target, it is found by the \
                manifest beside its object on the job's targets. --latest takes the newest complete backup of \
                --job.

                --state restores the newest shipped copy of the controller's state (<job>/state/ of \
                controller.ha.state.job, or of --job), or the copy named by the argument, into --to: for an \
                operator whose controller cluster lost everything.

                Examples:
                  zoneward backup restore state-20261129T101500-4711 --to ./restored.db --config config/zoneward.yaml
                  zoneward backup restore --latest --job state --from-target --to ./zoneward.db --config config/zoneward.yaml
                  zoneward backup restore --state --to ./zoneward.db --config config/zoneward.yaml

                Exit codes: 0 restored, 1 not found or the backup is bad (nothing written), 2 bad input.
                """
        )

        @Argument(
            help: "The backup's id (with --state: the copy's name, e.g. t00000000000000000003-s000000000042.zwb)."
        )
        var id: String?
        @Option(help: ArgumentHelp("Where to restore.", valueName: "path")) var to: String
        @Flag(help: "Replace an existing file.") var force = false
        @Flag(
            help: """
                Run PRAGMA integrity_check and the row counts (entry counts for archives) even for a verified \
                backup: its bytes, confirmed by SHA-256 on every restore, already passed them when it was verified.
                """
        )
        var fullCheck = false
        @Flag(help: "The newest complete backup of --job.") var latest = false
        @Option(help: "The job whose backup to restore (required with --latest).") var job: String?
        @Flag(help: "Find the backup by the manifests on the job's targets, not in the catalog.") var fromTarget = false
        @Flag(help: "Restore a shipped controller state copy (<job>/state/), the newest unless named.") var state =
            false
        @Flag(
            help: "A directory backup: write its tar archive to --to instead of extracting it into the directory --to."
        )
        var archive = false
        @OptionGroup var options: BackupOptions

        func validate() throws {
            if state && latest { throw ValidationError("--state restores the newest copy already; drop --latest") }
            if !state && (id == nil) == !latest {
                throw ValidationError("give a backup ID or --latest (with --job), or --state")
            }
            if latest && job == nil { throw ValidationError("--latest: give --job too (whose newest backup)") }
        }

        func run() async throws {
            let signals = removePlaintextOnSignals()
            defer { for source in signals { source.cancel() } }
            let (runner, _) = try options.readingRunner()
            if state { return try await restoreState(runner.configuration) }
            let jobs = try options.jobs(job, in: runner.configuration)
            let label = id ?? "the newest backup of \(job ?? "")"
            do {
                var record: BackupRecord?
                if !fromTarget {
                    if let id {
                        record = try runner.store.backup(id)
                    } else {
                        record = try runner.store.backups(job: job).first {
                            $0.state == .completed || $0.state == .verified
                        }
                    }
                }
                if record == nil {
                    if !fromTarget { printError("\(label) is not in the catalog: looking on the targets") }
                    for job in jobs where record == nil {
                        let found = try await runner.targetBackups(of: job)
                        record = (id.map { id in found.first { $0.manifest.id == id } } ?? found.first)?.record
                    }
                }
                guard let record else {
                    printError("restore of \(label) failed: no such backup in the catalog or on the targets")
                    throw ExitCode.failure
                }
                let progress = ProgressLine(label: "restore \(record.id)", total: record.plainBytes)
                if case .directory = runner.configuration.backupJob(named: record.job)?.source, !archive {
                    // The archive goes to a private folder beside the destination, then is checked and extracted.
                    let parent = URL(fileURLWithPath: to).deletingLastPathComponent()
                    let scratch = parent.appendingPathComponent(".zoneward-restore-\(UUID().uuidString.prefix(8))")
                    try FileManager.default.createDirectory(
                        at: scratch,
                        withIntermediateDirectories: true,
                        attributes: [.posixPermissions: 0o700]
                    )
                    defer { try? FileManager.default.removeItem(at: scratch) }
                    let tar = scratch.appendingPathComponent("archive.tar").path
                    try await runner.restore(record: record, to: tar, force: false, fullCheck: fullCheck) {
                        progress.update($0)
                    }
                    progress.end()
                    do {
                        try ArchiveExtraction.extract(tar, into: to, force: force)
                    } catch let refused as ArchiveExtraction.Refused {
                        printError("restore of \(record.id): \(refused)")
                        throw ExitCode.failure
                    }
                    print("Restored \(record.id) into the directory \(to).")
                    return
                }
                try await runner.restore(record: record, to: to, force: force, fullCheck: fullCheck) {
                    progress.update($0)
                }
                progress.end()
                print("Restored \(record.id) to \(to).")
            } catch let exit as ExitCode {
                throw exit
            } catch {
                printError("restore of \(label) failed: \(error)")
                throw await runFailureExitCode(error)
            }
        }

        func restoreState(_ configuration: ZonewardConfiguration) async throws {
            let replica = try stateReplica(job: job, configuration: configuration)
            do {
                let copy: ShippedState?
                if let id {
                    guard let named = BackupStateReplica.parse(name: id) else {
                        printError("argument: \"\(id)\" is not a state copy's name (t<term:20>-s<sequence:12>.zwb)")
                        throw ExitCode.badInput
                    }
                    copy = named
                } else {
                    copy = try await replica.newest()
                }
                guard let copy else {
                    printError("no shipped state copy under \(replica.job.name)/state/ on the targets")
                    throw ExitCode.failure
                }
                try await replica.restore(copy, toFile: to, force: force)
                print("Restored state copy \(copy) to \(to).")
            } catch let exit as ExitCode {
                throw exit
            } catch {
                printError("restore of the controller state failed: \(error)")
                throw await runFailureExitCode(error)
            }
        }
    }

    struct ShipState: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ship-state",
            abstract: "Ship a copy of a state database to the state job's targets, as the leader does.",
            discussion: """
                Copies --db with SQLite's online backup API, encodes it as backups are (the job's codec, \
                AES-256-GCM, SHA-256) and writes it to every target of controller.ha.state.job (or --job) under \
                <job>/state/t<term>-s<sequence>.zwb with its manifest; prunes beyond controller.ha.state.keep. \
                Use it to seed the shipped state from a single controller's database before turning on HA. \
                A leader's copies (term ≥ 1) supersede it with the default --term 0.

                Example:
                  zoneward backup ship-state --db ./zoneward.db --config config/zoneward.yaml
                """
        )

        @Option(help: "The job whose targets and key hold the state; default controller.ha.state.job.")
        var job: String?
        @Option(help: "The term the copy is made in.") var term: Int64 = 0
        @Option(help: "The copy's number in its term; default one past the newest copy of the same term.")
        var sequence: Int64?
        @OptionGroup var options: BackupOptions

        func validate() throws {
            if term < 0 { throw ValidationError("--term: must not be negative, got \(term)") }
            if let sequence, sequence < 0 { throw ValidationError("--sequence: must not be negative, got \(sequence)") }
        }

        func run() async throws {
            let signals = removePlaintextOnSignals()
            defer { for source in signals { source.cancel() } }
            let configuration = try loadConfiguration(options.config)
            guard FileManager.default.fileExists(atPath: options.database.db) else {
                printError("--db: \(options.database.db) does not exist")
                throw ExitCode.badInput
            }
            let replica = try stateReplica(job: job, configuration: configuration)
            let store = try openStore(options.database.db)
            do {
                var number = sequence
                if number == nil {
                    let newest = try await replica.newest()
                    number = newest.map { $0.term == term ? $0.sequence + 1 : 0 } ?? 0
                }
                let started = ContinuousClock.now
                let copy = try await replica.ship(store, term: term, sequence: number ?? 0)
                let elapsed = ContinuousClock.now - started
                let milliseconds =
                    Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000
                print(
                    "Shipped \(copy) to \(replica.job.targets.count) target(s) in "
                        + String(format: "%.1f", milliseconds) + " ms."
                )
            } catch {
                printError("shipping \(options.database.db) failed: \(error)")
                throw await runFailureExitCode(error)
            }
        }
    }
}

/// The state replica of `--job`, else of `controller.ha.state.job`; bad input names the missing piece.
func stateReplica(job: String?, configuration: ZonewardConfiguration) throws -> BackupStateReplica {
    guard let name = job ?? configuration.controller?.ha?.stateJob else {
        printError("--job: give the state job, or set controller.ha.state.job in the configuration")
        throw ExitCode.badInput
    }
    guard let found = configuration.backupJob(named: name) else {
        printError(
            "\(job == nil ? "controller.ha.state.job" : "--job"): unknown job \"\(name)\" "
                + "(known: \(configuration.backups.map(\.name).joined(separator: ", ")))"
        )
        throw ExitCode.badInput
    }
    do {
        return try BackupStateReplica(job: found, keep: configuration.controller?.ha?.keep ?? 20)
    } catch {
        printError("state job \(name): \(error)")
        throw backupExitCode(error)
    }
}

/// Every complete shipped copy, oldest first; a failure is printed and exits 1.
func listStateCopies(_ replica: BackupStateReplica) async throws -> [ShippedState] {
    do {
        return try await replica.copies()
    } catch {
        printError("\(error)")
        throw ExitCode.failure
    }
}

extension Zoneward.Backup {
    struct Prune: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete backups no retention rule keeps (never the newest verified one).",
            discussion: """
                Rules, per job: retention: {keepLast, keepDaily, keepWeekly, keepMonthly}, like restic's forget.

                Example:
                  zoneward backup prune --dry-run --config config/zoneward.yaml
                """
        )

        @Flag(help: "List each backup that would go, and what keeps the others; delete nothing.") var dryRun = false
        @Option(help: "Only this job.") var job: String?
        @OptionGroup var options: BackupOptions

        func run() async throws {
            let runner = try options.runner()
            let jobs = runner.configuration.backups.filter { job == nil || $0.name == job }
            for job in jobs {
                if dryRun {
                    for (record, keptBy) in try runner.pruneDecisions(job) {
                        print(
                            "\(record.id): \(keptBy.isEmpty ? "would go (no rule keeps it)" : "kept by " + keptBy.joined(separator: ", "))"
                        )
                    }
                } else {
                    for record in try await runner.prune(job) { print("\(record.id): pruned") }
                }
            }
        }
    }
}

extension Zoneward.Backup {
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Say whether each job's last verified backup is recent enough for its schedule.",
            discussion: """
                A job is stale when its newest verified backup is older than two scheduled intervals (or it has
                none), or when it has a drill policy (drill: {every: 7d}) and its last successful restore drill
                is older than that. Example:
                  zoneward backup status --config config/zoneward.yaml

                Exit codes: 0 every job fresh, 1 a job (or its restore drill) is stale.
                """
        )

        @OptionGroup var options: BackupOptions

        func run() async throws {
            let runner = try options.runner()
            var stale = false
            for job in runner.configuration.backups {
                let now = Date()
                let freshness = BackupFreshness(job: job, records: try runner.store.backups(job: job.name), now: now)
                if !freshness.fresh { stale = true }
                print(
                    "\(job.name): \(freshness.fresh ? "fresh" : "STALE") — last verified "
                        + (freshness.verifiedAge(at: now).map { "\(Int($0)) s ago" } ?? "never") + ", last completed "
                        + (freshness.lastCompletedAt.map { iso8601($0) } ?? "never")
                        + ", allowed \(Int(freshness.allowedSeconds)) s (schedule \"\(job.schedule)\")"
                )
            }
            let postures = DrillAssessment.postures(
                configuration: runner.configuration,
                records: try runner.store.drills(kind: .restore, limit: 1000),
                now: Date()
            ).filter { $0.kind == .restore && $0.maxAgeSeconds != nil }
            for posture in postures { print(posture.line) }
            try? failWhenStale(postures)
            if stale || postures.contains(where: \.stale) { throw ExitCode.failure }
        }
    }
}

/// A progress line (bytes, rate, ETA when the total is known) at a terminal; nothing otherwise.
final class ProgressLine: @unchecked Sendable {
    private let label: String
    private let total: Int64?
    private let start = Date()
    private let lock = NSLock()
    private var last = Date.distantPast
    private let enabled = isatty(STDERR_FILENO) != 0

    init(label: String, total: Int64? = nil) {
        self.label = label
        self.total = total
    }

    func update(_ bytes: Int64) {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        guard Date().timeIntervalSince(last) > 0.2 else { return }
        last = Date()
        let seconds = max(Date().timeIntervalSince(start), 0.001)
        let rate = Double(bytes) / seconds
        var line = String(format: "\r%@: %.1f MiB, %.1f MiB/s", label, Double(bytes) / 1_048_576, rate / 1_048_576)
        if let total, total > 0, rate > 0 {
            let remaining = max(0, Double(total - bytes)) / rate
            line += String(format: ", %.0f%%, ETA %.0f s   ", min(100, Double(bytes) * 100 / Double(total)), remaining)
        }
        FileHandle.standardError.write(Data(line.utf8))
    }

    func end() {
        if enabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

/// 2 for bad input (a key file that is missing, malformed or readable by others), else 1.
func backupExitCode(_ error: any Error) -> ExitCode {
    if case BackupError.key = error { return .badInput }
    return .failure
}

/// `backupExitCode` for a run that failed; but while a signal's cleanup runs (`removePlaintextOnSignals`),
/// the failure it causes (the staging directory removed, the upload aborted under the run) waits for the
/// handler's exit with 128 + the signal: without the wait, this path could exit 1 first, before the upload
/// was aborted (seen once in CI: "SIGTERM mid-upload exits 143 (got 1)").
func runFailureExitCode(_ error: any Error) async -> ExitCode {
    let signalled = SignalExit.code.load(ordering: .acquiring)
    if signalled != 0 {
        // The handler exits within its abort's 5 s; should it not, exit as it would have.
        try? await Task.sleep(for: .seconds(15))
        exit(signalled)
    }
    return backupExitCode(error)
}

/// 128 + the signal being handled, once a handler started its cleanup; 0 before.
enum SignalExit {
    static let code = Atomic<Int32>(0)
}

/// On SIGINT, SIGTERM or SIGHUP, removes the plaintext in flight (staging directories, a restore's temporary
/// file), aborts the S3 multipart uploads under way (waiting a few seconds at most) and exits 128 + the signal, as a shell reports it; without this only the next run would remove it.
func removePlaintextOnSignals() -> [any DispatchSourceSignal] {
    [SIGINT, SIGTERM, SIGHUP].map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler {
            SignalExit.code.store(128 + number, ordering: .releasing)
            InFlight.removeAll()
            InFlightUploads.abortAll()
            exit(128 + number)
        }
        source.resume()
        return source
    }
}
