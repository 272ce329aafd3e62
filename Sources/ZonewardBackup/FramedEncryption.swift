import Crypto
import Foundation

/// The stored format: a header, then AES-256-GCM sealed chunks.
///
///     header 1  "ZWB1" | 1 | key id (8) | nonce prefix (8) | chunk size (u32 BE)                    = 25 bytes
///     header 2  "ZWB1" | 2 | key id (8) | nonce prefix (8) | block size (u32 BE) | codec (1)       = 26 bytes
///     chunk     ciphertext length (u32 BE) | final flag (1) | ciphertext | tag (16)
///
/// Format 1 (written before zstd) is one gzip stream cut into chunks of the chunk size. Format 2 cuts the
/// source into blocks of the block size (the last may be shorter, or empty for an empty source) and each
/// chunk holds one block compressed on its own: a zstd frame (codec 2) or a gzip member (codec 1). So the
/// chunks of format 2 are compressed, sealed, opened and decompressed independently, on every core.
///
/// Each chunk's nonce is the nonce prefix followed by its index (u32 BE), and its authenticated data is
/// the header, the index (u64 BE) and the final flag — so corruption, reordering, splicing from another
/// backup, truncation (no chunk with the final flag) and a changed header (codec, block size) are all
/// detected, and the failing chunk is named.
enum FramedEncryption {
    static let magic: [UInt8] = Array("ZWB1".utf8)
    /// The size of a format-1 header, and the prefix of every header read before its version is known.
    static let headerSize = 25
    static let tagSize = 16
    static let defaultChunkSize = 1 << 20
    /// The largest chunk (format 1) or block (format 2) size accepted.
    static let maximumChunkSize = 16 << 20

    /// The largest ciphertext a format-2 chunk of `chunkSize`-byte blocks may hold: the worst case of zstd
    /// and deflate on incompressible input is a fraction of a percent over the block.
    static func maximumCiphertext(chunkSize: Int) -> Int {
        chunkSize + chunkSize / 64 + 4096
    }

    static func header(keyId: String, noncePrefix: [UInt8], chunkSize: Int) -> [UInt8] {
        var bytes = magic + [1]
        bytes += hexBytes(keyId)
        bytes += noncePrefix
        bytes += withUnsafeBytes(of: UInt32(chunkSize).bigEndian, Array.init)
        return bytes
    }

    static func hexBytes(_ hex: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) ?? hex.endIndex
            bytes.append(UInt8(hex[index..<next], radix: 16) ?? 0)
            index = next
        }
        return bytes
    }

    /// The most chunks one object may have: the nonce holds the index in 32 bits, and a nonce must never
    /// repeat under one key and prefix.
    static let maximumChunks = UInt64(UInt32.max) + 1

    static func nonce(prefix: [UInt8], index: UInt64) throws -> AES.GCM.Nonce {
        guard let counter = UInt32(exactly: index) else { throw BackupError.tooManyChunks }
        return try AES.GCM.Nonce(data: prefix + withUnsafeBytes(of: counter.bigEndian, Array.init))
    }

    static func authenticatedData(header: [UInt8], index: UInt64, final: Bool) -> [UInt8] {
        header + withUnsafeBytes(of: index.bigEndian, Array.init) + [final ? 1 : 0]
    }

    /// The frame of chunk `index` holding `plaintext`.
    static func seal(
        _ plaintext: [UInt8],
        key: BackupKey,
        header: [UInt8],
        noncePrefix: [UInt8],
        index: UInt64,
        final: Bool
    ) throws -> [UInt8] {
        let box = try AES.GCM.seal(
            plaintext,
            using: key.key,
            nonce: nonce(prefix: noncePrefix, index: index),
            authenticating: authenticatedData(header: header, index: index, final: final)
        )
        var frame: [UInt8] = []
        frame.reserveCapacity(5 + box.ciphertext.count + tagSize)
        frame += withUnsafeBytes(of: UInt32(box.ciphertext.count).bigEndian, Array.init)
        frame.append(final ? 1 : 0)
        frame += box.ciphertext
        frame += box.tag
        return frame
    }

    static func seal(
        _ plaintext: [UInt8],
        key: BackupKey,
        header: ObjectHeader,
        index: UInt64,
        final: Bool
    )
        throws -> [UInt8]
    {
        try seal(plaintext, key: key, header: header.bytes, noncePrefix: header.noncePrefix, index: index, final: final)
    }

    /// The plaintext of chunk `index`, from its ciphertext followed by its tag; `corruptChunk` when it does
    /// not authenticate.
    static func open(
        _ body: [UInt8],
        key: BackupKey,
        header: ObjectHeader,
        index: UInt64,
        final: Bool
    ) throws
        -> [UInt8]
    {
        guard body.count >= tagSize else { throw BackupError.corruptChunk(index: index) }
        do {
            let box = try AES.GCM.SealedBox(
                nonce: nonce(prefix: header.noncePrefix, index: index),
                ciphertext: body[0..<(body.count - tagSize)],
                tag: body[(body.count - tagSize)...]
            )
            return Array(
                try AES.GCM.open(
                    box,
                    using: key.key,
                    authenticating: authenticatedData(header: header.bytes, index: index, final: final)
                )
            )
        } catch let error as BackupError {
            throw error
        } catch {
            throw BackupError.corruptChunk(index: index)
        }
    }
}

/// A stored object's header, either format.
struct ObjectHeader: Sendable {
    var version: UInt8
    var keyId: String
    var noncePrefix: [UInt8]
    var chunkSize: Int
    /// Format 2's codec; nil for format 1 (one gzip stream).
    var codec: BlockCodec?
    /// The header as stored (authenticated with every chunk).
    var bytes: [UInt8]

    /// A format-2 header.
    init(keyId: String, noncePrefix: [UInt8], chunkSize: Int, codec: BlockCodec) {
        version = 2
        self.keyId = keyId
        self.noncePrefix = noncePrefix
        self.chunkSize = chunkSize
        self.codec = codec
        var bytes = FramedEncryption.magic + [2]
        bytes += FramedEncryption.hexBytes(keyId)
        bytes += noncePrefix
        bytes += withUnsafeBytes(of: UInt32(chunkSize).bigEndian, Array.init)
        bytes.append(codec.rawValue)
        self.bytes = bytes
    }

    /// The whole header's length, from its first `FramedEncryption.headerSize` bytes.
    static func length(ofPrefix bytes: [UInt8]) throws -> Int {
        guard bytes.count >= FramedEncryption.headerSize, Array(bytes[0..<4]) == FramedEncryption.magic else {
            throw BackupError.notABackup(bytes.count < 4 ? "shorter than a header" : "bad magic")
        }
        switch bytes[4] {
        case 1: return FramedEncryption.headerSize
        case 2: return FramedEncryption.headerSize + 1
        default: throw BackupError.notABackup("unknown format version \(bytes[4]) (this Zoneward reads 1 and 2)")
        }
    }

    /// Reads a whole header, checking every field.
    init(parsing bytes: [UInt8]) throws {
        let length = try Self.length(ofPrefix: bytes)
        guard bytes.count >= length else { throw BackupError.notABackup("shorter than a header") }
        version = bytes[4]
        keyId = hexString(bytes[5..<13])
        noncePrefix = Array(bytes[13..<21])
        chunkSize = Int(bytes[21..<25].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        self.bytes = Array(bytes[0..<length])
        if version == 2 {
            guard let codec = BlockCodec(rawValue: bytes[25]) else {
                throw BackupError.notABackup("unknown compression \(bytes[25]) in the header (1 gzip, 2 zstd)")
            }
            self.codec = codec
            guard (1...FramedEncryption.maximumChunkSize).contains(chunkSize) else {
                throw BackupError.notABackup("block size \(chunkSize) in the header is out of range")
            }
        } else {
            codec = nil
        }
    }
}

/// Seals a format-1 plaintext stream chunk by chunk (what objects were before format 2; tests make them).
struct ChunkSealer {
    let key: BackupKey
    let header: [UInt8]
    let noncePrefix: [UInt8]
    private(set) var index: UInt64 = 0

    init(key: BackupKey, chunkSize: Int = FramedEncryption.defaultChunkSize, startingAt index: UInt64 = 0) {
        self.key = key
        noncePrefix = (0..<8).map { _ in UInt8.random(in: 0...255) }
        header = FramedEncryption.header(keyId: key.id, noncePrefix: noncePrefix, chunkSize: chunkSize)
        self.index = index
    }

    /// The frame of the next chunk; throws `tooManyChunks` rather than let the nonce counter wrap.
    mutating func seal(_ plaintext: [UInt8], final: Bool) throws -> [UInt8] {
        let frame = try FramedEncryption.seal(
            plaintext,
            key: key,
            header: header,
            noncePrefix: noncePrefix,
            index: index,
            final: final
        )
        index += 1
        return frame
    }
}

/// Opens a format-1 stored stream incrementally: feed bytes, get plaintext chunks; `finish()` checks the end.
struct ChunkOpener {
    let key: BackupKey
    private var buffer: [UInt8] = []
    private var header: [UInt8]?
    private var noncePrefix: [UInt8] = []
    private var index: UInt64 = 0
    private(set) var sawFinal = false

    init(key: BackupKey) {
        self.key = key
    }

    /// Reads the key id of a stored object's header (either format) without the key.
    static func keyId(ofHeader bytes: [UInt8]) throws -> String {
        _ = try ObjectHeader.length(ofPrefix: bytes)
        return hexString(bytes[5..<13])
    }

    mutating func feed(_ bytes: some Sequence<UInt8>, emit: ([UInt8]) throws -> Void) throws {
        buffer.append(contentsOf: bytes)
        if header == nil {
            guard buffer.count >= FramedEncryption.headerSize else { return }
            let candidate = Array(buffer[0..<FramedEncryption.headerSize])
            let id = try Self.keyId(ofHeader: candidate)
            guard candidate[4] == 1 else { throw BackupError.notABackup("not a format-1 stream") }
            guard id == key.id else { throw BackupError.wrongKey(expected: id, actual: key.id) }
            header = candidate
            noncePrefix = Array(candidate[13..<21])
            buffer.removeFirst(FramedEncryption.headerSize)
        }
        guard let header else { return }
        var offset = 0
        while buffer.count - offset >= 5 {
            guard !sawFinal else { throw BackupError.notABackup("bytes after the final chunk") }
            let length = Int(buffer[offset..<offset + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            guard length <= 64 << 20 else { throw BackupError.corruptChunk(index: index) }
            let total = 5 + length + FramedEncryption.tagSize
            guard buffer.count - offset >= total else { break }
            let final = buffer[offset + 4] == 1
            let ciphertext = buffer[(offset + 5)..<(offset + 5 + length)]
            let tag = buffer[(offset + 5 + length)..<(offset + total)]
            do {
                let box = try AES.GCM.SealedBox(
                    nonce: FramedEncryption.nonce(prefix: noncePrefix, index: index),
                    ciphertext: ciphertext,
                    tag: tag
                )
                let plaintext = try AES.GCM.open(
                    box,
                    using: key.key,
                    authenticating: FramedEncryption.authenticatedData(header: header, index: index, final: final)
                )
                try emit(Array(plaintext))
            } catch let error as BackupError {
                throw error
            } catch {
                throw BackupError.corruptChunk(index: index)
            }
            index += 1
            offset += total
            if final { sawFinal = true }
        }
        buffer.removeFirst(offset)
    }

    /// Checks that the stream ended with its final chunk.
    func finish() throws {
        guard header != nil else { throw BackupError.notABackup("shorter than a header") }
        guard sawFinal, buffer.isEmpty else { throw BackupError.truncated(afterChunk: index == 0 ? 0 : index - 1) }
    }
}
