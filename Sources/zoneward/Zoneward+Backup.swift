import ArgumentParser
import Foundation
import ZonewardBackup
import ZonewardModel
import ZonewardState

extension Zoneward {
    /// `zoneward backup …`.
    struct Backup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take, list, verify and restore encrypted, checksummed backups.",
            discussion: """
                A backup is a consistent SQLite snapshot (online backup API), gzip-compressed, encrypted with \
                AES-256-GCM in authenticated 1 MiB chunks, checksummed (SHA-256), written to each target under \
                a temporary name and renamed, with a JSON manifest beside it. The catalog (the state database) \
                lists it only once every object is written and its checksum confirmed.
                """,
            subcommands: [Run.self, List.self, Status.self, Verify.self, Restore.self, Prune.self]
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
}

extension Zoneward.Backup {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take a backup of every job, or of one; what the CronJob runs.",
            discussion: """
                Example:
                  zoneward backup run --job state --config config/zoneward.yaml --db ./zoneward.db

                Exit codes: 0 every job succeeded, 1 a job failed, 2 bad input (e.g. a key file that is \
                malformed or readable by group or others).
                """
        )

        @Option(help: "Only this job.") var job: String?
        @OptionGroup var options: BackupOptions

        func run() async throws {
            let signals = removePlaintextOnSignals()
            defer { for source in signals { source.cancel() } }
            let runner = try options.runner()
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
                    let lastVerified = try runner.store.backups(job: job.name).first { $0.state == .verified }
                    let due =
                        job.verify == .always
                        || (job.verify == .daily
                            && (lastVerified.map { Date().timeIntervalSince($0.startedAt) > 86_400 } ?? true))
                    if due {
                        _ = try await runner.verify(record.id)
                        print("\(record.id): verified")
                    }
                } catch {
                    printError("backup job \(job.name) failed: \(error)")
                    failed = true
                    badInput = badInput || backupExitCode(error) == .badInput
                }
            }
            if badInput { throw ExitCode.badInput }
            if failed { throw ExitCode.failure }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the backups in the catalog, newest first.",
            discussion: """
                Example:
                  zoneward backup list --format json --config config/zoneward.yaml
                """
        )

        @Option(help: "Only this job.") var job: String?
        @Option(help: "Output format: table for people, json for scripts.") var format: OutputFormat = .table
        @OptionGroup var options: BackupOptions

        func run() async throws {
            let records = try options.runner().store.backups(job: job)
            if format == .json { return try printJSON(records) }
            var rows = [["id", "job", "state", "started", "bytes", "stored", "error"]]
            for record in records {
                rows.append([
                    record.id, record.job, record.state.rawValue, iso8601(record.startedAt),
                    record.plainBytes.map(String.init) ?? "-", record.storedBytes.map(String.init) ?? "-",
                    record.error ?? "",
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
                throw backupExitCode(error)
            }
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Restore a backup to a file, atomically.",
            discussion: """
                Never replaces an existing file without --force; writes a temporary file, checks it, then \
                renames it into place and removes stale -wal/-shm files.

                Example:
                  zoneward backup restore state-20261129T101500-4711 --to ./restored.db --config config/zoneward.yaml
                """
        )

        @Argument(help: "The backup's id.") var id: String
        @Option(help: ArgumentHelp("Where to restore.", valueName: "path")) var to: String
        @Flag(help: "Replace an existing file.") var force = false
        @OptionGroup var options: BackupOptions

        func run() async throws {
            let signals = removePlaintextOnSignals()
            defer { for source in signals { source.cancel() } }
            do {
                let runner = try options.runner()
                let progress = ProgressLine(label: "restore \(id)", total: try runner.store.backup(id)?.plainBytes)
                try await runner.restore(id, to: to, force: force) { progress.update($0) }
                progress.end()
                print("Restored \(id) to \(to).")
            } catch {
                printError("restore of \(id) failed: \(error)")
                throw backupExitCode(error)
            }
        }
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
                none). Example:
                  zoneward backup status --config config/zoneward.yaml

                Exit codes: 0 every job fresh, 1 a job is stale.
                """
        )

        @OptionGroup var options: BackupOptions

        func run() async throws {
            let runner = try options.runner()
            var stale = false
            for job in runner.configuration.backups {
                let backups = try runner.store.backups(job: job.name)
                let verified = backups.first { $0.state == .verified }
                let completed = backups.first { $0.state == .completed || $0.state == .verified }
                let allowed = 2 * job.expectedInterval
                let age = verified.map { Date().timeIntervalSince($0.startedAt) }
                let fresh = age.map { $0 <= allowed } ?? false
                if !fresh { stale = true }
                print(
                    "\(job.name): \(fresh ? "fresh" : "STALE") — last verified "
                        + (age.map { "\(Int($0)) s ago" } ?? "never") + ", last completed "
                        + (completed.map { iso8601($0.startedAt) } ?? "never")
                        + ", allowed \(Int(allowed)) s (schedule \"\(job.schedule)\")"
                )
            }
            if stale { throw ExitCode.failure }
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

/// On SIGINT, SIGTERM or SIGHUP, removes the plaintext in flight (staging directories, a restore's temporary
/// file) and exits 128 + the signal, as a shell reports it; without this only the next run would remove it.
func removePlaintextOnSignals() -> [any DispatchSourceSignal] {
    [SIGINT, SIGTERM, SIGHUP].map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler {
            InFlight.removeAll()
            exit(128 + number)
        }
        source.resume()
        return source
    }
}
