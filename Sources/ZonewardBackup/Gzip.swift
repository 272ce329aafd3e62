internal import CZlib

/// Why compression or decompression failed.
public struct CompressionError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Streams bytes through zlib's deflate in gzip format, a block at a time, in bounded memory: the
/// compression of format-1 objects (one gzip stream), kept to read them back and for tests that make them.
/// New objects compress each block on its own (`GzipBlockCompressor`, `ZstdBlockCompressor`).
final class GzipCompressor {
    private var stream = z_stream()
    private var finished = false

    init(level: Int32 = 1) throws {
        let status = deflateInit2_(
            &stream,
            level,
            Z_DEFLATED,
            15 + 16,
            8,
            Z_DEFAULT_STRATEGY,
            ZLIB_VERSION,
            Int32(MemoryLayout<z_stream>.size)
        )
        guard status == Z_OK else { throw CompressionError(description: "deflateInit2 failed: \(status)") }
    }

    deinit {
        deflateEnd(&stream)
    }

    /// Compresses `input`; with `final`, also flushes the end of the gzip stream.
    func compress(_ input: UnsafeRawBufferPointer, final: Bool, into output: inout [UInt8]) throws {
        var status: Int32 = Z_OK
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        let base = UnsafeMutablePointer(mutating: input.bindMemory(to: UInt8.self).baseAddress)
        stream.next_in = base
        stream.avail_in = UInt32(input.count)
        repeat {
            status = chunk.withUnsafeMutableBufferPointer { buffer in
                stream.next_out = buffer.baseAddress
                stream.avail_out = UInt32(buffer.count)
                return deflate(&stream, final ? Z_FINISH : Z_NO_FLUSH)
            }
            guard status != Z_STREAM_ERROR else { throw CompressionError(description: "deflate failed") }
            output.append(contentsOf: chunk[0..<(chunk.count - Int(stream.avail_out))])
        } while stream.avail_out == 0 || (final && status != Z_STREAM_END)
        if final { finished = true }
    }
}

/// The inverse of `GzipCompressor`.
final class GzipDecompressor {
    private var stream = z_stream()
    private(set) var isFinished = false

    init() throws {
        let status = inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else { throw CompressionError(description: "inflateInit2 failed: \(status)") }
    }

    deinit {
        inflateEnd(&stream)
    }

    func decompress(_ input: UnsafeRawBufferPointer, into output: inout [UInt8]) throws {
        guard input.count > 0 else { return }
        var chunk = [UInt8](repeating: 0, count: 256 * 1024)
        stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: UInt8.self).baseAddress)
        stream.avail_in = UInt32(input.count)
        repeat {
            let status = chunk.withUnsafeMutableBufferPointer { buffer in
                stream.next_out = buffer.baseAddress
                stream.avail_out = UInt32(buffer.count)
                return inflate(&stream, Z_NO_FLUSH)
            }
            switch status {
            case Z_OK, Z_BUF_ERROR:
                break
            case Z_STREAM_END:
                isFinished = true
            default:
                throw CompressionError(description: "the compressed stream is corrupt (inflate \(status))")
            }
            output.append(contentsOf: chunk[0..<(chunk.count - Int(stream.avail_out))])
            if isFinished { break }
        } while stream.avail_out == 0 || stream.avail_in > 0
    }
}

@available(*, unavailable)
extension GzipCompressor: Sendable {}

@available(*, unavailable)
extension GzipDecompressor: Sendable {}

/// Compresses one block at a time into one self-contained gzip member (what pigz does, without the
/// dictionary carried over), reused across blocks by one thread.
final class GzipBlockCompressor {
    private var stream = z_stream()

    init(level: Int) throws {
        let status = deflateInit2_(
            &stream,
            Int32(clamping: level),
            Z_DEFLATED,
            15 + 16,
            8,
            Z_DEFAULT_STRATEGY,
            ZLIB_VERSION,
            Int32(MemoryLayout<z_stream>.size)
        )
        guard status == Z_OK else { throw CompressionError(description: "deflateInit2 failed: \(status)") }
    }

    deinit {
        deflateEnd(&stream)
    }

    /// Replaces `output` with the gzip member of `input`.
    func compress(_ input: UnsafeRawBufferPointer, into output: inout [UInt8]) throws {
        guard deflateReset(&stream) == Z_OK, let length = UInt32(exactly: input.count) else {
            throw CompressionError(description: "deflateReset failed")
        }
        let bound = Int(deflateBound(&stream, UInt(length)))
        output = try [UInt8](filling: bound) { buffer in
            stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: UInt8.self).baseAddress)
            stream.avail_in = length
            stream.next_out = buffer.baseAddress
            stream.avail_out = UInt32(clamping: buffer.count)
            // deflateBound is enough for the whole member in one call.
            let status = deflate(&stream, Z_FINISH)
            guard status == Z_STREAM_END else { throw CompressionError(description: "deflate failed: \(status)") }
            return buffer.count - Int(stream.avail_out)
        }
    }
}

/// The inverse of `GzipBlockCompressor`: one chunk's member back to its block, never more than `capacity`.
final class GzipBlockDecompressor {
    private var stream = z_stream()

    init() throws {
        let status = inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else { throw CompressionError(description: "inflateInit2 failed: \(status)") }
    }

    deinit {
        inflateEnd(&stream)
    }

    func decompress(_ input: UnsafeRawBufferPointer, capacity: Int, into output: inout [UInt8]) throws {
        guard inflateReset(&stream) == Z_OK, let length = UInt32(exactly: input.count) else {
            throw CompressionError(description: "inflateReset failed")
        }
        output = try [UInt8](filling: capacity) { buffer in
            stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: UInt8.self).baseAddress)
            stream.avail_in = length
            stream.next_out = buffer.baseAddress
            stream.avail_out = UInt32(clamping: buffer.count)
            let status = inflate(&stream, Z_FINISH)
            switch status {
            case Z_STREAM_END:
                guard stream.avail_in == 0 else {
                    throw CompressionError(description: "bytes after the gzip member of a block")
                }
            case Z_BUF_ERROR where stream.avail_out == 0:
                throw CompressionError(description: "a block decompresses to more than the block size")
            default:
                throw CompressionError(description: "the compressed block is corrupt or incomplete (inflate \(status))")
            }
            return buffer.count - Int(stream.avail_out)
        }
    }
}

@available(*, unavailable)
extension GzipBlockCompressor: Sendable {}

@available(*, unavailable)
extension GzipBlockDecompressor: Sendable {}
