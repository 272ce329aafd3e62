import ZonewardModel

/// How the blocks of a format-2 object are compressed: the byte its header records.
enum BlockCodec: UInt8, Sendable {
    case gzip = 1
    case zstd = 2

    init(_ codec: BackupCompression.Codec) {
        switch codec {
        case .gzip: self = .gzip
        case .zstd: self = .zstd
        }
    }

    var name: String {
        switch self {
        case .gzip: "gzip"
        case .zstd: "zstd"
        }
    }
}

/// One thread's compressor, for the configured codec and level.
enum BlockCompressor {
    case gzip(GzipBlockCompressor)
    case zstd(ZstdBlockCompressor)

    init(_ compression: BackupCompression) throws {
        switch compression.codec {
        case .gzip: self = .gzip(try GzipBlockCompressor(level: compression.level))
        case .zstd: self = .zstd(try ZstdBlockCompressor(level: compression.level))
        }
    }

    /// Replaces `output` with the self-contained compressed form of `input`.
    func compress(_ input: UnsafeRawBufferPointer, into output: inout [UInt8]) throws {
        switch self {
        case .gzip(let compressor): try compressor.compress(input, into: &output)
        case .zstd(let compressor): try compressor.compress(input, into: &output)
        }
    }
}

/// One thread's decompressor, for the codec an object's header names.
enum BlockDecompressor {
    case gzip(GzipBlockDecompressor)
    case zstd(ZstdBlockDecompressor)

    init(_ codec: BlockCodec) throws {
        switch codec {
        case .gzip: self = .gzip(try GzipBlockDecompressor())
        case .zstd: self = .zstd(try ZstdBlockDecompressor())
        }
    }

    /// Replaces `output` with the block `input` holds; more than `capacity` bytes is an error.
    func decompress(_ input: UnsafeRawBufferPointer, capacity: Int, into output: inout [UInt8]) throws {
        switch self {
        case .gzip(let decompressor): try decompressor.decompress(input, capacity: capacity, into: &output)
        case .zstd(let decompressor): try decompressor.decompress(input, capacity: capacity, into: &output)
        }
    }
}

@available(*, unavailable)
extension BlockCompressor: Sendable {}

@available(*, unavailable)
extension BlockDecompressor: Sendable {}
