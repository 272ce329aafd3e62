import Foundation
import Testing

@testable import ZonewardBackup

@Suite struct BackupPipelineTests {
    let directory: URL
    let key = BackupKey(bytes: (0..<32).map { UInt8($0) })
    let otherKey = BackupKey(bytes: (0..<32).map { UInt8(255 - $0) })

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("zoneward-backup-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// About 3 MiB, half compressible, half random: many 64 KiB chunks.
    func makeSource() throws -> String {
        var bytes = [UInt8](repeating: 0, count: 3 << 20)
        for index in stride(from: 0, to: bytes.count / 2, by: 1) { bytes[index] = UInt8(index % 251) }
        for index in (bytes.count / 2)..<bytes.count { bytes[index] = UInt8.random(in: 0...255) }
        try Data(bytes).write(to: URL(fileURLWithPath: path("source")))
        return path("source")
    }

    func encoded() throws -> PipelineResult {
        try BackupPipeline.encode(from: try makeSource(), to: path("stored"), key: key, chunkSize: 64 << 10)
    }

    /// Frames of the stored object: (offset, length) of each, after the header.
    func frames() throws -> [(Int, Int)] {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path("stored"))))
        var frames: [(Int, Int)] = []
        var offset = FramedEncryption.headerSize + 1  // format 2
        while offset < bytes.count {
            let length = Int(bytes[offset..<offset + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            let total = 5 + length + FramedEncryption.tagSize
            frames.append((offset, total))
            offset += total
        }
        return frames
    }

    func rewrite(_ change: (inout [UInt8]) -> Void) throws {
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path("stored"))))
        change(&bytes)
        try Data(bytes).write(to: URL(fileURLWithPath: path("stored")))
    }

    func decodeError(key: BackupKey? = nil, sha: String? = nil) -> BackupError? {
        do {
            try BackupPipeline.decode(
                from: path("stored"),
                to: path("restored"),
                key: key ?? self.key,
                expectedSHA256: sha
            )
            return nil
        } catch let error as BackupError {
            return error
        } catch {
            return .io("\(error)")
        }
    }

    @Test func roundTripsAndReportsSizesAndChecksum() throws {
        let result = try encoded()
        #expect(result.plainBytes == 3 << 20)
        #expect(result.storedBytes < result.plainBytes)
        #expect(try frames().count > 10)
        let restored = try BackupPipeline.decode(
            from: path("stored"),
            to: path("restored"),
            key: key,
            expectedSHA256: result.sha256
        )
        #expect(restored.sha256 == result.sha256)
        #expect(FileManager.default.contentsEqual(atPath: path("source"), andPath: path("restored")))
    }

    @Test func aWrongKeyWritesNothing() throws {
        _ = try encoded()
        #expect(decodeError(key: otherKey) == .wrongKey(expected: key.id, actual: otherKey.id))
        #expect(!FileManager.default.fileExists(atPath: path("restored")))
    }

    @Test func oneFlippedByteIsFoundAndTheChunkNamed() throws {
        _ = try encoded()
        let (offset, length) = try frames()[5]
        try rewrite { $0[offset + length / 2] ^= 0x01 }
        #expect(decodeError() == .corruptChunk(index: 5))
        #expect(!FileManager.default.fileExists(atPath: path("restored")))
    }

    @Test func truncationIsDetected() throws {
        _ = try encoded()
        let last = try frames().last!
        try rewrite { $0.removeLast($0.count - last.0) }
        guard case .truncated = decodeError() else {
            Issue.record("a backup without its final chunk was accepted")
            return
        }
    }

    @Test func reorderedChunksAreDetected() throws {
        _ = try encoded()
        let all = try frames()
        let (a, b) = (all[2], all[3])
        try rewrite { bytes in
            let first = Array(bytes[a.0..<a.0 + a.1])
            let second = Array(bytes[b.0..<b.0 + b.1])
            bytes.replaceSubrange(a.0..<b.0 + b.1, with: second + first)
        }
        #expect(decodeError() == .corruptChunk(index: 2))
    }

    @Test func aChecksumMismatchIsAnError() throws {
        _ = try encoded()
        guard case .checksumMismatch = decodeError(sha: String(repeating: "0", count: 64)) else {
            Issue.record("a wrong checksum was accepted")
            return
        }
    }

    @Test func anEmptySourceRoundTrips() throws {
        #expect(FileManager.default.createFile(atPath: path("empty"), contents: Data()))
        _ = try BackupPipeline.encode(from: path("empty"), to: path("stored"), key: key)
        let result = try BackupPipeline.decode(from: path("stored"), to: path("restored"), key: key)
        #expect(result.plainBytes == 0)
    }

    @Test func keyFilesAreValidated() throws {
        try Data("too short".utf8).write(to: URL(fileURLWithPath: path("bad.key")))
        #expect(throws: BackupError.self) { try BackupKey.load(file: path("bad.key")) }
        let raw = Data((0..<32).map { UInt8($0) }).base64EncodedString()
        try Data(raw.utf8).write(to: URL(fileURLWithPath: path("good.key")))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path("good.key"))
        #expect(try BackupKey.load(file: path("good.key")).id == key.id)
    }
}
