import Crypto
import Foundation
import ZonewardModel

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// read(2), under a name the methods called `read` do not hide.
private func readBytes(_ descriptor: Int32, _ buffer: UnsafeMutablePointer<UInt8>?, _ count: Int) -> Int {
    read(descriptor, buffer, count)
}

/// What a pipeline run produced.
public struct PipelineResult: Sendable, Equatable {
    /// Bytes read from the source.
    public var plainBytes: Int64
    /// Bytes of the stored object.
    public var storedBytes: Int64
    /// SHA-256 of the stored object, hex.
    public var sha256: String
    public var keyId: String
    /// How the object is compressed, as its header says: `zstd level 1`, `gzip` (an object written before
    /// zstd, one gzip stream), …
    public var compression: String = "gzip"
}

/// The backup pipeline, streaming in bounded memory: source bytes → compression → AES-256-GCM framed
/// chunks → stored object, with the SHA-256 of what is stored; and back.
///
/// An object of format 2 (what `encode` writes) is a sequence of independent blocks: the source is cut into
/// blocks of the chunk size, each block compressed on its own (one zstd frame or gzip member) and sealed
/// as one chunk. So every core compresses and seals, both ways: a thread reads, one per core compresses
/// and seals (or opens and decompresses), and the calling thread hashes and writes, in order, with a
/// bounded number of blocks in flight. Format 1 objects (one gzip stream cut into chunks, written before
/// zstd) still decode, one chunk after another.
public enum BackupPipeline {
    /// Blocks in flight per worker thread, beyond the one it works on.
    static let blocksInFlightPerWorker = 3

    /// Compresses and encrypts `input` into `output` (created, fsynced unless `synchronize` is false: a
    /// scratch file that is copied elsewhere and synced there). Blocking: call it off the Swift concurrency
    /// pool (`onThread`).
    @discardableResult
    public static func encode(
        from input: String,
        to output: String,
        key: BackupKey,
        compression: BackupCompression = .default,
        chunkSize: Int = 1 << 20,
        synchronize: Bool = true,
        workers: Int = OrderedPipelineDefaults.workers,
        progress: (@Sendable (Int64) -> Void)? = nil
    ) throws -> PipelineResult {
        guard (1...FramedEncryption.maximumChunkSize).contains(chunkSize) else {
            throw BackupError.io("chunk size \(chunkSize) is out of range")
        }
        let source = try RawFile(reading: input)
        return try encode(
            from: source,
            into: try FileObjectSink(path: output, synchronize: synchronize),
            key: key,
            compression: compression,
            chunkSize: chunkSize,
            workers: workers,
            progress: progress
        )
    }

    /// Compresses and encrypts `input` into `sink` as it is sealed, and finishes the sink; the SHA-256 is
    /// of the bytes written to it. Blocking: call it off the Swift concurrency pool (`onThread`).
    static func encode(
        from input: String,
        into sink: any ObjectSink,
        key: BackupKey,
        compression: BackupCompression = .default,
        chunkSize: Int = 1 << 20,
        workers: Int = OrderedPipelineDefaults.workers,
        progress: (@Sendable (Int64) -> Void)? = nil
    ) throws -> PipelineResult {
        guard (1...FramedEncryption.maximumChunkSize).contains(chunkSize) else {
            throw BackupError.io("chunk size \(chunkSize) is out of range")
        }
        return try encode(
            from: try RawFile(reading: input),
            into: sink,
            key: key,
            compression: compression,
            chunkSize: chunkSize,
            workers: workers,
            progress: progress
        )
    }

    private static func encode(
        from source: RawFile,
        into sink: any ObjectSink,
        key: BackupKey,
        compression: BackupCompression,
        chunkSize: Int,
        workers: Int,
        progress: (@Sendable (Int64) -> Void)?
    ) throws -> PipelineResult {
        let header = ObjectHeader(
            keyId: key.id,
            noncePrefix: (0..<8).map { _ in UInt8.random(in: 0...255) },
            chunkSize: chunkSize,
            codec: BlockCodec(compression.codec)
        )
        var hasher = SHA256()
        var stored: Int64 = 0
        var plain: Int64 = 0
        func store(_ bytes: [UInt8]) throws {
            hasher.update(data: bytes)
            stored += Int64(bytes.count)
            try sink.write(bytes)
        }
        try store(header.bytes)
        try OrderedPipeline<(block: [UInt8], final: Bool), (frame: [UInt8], plain: Int)>.run(
            workers: workers,
            window: workers * (1 + blocksInFlightPerWorker),
            name: "zoneward-encode",
            produce: { emit in
                // One block ahead, to know which block is the last.
                var current = try source.read(upTo: chunkSize)
                while true {
                    if current.count < chunkSize {
                        _ = emit((current, true))
                        return
                    }
                    let next = try source.read(upTo: chunkSize)
                    if next.isEmpty {
                        _ = emit((current, true))
                        return
                    }
                    guard emit((current, false)) else { return }
                    current = next
                }
            },
            makeWorker: {
                let compressor = try BlockCompressor(compression)
                var compressed: [UInt8] = []
                return { index, item in
                    try item.block.withUnsafeBytes { try compressor.compress($0, into: &compressed) }
                    let frame = try FramedEncryption.seal(
                        compressed,
                        key: key,
                        header: header,
                        index: UInt64(index),
                        final: item.final
                    )
                    return (frame, item.block.count)
                }
            },
            consume: { _, sealed in
                try store(sealed.frame)
                plain += Int64(sealed.plain)
                progress?(plain)
            }
        )
        try sink.finish()
        return PipelineResult(
            plainBytes: plain,
            storedBytes: stored,
            sha256: hexString(hasher.finalize()),
            keyId: key.id,
            compression: compression.description
        )
    }

    /// Decrypts and decompresses a stored object into `output`. The key is checked against the header
    /// before anything is written; every chunk is authenticated; the stored object's SHA-256 must match
    /// `expectedSHA256` when given. On any failure `output` is removed. The header says how the object is
    /// compressed. Blocking: call it off the Swift concurrency pool (`onThread`).
    @discardableResult
    public static func decode(
        from input: String,
        to output: String,
        key: BackupKey,
        expectedSHA256: String? = nil,
        workers: Int = OrderedPipelineDefaults.workers,
        progress: (@Sendable (Int64) -> Void)? = nil
    ) throws -> PipelineResult {
        try decode(
            from: try RawFile(reading: input),
            to: output,
            key: key,
            expectedSHA256: expectedSHA256,
            workers: workers,
            progress: progress
        )
    }

    /// Decodes a stored object read from `source` (a file, or S3 by ranges), as `decode(from:to:…)` does.
    static func decode(
        from source: any ByteSource,
        to output: String,
        key: BackupKey,
        expectedSHA256: String? = nil,
        workers: Int = OrderedPipelineDefaults.workers,
        progress: (@Sendable (Int64) -> Void)? = nil
    ) throws -> PipelineResult {
        // The key is checked before the output exists: a wrong key writes nothing.
        var head = try source.read(upTo: FramedEncryption.headerSize)
        let length = try ObjectHeader.length(ofPrefix: head)
        if length > head.count { head += try source.read(upTo: length - head.count) }
        let header = try ObjectHeader(parsing: head)
        guard header.keyId == key.id else { throw BackupError.wrongKey(expected: header.keyId, actual: key.id) }
        let writer = try WritebackFile(creating: output)
        var succeeded = false
        defer {
            try? writer.close()
            if !succeeded { try? FileManager.default.removeItem(atPath: output) }
        }
        let result: PipelineResult
        if let codec = header.codec {
            result = try decodeBlocks(
                source,
                header: header,
                codec: codec,
                key: key,
                writer: writer,
                workers: workers,
                progress: progress
            )
        } else {
            result = try decodeStream(source, header: header, key: key, writer: writer, progress: progress)
        }
        if let expectedSHA256, expectedSHA256 != result.sha256 {
            throw BackupError.checksumMismatch(expected: expectedSHA256, actual: result.sha256)
        }
        try writer.synchronize()
        succeeded = true
        return result
    }

    /// Format 2: chunks read and hashed on one thread, opened and decompressed on every core, written in
    /// order here.
    private static func decodeBlocks(
        _ source: any ByteSource,
        header: ObjectHeader,
        codec: BlockCodec,
        key: BackupKey,
        writer: WritebackFile,
        workers: Int,
        progress: (@Sendable (Int64) -> Void)?
    ) throws -> PipelineResult {
        let hasher = HashBox(header.bytes)
        var plain: Int64 = 0
        let chunkSize = header.chunkSize
        try OrderedPipeline<(body: [UInt8], final: Bool), [UInt8]>.run(
            workers: workers,
            window: workers * (1 + blocksInFlightPerWorker),
            name: "zoneward-decode",
            produce: { emit in
                var index: UInt64 = 0
                var sawFinal = false
                while true {
                    let prefix = try source.read(upTo: 5)
                    if prefix.isEmpty {
                        guard sawFinal else { throw BackupError.truncated(afterChunk: index == 0 ? 0 : index - 1) }
                        return
                    }
                    guard !sawFinal else { throw BackupError.notABackup("bytes after the final chunk") }
                    guard prefix.count == 5 else { throw BackupError.truncated(afterChunk: index == 0 ? 0 : index - 1) }
                    let length = Int(prefix[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
                    guard length <= FramedEncryption.maximumCiphertext(chunkSize: chunkSize), prefix[4] <= 1 else {
                        throw BackupError.corruptChunk(index: index)
                    }
                    let body = try source.read(upTo: length + FramedEncryption.tagSize)
                    guard body.count == length + FramedEncryption.tagSize else {
                        throw BackupError.truncated(afterChunk: index == 0 ? 0 : index - 1)
                    }
                    hasher.update(prefix)
                    hasher.update(body)
                    sawFinal = prefix[4] == 1
                    guard emit((body, sawFinal)) else { return }
                    index += 1
                }
            },
            makeWorker: {
                let decompressor = try BlockDecompressor(codec)
                var block: [UInt8] = []
                return { index, item in
                    let compressed = try FramedEncryption.open(
                        item.body,
                        key: key,
                        header: header,
                        index: UInt64(index),
                        final: item.final
                    )
                    do {
                        try compressed.withUnsafeBytes {
                            try decompressor.decompress($0, capacity: chunkSize, into: &block)
                        }
                    } catch {
                        throw BackupError.notABackup("chunk \(index) does not decompress: \(error)")
                    }
                    guard item.final || block.count == chunkSize else {
                        throw BackupError.notABackup("chunk \(index) holds \(block.count) bytes, not a whole block")
                    }
                    return block
                }
            },
            consume: { _, block in
                try writer.write(contentsOf: block)
                plain += Int64(block.count)
                progress?(plain)
            }
        )
        return PipelineResult(
            plainBytes: plain,
            storedBytes: hasher.count,
            sha256: hasher.hex(),
            keyId: key.id,
            compression: codec.name
        )
    }

    /// Format 1: one gzip stream cut into chunks, opened and inflated one after another.
    private static func decodeStream(
        _ source: any ByteSource,
        header: ObjectHeader,
        key: BackupKey,
        writer: WritebackFile,
        progress: (@Sendable (Int64) -> Void)?
    ) throws -> PipelineResult {
        var opener = ChunkOpener(key: key)
        let decompressor = try GzipDecompressor()
        var hasher = SHA256()
        hasher.update(data: header.bytes)
        var stored = Int64(header.bytes.count)
        var plain: Int64 = 0
        var decompressed: [UInt8] = []
        try opener.feed(header.bytes) { _ in }
        while true {
            let block = try source.read(upTo: 1 << 20)
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
        return PipelineResult(
            plainBytes: plain,
            storedBytes: stored,
            sha256: hexString(hasher.finalize()),
            keyId: key.id,
            compression: "gzip"
        )
    }
}

/// The defaults of the pipeline's threads.
public enum OrderedPipelineDefaults {
    /// Worker threads: the cores this process may use, at least 1, at most 8.
    public static var workers: Int {
        min(8, max(1, ProcessInfo.processInfo.activeProcessorCount))
    }
}

/// The running SHA-256 of a stored object, updated by the reading thread and read once it is joined.
private final class HashBox: @unchecked Sendable {
    private var hasher = SHA256()
    private(set) var count: Int64 = 0

    init(_ first: [UInt8]) {
        update(first)
    }

    func update(_ bytes: [UInt8]) {
        hasher.update(data: bytes)
        count += Int64(bytes.count)
    }

    func hex() -> String {
        hexString(hasher.finalize())
    }
}

/// A file read with read(2) straight into byte arrays, closed when released.
final class RawFile: @unchecked Sendable {
    let descriptor: Int32
    let path: String

    init(reading path: String) throws {
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        self.path = path
        guard descriptor >= 0 else { throw BackupError.io("cannot read \(path): \(String(cString: strerror(errno)))") }
    }

    deinit {
        close(descriptor)
    }

    /// Up to `count` bytes: fewer only at the end of the file.
    func read(upTo count: Int) throws -> [UInt8] {
        try fill(count) { pointer, length, _ in readBytes(descriptor, pointer, length) }
    }

    /// Up to `count` bytes from byte `offset` (pread(2): the file's position is untouched, so one file may be
    /// read at several places at once); fewer only at the end of the file.
    func read(at offset: Int, upTo count: Int) throws -> [UInt8] {
        try fill(count) { pointer, length, done in pread(descriptor, pointer, length, off_t(offset + done)) }
    }

    /// Up to `count` bytes from repeated `read(pointer, length, bytesSoFar)` calls (retried on EINTR) until
    /// `count` or the end of the file.
    private func fill(
        _ count: Int,
        _ read: (UnsafeMutablePointer<UInt8>?, Int, Int) -> Int
    ) throws -> [UInt8] {
        guard count > 0 else { return [] }
        return try [UInt8](filling: count) { buffer in
            var total = 0
            while total < count {
                let got = read(buffer.baseAddress.map { $0 + total }, count - total, total)
                if got == 0 { break }
                if got < 0 {
                    if errno == EINTR { continue }
                    throw BackupError.io("cannot read \(path): \(String(cString: strerror(errno)))")
                }
                total += got
            }
            return total
        }
    }
}

/// Runs blocking work (file I/O, compression, SQLite) on a thread of its own rather than on the Swift
/// concurrency pool, whose few threads must not wait.
@discardableResult
func onThread<T: Sendable>(
    _ name: String,
    _ body: @escaping @Sendable () throws -> T
) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.name = name
        thread.start()
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
