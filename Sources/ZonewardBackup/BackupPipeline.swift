import Crypto
import Foundation

/// What a pipeline run produced.
public struct PipelineResult: Sendable, Equatable {
    /// Bytes read from the source.
    public var plainBytes: Int64
    /// Bytes of the stored object.
    public var storedBytes: Int64
    /// SHA-256 of the stored object, hex.
    public var sha256: String
    public var keyId: String
}

/// The backup pipeline, streaming in bounded memory: source bytes → gzip → AES-256-GCM framed chunks →
/// stored object, with the SHA-256 of what is stored; and back.
public enum BackupPipeline {
    /// Compresses and encrypts `input` into `output` (created, fsynced), a block at a time.
    public static func encode(
        from input: String,
        to output: String,
        key: BackupKey,
        chunkSize: Int = 1 << 20,
        progress: ((Int64) -> Void)? = nil
    ) throws -> PipelineResult {
        guard let reader = FileHandle(forReadingAtPath: input) else {
            throw BackupError.io("cannot read \(input)")
        }
        defer { try? reader.close() }
        guard FileManager.default.createFile(atPath: output, contents: nil),
            let writer = FileHandle(forWritingAtPath: output)
        else {
            throw BackupError.io("cannot create \(output)")
        }
        defer { try? writer.close() }
        let compressor = try GzipCompressor()
        var sealer = ChunkSealer(key: key, chunkSize: chunkSize)
        var hasher = SHA256()
        var stored: Int64 = 0
        var plain: Int64 = 0
        func store(_ bytes: [UInt8]) throws {
            hasher.update(data: bytes)
            stored += Int64(bytes.count)
            try writer.write(contentsOf: bytes)
        }
        try store(sealer.header)
        var pending: [UInt8] = []
        pending.reserveCapacity(chunkSize * 2)
        while true {
            let block = try reader.read(upToCount: 1 << 20) ?? Data()
            let final = block.isEmpty
            plain += Int64(block.count)
            try block.withUnsafeBytes { try compressor.compress($0, final: final, into: &pending) }
            while pending.count >= chunkSize && !(final && pending.count == chunkSize) {
                try store(try sealer.seal(Array(pending[0..<chunkSize]), final: false))
                pending.removeFirst(chunkSize)
            }
            progress?(plain)
            if final {
                try store(try sealer.seal(pending, final: true))
                break
            }
        }
        try writer.synchronize()
        let digest = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        return PipelineResult(plainBytes: plain, storedBytes: stored, sha256: digest, keyId: key.id)
    }

    /// Decrypts and decompresses a stored object into `output`. The key is checked against the header
    /// before anything is written; every chunk is authenticated; the stored object's SHA-256 must match
    /// `expectedSHA256` when given. On any failure `output` is removed.
    @discardableResult
    public static func decode(
        from input: String,
        to output: String,
        key: BackupKey,
        expectedSHA256: String? = nil,
        progress: ((Int64) -> Void)? = nil
    ) throws -> PipelineResult {
        guard let reader = FileHandle(forReadingAtPath: input) else {
            throw BackupError.io("cannot read \(input)")
        }
        defer { try? reader.close() }
        // The key is checked before the output exists: a wrong key writes nothing.
        let head = Array(try reader.read(upToCount: FramedEncryption.headerSize) ?? Data())
        let storedKey = try ChunkOpener.keyId(ofHeader: head)
        guard storedKey == key.id else { throw BackupError.wrongKey(expected: storedKey, actual: key.id) }
        guard FileManager.default.createFile(atPath: output, contents: nil),
            let writer = FileHandle(forWritingAtPath: output)
        else {
            throw BackupError.io("cannot create \(output)")
        }
        var succeeded = false
        defer {
            try? writer.close()
            if !succeeded { try? FileManager.default.removeItem(atPath: output) }
        }
        var opener = ChunkOpener(key: key)
        let decompressor = try GzipDecompressor()
        var hasher = SHA256()
        hasher.update(data: head)
        var stored = Int64(head.count)
        var plain: Int64 = 0
        var decompressed: [UInt8] = []
        try opener.feed(head) { _ in }
        while true {
            let block = try reader.read(upToCount: 1 << 20) ?? Data()
            if block.isEmpty { break }
            hasher.update(data: block)
            stored += Int64(block.count)
            try opener.feed(block) { chunk in
                decompressed.removeAll(keepingCapacity: true)
                try chunk.withUnsafeBytes { try decompressor.decompress($0, into: &decompressed) }
                plain += Int64(decompressed.count)
                try writer.write(contentsOf: decompressed)
            }
            progress?(plain)
        }
        try opener.finish()
        guard decompressor.isFinished else { throw BackupError.notABackup("the compressed stream is incomplete") }
        let digest = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        if let expectedSHA256, expectedSHA256 != digest {
            throw BackupError.checksumMismatch(expected: expectedSHA256, actual: digest)
        }
        try writer.synchronize()
        succeeded = true
        return PipelineResult(plainBytes: plain, storedBytes: stored, sha256: digest, keyId: key.id)
    }
}
