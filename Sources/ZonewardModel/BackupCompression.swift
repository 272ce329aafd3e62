/// How a backup job compresses its objects: `compression: zstd` (the default, level 1), `gzip`, or a
/// mapping `{codec: zstd, level: 3}`.
public struct BackupCompression: Sendable, Equatable, CustomStringConvertible {
    public enum Codec: String, Sendable, CaseIterable {
        case zstd, gzip
    }

    public var codec: Codec
    public var level: Int

    /// zstd level 1: a backup on a 2-core node is CPU-bound, and level 1 compresses about twice as fast as
    /// level 3 for a few percent of size (see bench/backup-bench.sh).
    public static let `default` = BackupCompression(codec: .zstd, level: 1)

    public init(codec: Codec, level: Int? = nil) {
        self.codec = codec
        self.level = level ?? Self.defaultLevel(codec)
    }

    /// Level 1 for both: the fastest, which is what a CPU-bound backup window wants.
    public static func defaultLevel(_ codec: Codec) -> Int { 1 }

    /// The levels accepted: zstd 1–19 (20–22 need hundreds of MiB per thread), gzip 1–9.
    public static func levels(_ codec: Codec) -> ClosedRange<Int> {
        switch codec {
        case .zstd: 1...19
        case .gzip: 1...9
        }
    }

    public var description: String { "\(codec.rawValue) level \(level)" }
}
