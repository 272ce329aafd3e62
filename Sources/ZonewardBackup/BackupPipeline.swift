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
    /// Compresses and encrypts `input` into `output` (created, fsynced unless `synchronize` is false: a
    /// scratch file that is copied elsewhere and synced there), a block at a time.
    public static func encode(
        from input: String,
        to output: String,
        key: BackupKey,
        chunkSize: Int = 1 << 20,
        synchronize: Bool = true,
        progress: (@Sendable (Int64) -> Void)? = nil
    ) throws -> PipelineResult {
        guard let reader = FileHandle(forReadingAtPath: input) else {
            throw BackupError.io("cannot read \(input)")
        }
        defer { try? reader.close() }
        let writer = try createPrivateFile(output)
        defer { try? writer.close() }
        var sealer = ChunkSealer(key: key, chunkSize: chunkSize)
        var hasher = SHA256()
        var stored: Int64 = 0
        func store(_ bytes: [UInt8]) throws {
            hasher.update(data: bytes)
            stored += Int64(bytes.count)
            try writer.write(contentsOf: bytes)
        }
        try store(sealer.header)
        // Two stages on two threads: reading and compressing here, sealing, hashing and writing below,
        // joined by a queue of at most four chunks, so memory stays bounded.
        let queue = ChunkQueue(capacity: 4)
        let producer = Thread {
            do {
                let compressor = try GzipCompressor()
                var pending: [UInt8] = []
                pending.reserveCapacity(chunkSize * 2)
                var plain: Int64 = 0
                while true {
                    let block = try reader.read(upToCount: 1 << 20) ?? Data()
                    let final = block.isEmpty
                    plain += Int64(block.count)
                    try block.withUnsafeBytes { try compressor.compress($0, final: final, into: &pending) }
                    while pending.count >= chunkSize && !(final && pending.count == chunkSize) {
                        guard queue.put(Array(pending[0..<chunkSize]), final: false) else { return }
                        pending.removeFirst(chunkSize)
                    }
                    progress?(plain)
                    if final {
                        _ = queue.put(pending, final: true)
                        queue.finish(plainBytes: plain, error: nil)
                        return
                    }
                }
            } catch {
                queue.finish(plainBytes: 0, error: error)
            }
        }
        producer.start()
        do {
            while let (chunk, final) = try queue.take() {
                try store(try sealer.seal(chunk, final: final))
            }
        } catch {
            queue.cancel()
            throw error
        }
        let plain = queue.plainBytes
        if synchronize { try writer.synchronize() }
        let digest = hexString(hasher.finalize())
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
        let writer = try createPrivateFile(output)
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
        let digest = hexString(hasher.finalize())
        if let expectedSHA256, expectedSHA256 != digest {
            throw BackupError.checksumMismatch(expected: expectedSHA256, actual: digest)
        }
        try writer.synchronize()
        succeeded = true
        return PipelineResult(plainBytes: plain, storedBytes: stored, sha256: digest, keyId: key.id)
    }
}

/// Creates (or truncates) `path` for writing; a new file gets mode 0600, as backups and restored copies are
/// for their owner only.
func createPrivateFile(_ path: String) throws -> FileHandle {
    let descriptor = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
    guard descriptor >= 0 else {
        throw BackupError.io("cannot create \(path): \(String(cString: strerror(errno)))")
    }
    return FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
}

/// A bounded hand-off between the compressing thread and the sealing one.
final class ChunkQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [(bytes: [UInt8], final: Bool)] = []
    private let capacity: Int
    private var finished = false
    private var cancelled = false
    private var failure: (any Error)?
    private(set) var plainBytes: Int64 = 0

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Adds a chunk, waiting while the queue is full; false when the consumer gave up.
    func put(_ bytes: [UInt8], final: Bool) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while items.count >= capacity && !cancelled { condition.wait() }
        guard !cancelled else { return false }
        items.append((bytes, final))
        condition.broadcast()
        return true
    }

    func finish(plainBytes: Int64, error: (any Error)?) {
        condition.lock()
        finished = true
        self.plainBytes = plainBytes
        failure = error
        condition.broadcast()
        condition.unlock()
    }

    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }

    /// The next chunk, waiting for one; nil once the producer finished and everything was taken.
    func take() throws -> (bytes: [UInt8], final: Bool)? {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty && !finished { condition.wait() }
        if let failure { throw failure }
        guard !items.isEmpty else { return nil }
        let item = items.removeFirst()
        condition.broadcast()
        return item
    }
}
