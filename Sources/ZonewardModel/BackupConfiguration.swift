import Foundation

/// A scheduled backup job.
public struct BackupJobConfiguration: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        /// A SQLite database, copied with the online backup API (consistent while others write).
        case sqlite(String)
        /// A directory, as a tar archive.
        case directory(String)
        /// A PostgreSQL database through `pg_dump -Fc`.
        case postgres(PostgresSource)
    }

    /// Connection settings for `pg_dump`; the password, if any, comes from the named environment variable.
    public struct PostgresSource: Sendable, Equatable {
        public var host: String
        public var port: Int
        public var user: String
        public var database: String
        public var passwordEnv: String?

        public init(host: String, port: Int, user: String, database: String, passwordEnv: String? = nil) {
            self.host = host
            self.port = port
            self.user = user
            self.database = database
            self.passwordEnv = passwordEnv
        }
    }

    public enum Target: Sendable, Equatable {
        /// A directory: objects are written under a temporary name, fsynced, then renamed.
        case filesystem(String)
        /// S3-compatible object storage (AWS SigV4); keys come from the named environment variables.
        case s3(S3Target)
    }

    /// Where in S3 and with which credentials.
    public struct S3Target: Sendable, Equatable {
        public var endpoint: String
        public var bucket: String
        public var region: String
        public var prefix: String
        /// Default AWS_ACCESS_KEY_ID.
        public var accessKeyIdEnv: String
        /// Default AWS_SECRET_ACCESS_KEY.
        public var secretAccessKeyEnv: String
        /// The size of each part of a multipart upload, in bytes (`partSizeMiB`, 5–5120); nil: the
        /// client's default, 16 MiB. An object no larger than one part is sent in a single PUT.
        public var partSize: Int?

        public init(
            endpoint: String,
            bucket: String,
            region: String,
            prefix: String = "",
            accessKeyIdEnv: String = "AWS_ACCESS_KEY_ID",
            secretAccessKeyEnv: String = "AWS_SECRET_ACCESS_KEY"
        ) {
            self.endpoint = endpoint
            self.bucket = bucket
            self.region = region
            self.prefix = prefix
            self.accessKeyIdEnv = accessKeyIdEnv
            self.secretAccessKeyEnv = secretAccessKeyEnv
        }
    }

    public var name: String
    public var source: Source
    /// 5-field cron expression, e.g. `17 * * * *`.
    public var schedule: String
    public var targets: [Target]
    /// File with the 32-byte AES-256 key, base64.
    public var keyFile: String
    /// keepLast, keepDaily, keepWeekly, keepMonthly (restic's rules); all 0 keeps everything.
    public var retention: [String: Int]
    /// When to test-restore after a run: `always`, `daily` (once a day), `never`. Default daily.
    public var verify: VerifyPolicy = .daily
    /// How objects are compressed: zstd level 1 unless the job says otherwise. Restore and verify read the
    /// codec from each object's header, so changing it never strands older backups.
    public var compression: BackupCompression = .default
    /// The longest a child process of the job (`pg_dump`, `tar`, `pg_restore -l`) may run before it is
    /// stopped and the run fails. Default 1h.
    public var timeout: Duration = .seconds(3600)
    /// Restore drills: how often one must succeed, the controller's schedule for them, RTO and RPO targets.
    public var drill: DrillPolicy?

    public enum VerifyPolicy: String, Sendable, CaseIterable {
        case always, daily, never
    }

    /// The longest time the cron schedule leaves between two runs, roughly: used by `backup status`.
    public var expectedInterval: TimeInterval {
        let fields = schedule.split(separator: " ").map(String.init)
        guard fields.count == 5 else { return 86_400 }
        if fields[0].hasPrefix("*/"), let minutes = Double(fields[0].dropFirst(2)) { return minutes * 60 }
        if fields[0] == "*" { return 60 }
        if fields[1] == "*" { return 3600 }
        if fields[1].hasPrefix("*/"), let hours = Double(fields[1].dropFirst(2)) { return hours * 3600 }
        if fields[4] != "*" { return 7 * 86_400 }
        if fields[2] != "*" { return 31 * 86_400 }
        return 86_400
    }

    public init(
        name: String,
        source: Source,
        schedule: String,
        targets: [Target],
        keyFile: String,
        retention: [String: Int] = [:]
    ) {
        self.name = name
        self.source = source
        self.schedule = schedule
        self.targets = targets
        self.keyFile = keyFile
        self.retention = retention
    }
}

extension ZonewardConfiguration {
    /// Decodes `backups:`; the sources and targets Zoneward can run today are `sqlite` and `filesystem`.
    static func decodeBackups(_ value: DocumentValue, _ reader: DocumentReader) -> [BackupJobConfiguration] {
        guard let items = reader.sequence(value) else { return [] }
        var jobs: [BackupJobConfiguration] = []
        for item in items {
            let known = [
                "name", "source", "schedule", "targets", "encryption", "compression", "retention", "verify", "timeout",
                "drill",
            ]
            guard let fields = reader.mapping(item, known: known) else { continue }
            let name = reader.required(fields, "name", in: item).flatMap { reader.string($0) }
            var source: BackupJobConfiguration.Source?
            if let sourceValue = reader.required(fields, "source", in: item),
                let sourceFields = reader.mapping(sourceValue, known: ["sqlite", "directory", "postgres"])
            {
                if let sqlite = sourceFields["sqlite"].flatMap({ reader.string($0) }) {
                    source = .sqlite(sqlite)
                } else if let directory = sourceFields["directory"].flatMap({ reader.string($0) }) {
                    source = .directory(directory)
                } else if let postgres = sourceFields["postgres"],
                    let pgFields = reader.mapping(postgres, known: ["host", "port", "user", "database", "passwordEnv"])
                {
                    let host = pgFields["host"].flatMap { reader.string($0) } ?? "127.0.0.1"
                    let port = pgFields["port"].flatMap { reader.integer($0, minimum: 1, maximum: 65_535) } ?? 5432
                    let user = pgFields["user"].flatMap { reader.string($0) } ?? "postgres"
                    let database = reader.required(pgFields, "database", in: postgres).flatMap { reader.string($0) }
                    if let database {
                        source = .postgres(
                            BackupJobConfiguration.PostgresSource(
                                host: host,
                                port: port,
                                user: user,
                                database: database,
                                passwordEnv: pgFields["passwordEnv"].flatMap { reader.string($0) }
                            )
                        )
                    }
                } else {
                    reader.report(sourceValue.path, "give sqlite: PATH, directory: PATH or postgres: {database, …}")
                }
            }
            let schedule = reader.required(fields, "schedule", in: item).flatMap { reader.string($0) }
            if let schedule, let scheduleValue = fields["schedule"], CronSchedule(schedule) == nil {
                reader.report(
                    scheduleValue.path,
                    "expected a 5-field cron expression (minute hour day month weekday) such as \"17 * * * *\", got \"\(schedule)\""
                )
            }
            var targets: [BackupJobConfiguration.Target] = []
            if let targetsValue = reader.required(fields, "targets", in: item), let list = reader.sequence(targetsValue)
            {
                for target in list {
                    guard let targetFields = reader.mapping(target, known: ["filesystem", "s3"]) else { continue }
                    if let path = targetFields["filesystem"].flatMap({ reader.string($0) }) {
                        targets.append(.filesystem(path))
                    } else if let s3 = targetFields["s3"] {
                        let known = [
                            "endpoint", "bucket", "region", "prefix", "accessKeyIdEnv", "secretAccessKeyEnv",
                            "partSizeMiB",
                        ]
                        guard let s3Fields = reader.mapping(s3, known: known) else { continue }
                        let endpoint = reader.required(s3Fields, "endpoint", in: s3).flatMap { reader.string($0) }
                        let bucket = reader.required(s3Fields, "bucket", in: s3).flatMap { reader.string($0) }
                        let region = reader.required(s3Fields, "region", in: s3).flatMap { reader.string($0) }
                        if let endpoint, let bucket, let region {
                            var s3Target = BackupJobConfiguration.S3Target(
                                endpoint: endpoint,
                                bucket: bucket,
                                region: region
                            )
                            s3Target.prefix = s3Fields["prefix"].flatMap { reader.string($0) } ?? ""
                            if let name = s3Fields["accessKeyIdEnv"].flatMap({ reader.string($0) }) {
                                s3Target.accessKeyIdEnv = name
                            }
                            if let name = s3Fields["secretAccessKeyEnv"].flatMap({ reader.string($0) }) {
                                s3Target.secretAccessKeyEnv = name
                            }
                            // S3's smallest part (all but the last) is 5 MiB, its largest 5 GiB.
                            if let mebibytes = s3Fields["partSizeMiB"].flatMap({
                                reader.integer($0, minimum: 5, maximum: 5120)
                            }) {
                                s3Target.partSize = mebibytes << 20
                            }
                            targets.append(.s3(s3Target))
                        }
                    } else {
                        reader.report(target.path, "give filesystem: DIRECTORY or s3: {endpoint, bucket, region}")
                    }
                }
                if list.isEmpty { reader.report(targetsValue.path, "at least one target is needed") }
            }
            var keyFile: String?
            if let encryption = reader.required(fields, "encryption", in: item),
                let encryptionFields = reader.mapping(encryption, known: ["keyFile"])
            {
                keyFile = reader.required(encryptionFields, "keyFile", in: encryption).flatMap { reader.string($0) }
            }
            var retention: [String: Int] = [:]
            if let retentionValue = fields["retention"],
                let retentionFields = reader.mapping(
                    retentionValue,
                    known: ["keepLast", "keepDaily", "keepWeekly", "keepMonthly"]
                )
            {
                for (rule, value) in retentionFields { retention[rule] = reader.integer(value) }
            }
            let verify = fields["verify"].flatMap { reader.choice($0, as: BackupJobConfiguration.VerifyPolicy.self) }
            let timeout = fields["timeout"].flatMap { reader.duration($0, minimum: .seconds(1)) }
            let compression = fields["compression"].flatMap { decodeCompression($0, reader) }
            let drill = fields["drill"].flatMap { decodeDrillPolicy($0, reader) }
            if let name, jobs.contains(where: { $0.name == name }) {
                reader.report(item.child("name"), "duplicate backup job \"\(name)\"")
            }
            if let name, let source, let schedule, let keyFile, !targets.isEmpty {
                jobs.append(
                    BackupJobConfiguration(
                        name: name,
                        source: source,
                        schedule: schedule,
                        targets: targets,
                        keyFile: keyFile,
                        retention: retention
                    )
                )
                jobs[jobs.count - 1].verify = verify ?? .daily
                if let timeout { jobs[jobs.count - 1].timeout = timeout }
                if let compression { jobs[jobs.count - 1].compression = compression }
                jobs[jobs.count - 1].drill = drill
            }
        }
        return jobs
    }

    /// `compression: zstd | gzip`, or `{codec: zstd | gzip, level: N}` with the codec's levels.
    static func decodeCompression(_ value: DocumentValue, _ reader: DocumentReader) -> BackupCompression? {
        guard case .mapping = value.node else {
            return reader.choice(value, as: BackupCompression.Codec.self).map { BackupCompression(codec: $0) }
        }
        guard let fields = reader.mapping(value, known: ["codec", "level"]),
            let codec = reader.required(fields, "codec", in: value).flatMap({
                reader.choice($0, as: BackupCompression.Codec.self)
            })
        else { return nil }
        guard let levelValue = fields["level"] else { return BackupCompression(codec: codec) }
        let levels = BackupCompression.levels(codec)
        guard let level = reader.integer(levelValue, minimum: levels.lowerBound, maximum: levels.upperBound) else {
            return nil
        }
        return BackupCompression(codec: codec, level: level)
    }
}
