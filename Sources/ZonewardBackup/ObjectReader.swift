import Foundation

/// Where the decoder reads a stored object from, on one thread that may block: a file, or S3.
protocol ByteSource: AnyObject, Sendable {
    /// Up to `count` bytes: fewer only at the end of the object.
    func read(upTo count: Int) throws -> [UInt8]
}

extension RawFile: ByteSource {}

/// Reads an S3 object in ranged GETs of `rangeSize` bytes, fetching up to `prefetch` ranges ahead of the
/// reader while it decodes, so a download overlaps decoding and never holds more than
/// (`prefetch` + 1) ranges, whatever the object's size. Each range is its own request, retried on its own;
/// each carries the object's ETag (If-Match), so every range comes from the same object. Call `cancel()`
/// once the reader is done (or failed) to stop the fetches left.
final class RangedObjectReader: ByteSource, @unchecked Sendable {
    typealias Fetch = @Sendable (Range<Int>) async throws -> Data

    let size: Int
    let rangeSize: Int
    let prefetch: Int
    private let fetch: Fetch
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var ready: [Int: Result<Data, any Error>] = [:]
    private var tasks: [Int: Task<Void, Never>] = [:]
    private var started = 0
    private var cancelled = false
    // Only the reading thread touches these.
    private var current = Data()
    private var offset = 0
    private var nextRange = 0

    init(size: Int, rangeSize: Int = 4 << 20, prefetch: Int = 2, fetch: @escaping Fetch) {
        LargeAllocations.mappedSeparately
        self.size = max(0, size)
        self.rangeSize = max(1, rangeSize)
        self.prefetch = max(1, prefetch)
        self.fetch = fetch
    }

    /// An S3 object read by ranges: its size and ETag come from a HEAD.
    static func s3(_ client: S3Client, key: String, rangeSize: Int = 4 << 20) async throws -> RangedObjectReader {
        let (size, etag) = try await client.head(key: key)
        return RangedObjectReader(size: size, rangeSize: rangeSize) { range in
            try await client.get(key: key, range: range, etag: etag)
        }
    }

    private var rangeCount: Int {
        (size + rangeSize - 1) / rangeSize
    }

    func read(upTo count: Int) throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(count, size))
        while bytes.count < count {
            if offset == current.count {
                guard nextRange < rangeCount else { break }
                current = try take(nextRange)
                offset = 0
                nextRange += 1
            }
            let taken = min(count - bytes.count, current.count - offset)
            current.withUnsafeBytes { raw in
                bytes.append(contentsOf: raw[offset..<(offset + taken)])
            }
            offset += taken
        }
        return bytes
    }

    /// Starts no more fetches and drops what those in flight bring (at most `prefetch` ranges, left to
    /// finish: cancelling URLSession's requests mid-flight is where a run was seen to hang); a blocked `read`
    /// throws `CancellationError`.
    func cancel() {
        condition.withLock {
            cancelled = true
            ready.removeAll()
            condition.broadcast()
        }
    }

    /// Range `index`, once fetched; starts the fetches of the ranges after it, up to `prefetch` ahead.
    private func take(_ index: Int) throws -> Data {
        try condition.withLock {
            while started < min(rangeCount, index + 1 + prefetch) && !cancelled {
                let number = started
                let lower = number * rangeSize
                let range = lower..<min(size, lower + rangeSize)
                tasks[number] = Task { [fetch] in
                    let result: Result<Data, any Error>
                    do {
                        result = .success(try await fetch(range))
                    } catch {
                        result = .failure(error)
                    }
                    self.fetched(number, result)
                }
                started += 1
            }
            while true {
                if cancelled { throw CancellationError() }
                if let result = ready.removeValue(forKey: index) { return try result.get() }
                condition.wait()
            }
        }
    }

    private func fetched(_ index: Int, _ result: Result<Data, any Error>) {
        condition.withLock {
            tasks[index] = nil
            if !cancelled { ready[index] = result }
            condition.broadcast()
        }
    }
}
