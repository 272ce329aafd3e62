import Crypto
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A 256-bit backup key, read from a file holding 32 random bytes in base64, identified by a short id
/// stored with every backup (so restoring with the wrong key fails before anything is written).
public struct BackupKey: Sendable {
    /// The key's bytes (SymmetricKey is not Sendable in swift-crypto 3; it is made from these when needed).
    private let bytes: [UInt8]
    /// The first 8 bytes of SHA-256 of the key, hex: identifies the key without revealing it.
    public let id: String

    public init(bytes: [UInt8]) {
        self.bytes = bytes
        id = hexString(SHA256.hash(data: bytes).prefix(8))
    }

    var key: SymmetricKey { SymmetricKey(data: bytes) }

    /// Reads a key file: 32 bytes, base64 (`openssl rand -base64 32 > backup.key`).
    /// Refuses a file that group or others may access: a key anyone else can read protects nothing.
    public static func load(file path: String) throws -> BackupKey {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw BackupError.key("cannot read the key file \(path)")
        }
        // stat, not lstat: a Kubernetes secret file is a symlink (mode 777) to the real file.
        var status = stat()
        if stat(path, &status) == 0 {
            let permissions = UInt32(status.st_mode) & 0o777
            guard permissions & 0o077 == 0 else {
                throw BackupError.key(
                    "the key file \(path) has mode \(String(permissions, radix: 8)): group or others may read it; "
                        + "chmod 600 \(path)"
                )
            }
        }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let raw = Data(base64Encoded: text), raw.count == 32 else {
            throw BackupError.key("\(path) must hold 32 random bytes in base64 (openssl rand -base64 32)")
        }
        return BackupKey(bytes: Array(raw))
    }
}

/// Everything that can go wrong making, checking or restoring a backup.
public enum BackupError: Error, Sendable, CustomStringConvertible, Equatable {
    case key(String)
    /// The backup was made with another key.
    case wrongKey(expected: String, actual: String)
    case notABackup(String)
    /// A chunk failed authentication: corrupted, reordered, or from another backup.
    case corruptChunk(index: UInt64)
    /// The stream ended before its final chunk.
    case truncated(afterChunk: UInt64)
    case checksumMismatch(expected: String, actual: String)
    /// More chunks than the nonce counter can number: the object would reuse a nonce.
    case tooManyChunks
    case io(String)

    public var description: String {
        switch self {
        case .key(let message): return message
        case .wrongKey(let expected, let actual):
            return "this backup was encrypted with key \(expected), not with the key given (\(actual))"
        case .notABackup(let message): return "not a Zoneward backup: \(message)"
        case .corruptChunk(let index):
            return "chunk \(index) failed authentication: the stored object is corrupt or was tampered with"
        case .truncated(let index): return "the backup ends after chunk \(index) without its final chunk: truncated"
        case .checksumMismatch(let expected, let actual):
            return "SHA-256 of the stored object is \(actual), the catalog says \(expected)"
        case .tooManyChunks:
            return "the source needs more than \(FramedEncryption.maximumChunks) chunks; use a larger chunk size"
        case .io(let message): return message
        }
    }
}

/// Lowercase hex of bytes: key ids, checksums, signatures.
func hexString(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}
