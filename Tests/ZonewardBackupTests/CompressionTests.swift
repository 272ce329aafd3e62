import Foundation
import GRDB
import Testing
import ZonewardModel

@testable import ZonewardBackup

/// zstd and gzip objects (format 2), the codec their header records, and objects written before zstd.
@Suite struct CompressionTests {
    let directory: URL
    let key = BackupKey(bytes: (0..<32).map { UInt8($0) })

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("zoneward-compression-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// `size` bytes: text-like runs then random bytes.
    func makeSource(_ size: Int) throws -> String {
        var bytes = [UInt8](repeating: 0, count: size)
        let words = Array("zone proxy failover drain region backup lease epoch ".utf8)
        for index in 0..<(size * 2 / 3) { bytes[index] = words[(index * 7 + index / 13) % words.count] }
        for index in (size * 2 / 3)..<size { bytes[index] = UInt8.random(in: 0...255) }
        try Data(bytes).write(to: URL(fileURLWithPath: path("source")))
        return path("source")
    }

    func header() throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path("stored"))).prefix(26))
    }

    func decodeError() -> BackupError? {
        do {
            try BackupPipeline.decode(from: path("stored"), to: path("restored"), key: key)
            return nil
        } catch let error as BackupError {
            return error
        } catch {
            return .io("\(error)")
        }
    }

    @Test(arguments: [
        BackupCompression(codec: .zstd), BackupCompression(codec: .zstd, level: 19),
        BackupCompression(codec: .gzip), BackupCompression(codec: .gzip, level: 9),
    ])
    func roundTripsEveryCodecOnAnyNumberOfThreads(compression: BackupCompression) throws {
        let source = try makeSource(5 << 20 + 12345)
        for workers in [1, 2, 5] {
            let encoded = try BackupPipeline.encode(
                from: source,
                to: path("stored"),
                key: key,
                compression: compression,
                chunkSize: 256 << 10,
                workers: workers
            )
            #expect(encoded.plainBytes == 5 << 20 + 12345)
            #expect(encoded.storedBytes < encoded.plainBytes)
            #expect(encoded.compression == compression.description)
            let decoded = try BackupPipeline.decode(
                from: path("stored"),
                to: path("restored"),
                key: key,
                expectedSHA256: encoded.sha256,
                workers: 3
            )
            #expect(decoded.compression == compression.codec.rawValue)
            #expect(decoded.plainBytes == encoded.plainBytes)
            #expect(FileManager.default.contentsEqual(atPath: source, andPath: path("restored")))
        }
    }

    @Test(arguments: [0, 1, 4096, 65536, 65537])
    func sizesAtAndAroundTheBlockSizeRoundTrip(size: Int) throws {
        let source = try makeSource(size)
        for codec in BackupCompression.Codec.allCases {
            try BackupPipeline.encode(
                from: source,
                to: path("stored"),
                key: key,
                compression: BackupCompression(codec: codec),
                chunkSize: 4096
            )
            let result = try BackupPipeline.decode(from: path("stored"), to: path("restored"), key: key)
            #expect(result.plainBytes == Int64(size))
            #expect(FileManager.default.contentsEqual(atPath: source, andPath: path("restored")))
        }
    }

    @Test func theHeaderRecordsFormatAndCodec() throws {
        let source = try makeSource(100_000)
        try BackupPipeline.encode(from: source, to: path("stored"), key: key)
        var bytes = try header()
        #expect(Array(bytes[0..<5]) == Array("ZWB1".utf8) + [2])
        #expect(bytes[25] == BlockCodec.zstd.rawValue, "zstd is the default")
        try BackupPipeline.encode(from: source, to: path("stored"), key: key, compression: .init(codec: .gzip))
        bytes = try header()
        #expect(bytes[25] == BlockCodec.gzip.rawValue)
        let parsed = try ObjectHeader(parsing: bytes)
        #expect(parsed.codec == .gzip)
    }

    /// The codec byte is authenticated: changing it fails the first chunk; an unknown one is named.
    @Test func aChangedOrUnknownCodecIsRefused() throws {
        try BackupPipeline.encode(from: try makeSource(100_000), to: path("stored"), key: key)
        var stored = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path("stored"))))
        stored[25] = BlockCodec.gzip.rawValue
        try Data(stored).write(to: URL(fileURLWithPath: path("stored")))
        #expect(decodeError() == .corruptChunk(index: 0))
        stored[25] = 9
        try Data(stored).write(to: URL(fileURLWithPath: path("stored")))
        #expect(decodeError() == .notABackup("unknown compression 9 in the header (1 gzip, 2 zstd)"))
        stored[4] = 3
        try Data(stored).write(to: URL(fileURLWithPath: path("stored")))
        #expect(decodeError() == .notABackup("unknown format version 3 (this Zoneward reads 1 and 2)"))
        #expect(!FileManager.default.fileExists(atPath: path("restored")))
    }

    /// Arbitrary bytes after a valid header never crash the decoder: each is refused with an error.
    @Test func garbageAfterAHeaderIsAnError() throws {
        try BackupPipeline.encode(from: try makeSource(300_000), to: path("stored"), key: key, chunkSize: 65536)
        let good = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path("stored"))))
        var generator = SystemRandomNumberGenerator()
        for trial in 0..<40 {
            var bytes = good
            switch trial % 4 {
            case 0: bytes.removeLast(Int.random(in: 1..<(bytes.count - 26), using: &generator))
            case 1: bytes[Int.random(in: 26..<bytes.count, using: &generator)] ^= 0x80
            case 2: bytes.replaceSubrange(26..<min(bytes.count, 31), with: [0xff, 0xff, 0xff, 0xff, 0])
            default: bytes = Array(bytes[0..<26]) + (0..<5000).map { _ in UInt8.random(in: 0...255) }
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path("stored")))
            #expect(decodeError() != nil, "trial \(trial) was accepted")
            #expect(!FileManager.default.fileExists(atPath: path("restored")))
        }
    }

    // MARK: - Objects written before zstd (format 1)

    static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)

    /// The object `zoneward backup run` wrote (a gzip stream in 1 MiB chunks, format 1) before zstd: it
    /// restores byte for byte, its SQLite database intact.
    @Test func aGzipObjectWrittenBeforeZstdStillRestores() throws {
        let folder = try #require(Self.fixtures).appendingPathComponent("legacy-gzip")
        let object = try #require(
            try FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("legacy").path)
                .first { $0.hasSuffix(".zwb") }
        )
        let objectPath = folder.appendingPathComponent("legacy/\(object)").path
        let manifest = try JSONDecoder().decode(
            BackupManifest.self,
            from: try Data(contentsOf: URL(fileURLWithPath: String(objectPath.dropLast(4)) + ".json"))
        )
        // Git keeps no file modes but 644 and 755: the key's bytes, without the check of its mode.
        let keyText = try String(contentsOf: folder.appendingPathComponent("backup.key"), encoding: .utf8)
        let fixtureKey = BackupKey(
            bytes: try #require(Data(base64Encoded: keyText.trimmingCharacters(in: .whitespacesAndNewlines))).map { $0 }
        )
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: objectPath)))[4] == 1, "a format-1 object")
        let result = try BackupPipeline.decode(
            from: objectPath,
            to: path("restored.db"),
            key: fixtureKey,
            expectedSHA256: manifest.sha256
        )
        #expect(result.compression == "gzip")
        #expect(result.plainBytes == manifest.plainBytes)
        let expected = try String(contentsOf: folder.appendingPathComponent("plaintext.sha256"), encoding: .utf8)
        #expect(try BackupRunner.sha256(of: path("restored.db")) == expected.prefix(64).description)
        let database = try DatabaseQueue(path: path("restored.db"))
        defer { try? database.close() }
        let (check, counts) = try database.read { db in
            (
                try String.fetchOne(db, sql: "PRAGMA integrity_check"),
                try manifest.rowCounts.keys.map { ($0, try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \($0)")) }
            )
        }
        #expect(check == "ok")
        for (table, count) in counts { #expect(count == manifest.rowCounts[table]) }
    }
}
