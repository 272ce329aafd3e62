import Crypto
import Foundation

/// The stored format: a header, then AES-256-GCM sealed chunks.
///
///     header  "ZWB1" | version (1) | key id (8) | nonce prefix (8) | chunk size (u32 BE)          = 25 bytes
///     chunk   ciphertext length (u32 BE) | final flag (1) | ciphertext | tag (16)
///
/// Each chunk's nonce is the nonce prefix followed by its index (u32 BE), and its authenticated data is
/// the header, the index (u64 BE) and the final flag — so corruption, reordering, splicing from another
/// backup and truncation (no chunk with the final flag) are all detected, and the failing chunk is named.
enum FramedEncryption {
    static let magic: [UInt8] = Array("ZWB1".utf8)
    static let headerSize = 25
    static let tagSize = 16
    static let defaultChunkSize = 1 << 20

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
}

/// Seals a plaintext stream chunk by chunk.
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
        let box = try AES.GCM.seal(
            plaintext,
            using: key.key,
            nonce: FramedEncryption.nonce(prefix: noncePrefix, index: index),
            authenticating: FramedEncryption.authenticatedData(header: header, index: index, final: final)
        )
        index += 1
        var frame = withUnsafeBytes(of: UInt32(box.ciphertext.count).bigEndian, Array.init)
        frame.append(final ? 1 : 0)
        frame += box.ciphertext
        frame += box.tag
        return frame
    }
}

/// Opens a stored stream incrementally: feed bytes, get plaintext chunks; `finish()` checks the end.
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

    /// Reads the key id of a stored object's header without the key.
    static func keyId(ofHeader bytes: [UInt8]) throws -> String {
        guard bytes.count >= FramedEncryption.headerSize, Array(bytes[0..<4]) == FramedEncryption.magic else {
            throw BackupError.notABackup("bad magic")
        }
        guard bytes[4] == 1 else { throw BackupError.notABackup("unknown format version \(bytes[4])") }
        return hexString(bytes[5..<13])
    }

    mutating func feed(_ bytes: some Sequence<UInt8>, emit: ([UInt8]) throws -> Void) throws {
        buffer.append(contentsOf: bytes)
        if header == nil {
            guard buffer.count >= FramedEncryption.headerSize else { return }
            let candidate = Array(buffer[0..<FramedEncryption.headerSize])
            let id = try Self.keyId(ofHeader: candidate)
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
