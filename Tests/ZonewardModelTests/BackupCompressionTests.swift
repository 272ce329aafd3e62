import Testing
import ZonewardModel

/// `compression:` of a backup job: zstd level 1 by default, a codec name, or a codec with a level.
@Suite struct BackupCompressionTests {
    func job(_ compression: String?) -> String {
        """
        zones: [{name: z1, region: r1}]
        backups:
          - name: app
            source: {sqlite: /var/lib/app.db}
            schedule: "17 * * * *"
            targets: [{filesystem: /var/backups}]
            encryption: {keyFile: /etc/zoneward/backup.key}
        \(compression.map { "    compression: \($0)" } ?? "")
        """
    }

    func decoded(_ compression: String?) throws -> BackupCompression? {
        try ZonewardConfiguration.parse(yaml: job(compression)).backups.first?.compression
    }

    @Test func zstdLevel1IsTheDefault() throws {
        #expect(try decoded(nil) == BackupCompression(codec: .zstd, level: 1))
        #expect(BackupCompression.default.description == "zstd level 1")
    }

    @Test(arguments: [
        ("zstd", BackupCompression(codec: .zstd, level: 1)),
        ("gzip", BackupCompression(codec: .gzip, level: 1)),
        ("{codec: zstd, level: 3}", BackupCompression(codec: .zstd, level: 3)),
        ("{codec: gzip, level: 9}", BackupCompression(codec: .gzip, level: 9)),
        ("{codec: zstd}", BackupCompression(codec: .zstd, level: 1)),
    ])
    func decodesACodecAndALevel(text: String, expected: BackupCompression) throws {
        #expect(try decoded(text) == expected)
    }

    @Test(arguments: [
        ("lz4", #"backups[0].compression: unknown value "lz4" (valid: zstd, gzip)"#),
        ("{codec: brotli}", #"backups[0].compression.codec: unknown value "brotli" (valid: zstd, gzip)"#),
        ("{level: 3}", "backups[0].compression.codec: missing required field"),
        ("{codec: zstd, level: 22}", "backups[0].compression.level: must be ≤ 19, got 22"),
        ("{codec: gzip, level: 12}", "backups[0].compression.level: must be ≤ 9, got 12"),
        ("{codec: gzip, level: 0}", "backups[0].compression.level: must be ≥ 1, got 0"),
        ("{codec: zstd, level: fast}", "backups[0].compression.level: expected a whole number"),
        ("{codec: zstd, speed: 3}", "backups[0].compression.speed: unknown field (known: codec, level)"),
        ("[zstd]", "backups[0].compression: expected a string"),
        ("''", "backups[0].compression: must not be empty"),
    ])
    func badCompressionIsRefusedNamingTheField(text: String, expected: String) {
        do {
            _ = try ZonewardConfiguration.parse(yaml: job(text))
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.problems.contains { $0.description.hasPrefix(expected) }, "\(error.problems)")
        }
    }
}
