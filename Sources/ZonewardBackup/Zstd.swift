internal import CZstd

/// Compresses one block at a time into one self-contained zstd frame, through the system libzstd. One per
/// thread, reused across blocks (the context's tables are kept between frames).
final class ZstdBlockCompressor {
    private let context: OpaquePointer

    init(level: Int) throws {
        guard let context = ZSTD_createCCtx() else { throw CompressionError(description: "ZSTD_createCCtx failed") }
        self.context = context
        try Self.check(ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, Int32(clamping: level)))
        // AES-GCM authenticates every chunk: zstd's own checksum would be a second one.
        try Self.check(ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 0))
    }

    deinit {
        ZSTD_freeCCtx(context)
    }

    /// Replaces `output` with the frame of `input`.
    func compress(_ input: UnsafeRawBufferPointer, into output: inout [UInt8]) throws {
        output = try [UInt8](filling: ZSTD_compressBound(input.count)) { buffer in
            let written = ZSTD_compress2(context, buffer.baseAddress, buffer.count, input.baseAddress, input.count)
            try Self.check(written)
            return written
        }
    }

    static func check(_ code: Int) throws {
        if ZSTD_isError(code) != 0 {
            throw CompressionError(description: "zstd: \(String(cString: ZSTD_getErrorName(code)))")
        }
    }
}

/// The inverse of `ZstdBlockCompressor`: one chunk's frame back to its block, never more than `capacity`.
final class ZstdBlockDecompressor {
    private let context: OpaquePointer

    init() throws {
        guard let context = ZSTD_createDCtx() else { throw CompressionError(description: "ZSTD_createDCtx failed") }
        self.context = context
    }

    deinit {
        ZSTD_freeDCtx(context)
    }

    /// Replaces `output` with the decompressed block; fails when it would be larger than `capacity`.
    func decompress(_ input: UnsafeRawBufferPointer, capacity: Int, into output: inout [UInt8]) throws {
        guard input.count > 0 else { throw CompressionError(description: "zstd: an empty frame") }
        output = try [UInt8](filling: capacity) { buffer in
            // One-shot into a buffer of the block's size: the frame cannot make it allocate more.
            let written = ZSTD_decompressDCtx(
                context,
                buffer.baseAddress,
                buffer.count,
                input.baseAddress,
                input.count
            )
            if ZSTD_isError(written) != 0 {
                throw CompressionError(description: "zstd: \(String(cString: ZSTD_getErrorName(written)))")
            }
            return written
        }
    }
}

extension Array where Element == UInt8 {
    /// An array of at most `capacity` bytes that `body` writes into the start of and returns the length of.
    init(filling capacity: Int, _ body: (UnsafeMutableBufferPointer<UInt8>) throws -> Int) throws {
        self = try [UInt8](unsafeUninitializedCapacity: Swift.max(capacity, 1)) { buffer, initialized in
            initialized = 0
            let written = try body(UnsafeMutableBufferPointer(rebasing: buffer[0..<capacity]))
            guard written <= capacity else { throw CompressionError(description: "a codec overran its buffer") }
            initialized = written
        }
    }
}

@available(*, unavailable)
extension ZstdBlockCompressor: Sendable {}

@available(*, unavailable)
extension ZstdBlockDecompressor: Sendable {}
