import Foundation
import NIOCore

/// Where the decoder reads a stored object from, on one thread that may block: a file, or S3.
protocol ByteSource: AnyObject, Sendable {
    /// Up to `count` bytes: fewer only at the end of the object.
    func read(upTo count: Int) throws -> [UInt8]
}

extension RawFile: ByteSource {}

/// Reads an object of `size` bytes as one streamed download (on S3, one GET) into the decoder. The
/// download runs ahead of the reader by at most `bufferLimit` bytes: it waits while that much is queued,
/// and so does the connection under it, so memory stays at a few MiB whatever the object's size. A download
/// that breaks off (a network error, a 5xx, a body that ends early) resumes from the byte reached (on S3 a
/// Range GET, pinned like the first request to the object's ETag by If-Match), up to `attempts` times in a
/// row without progress, `retryDelay` doubling between them; a 4xx (such as 412: the object changed) or a
/// `BackupError` fails it at once. Call `cancel()` once the reader is done or failed: it stops the download.
final class StreamedObjectReader: ByteSource, @unchecked Sendable {
    /// Downloads the object from byte `offset` to its end, handing each piece to `deliver` as it arrives and
    /// reading the next one only once `deliver` returned.
    typealias Download =
        @Sendable (_ offset: Int, _ deliver: @escaping @Sendable (ByteBuffer) async throws -> Void) async throws
        -> Void

    let size: Int
    let name: String
    let bufferLimit: Int
    let attempts: Int
    let retryDelay: Duration
    private let download: Download
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var queue: [ByteBuffer] = []
    private var queuedBytes = 0
    /// Bytes that arrived: where a resumed download starts.
    private var received = 0
    private var finished = false
    private var failure: (any Error)?
    private var cancelled = false
    private var waitingDownload: CheckedContinuation<Void, any Error>?
    private var task: Task<Void, Never>?
    // Only the reading thread touches this.
    private var current = ByteBuffer()

    init(
        size: Int,
        name: String,
        bufferLimit: Int = 4 << 20,
        attempts: Int = 4,
        retryDelay: Duration = .milliseconds(200),
        download: @escaping Download
    ) {
        self.size = max(0, size)
        self.name = name
        self.bufferLimit = max(1, bufferLimit)
        self.attempts = max(1, attempts)
        self.retryDelay = retryDelay
        self.download = download
    }

    /// An S3 object: its size and ETag come from a HEAD, every GET is pinned to that ETag.
    static func s3(_ client: S3Client, key: String) async throws -> StreamedObjectReader {
        let (size, etag) = try await client.head(key: key)
        return StreamedObjectReader(size: size, name: "s3://\(client.bucket)/\(key)", attempts: client.attempts) {
            offset,
            deliver in
            try await client.stream(key: key, from: offset, etag: etag, deliver: deliver)
        }
    }

    func read(upTo count: Int) throws -> [UInt8] {
        startDownload()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(count, size))
        while bytes.count < count {
            if current.readableBytes == 0 {
                guard let next = try take() else { break }
                current = next
            }
            let taken = min(count - bytes.count, current.readableBytes)
            current.withUnsafeReadableBytes { bytes.append(contentsOf: $0.prefix(taken)) }
            current.moveReaderIndex(forwardBy: taken)
        }
        return bytes
    }

    /// Stops the download: what is queued is dropped, a blocked `read` throws `CancellationError`, and the
    /// request is cancelled (its connection closed).
    func cancel() {
        let (task, waiting) = condition.withLock {
            cancelled = true
            queue.removeAll()
            queuedBytes = 0
            condition.broadcast()
            defer { waitingDownload = nil }
            return (self.task, waitingDownload)
        }
        waiting?.resume(throwing: CancellationError())
        task?.cancel()
    }

    private func startDownload() {
        condition.withLock {
            guard task == nil, !cancelled else { return }
            task = Task { await self.run() }
        }
    }

    /// The next piece that arrived, waiting for it; nil once the whole object was read.
    private func take() throws -> ByteBuffer? {
        try condition.withLock {
            while true {
                if cancelled { throw CancellationError() }
                if !queue.isEmpty {
                    let piece = queue.removeFirst()
                    queuedBytes -= piece.readableBytes
                    if queuedBytes < bufferLimit, let waiting = waitingDownload {
                        waitingDownload = nil
                        waiting.resume()
                    }
                    return piece
                }
                if let failure { throw failure }
                if finished { return nil }
                condition.wait()
            }
        }
    }

    /// Queues a piece; returns at once while less than `bufferLimit` is queued, else once the reader took
    /// enough.
    private func deliver(_ piece: ByteBuffer) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            condition.withLock {
                if cancelled {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                guard received + piece.readableBytes <= size else {
                    continuation.resume(throwing: BackupError.io("\(name) sent more than its \(size) bytes"))
                    return
                }
                queue.append(piece)
                queuedBytes += piece.readableBytes
                received += piece.readableBytes
                condition.broadcast()
                if queuedBytes < bufferLimit {
                    continuation.resume()
                } else {
                    waitingDownload = continuation
                }
            }
        }
    }

    private func end(_ error: (any Error)?) {
        condition.withLock {
            if let error { failure = error } else { finished = true }
            condition.broadcast()
        }
    }

    /// The download, resumed where it broke off.
    private func run() async {
        var failures = 0
        var delay = retryDelay
        var offset = 0
        while true {
            let problem: any Error
            do {
                try await download(offset) { piece in try await self.deliver(piece) }
                let reached = condition.withLock { received }
                if reached == size {
                    end(nil)
                    return
                }
                problem = BackupError.io("the download of \(name) ended at byte \(reached) of \(size)")
            } catch {
                let (stop, reached) = condition.withLock { (cancelled, received) }
                if stop || Task.isCancelled { return }
                // Every byte arrived before the connection failed: nothing is left to resume (a Range from
                // the end would be refused, 416).
                if reached == size {
                    end(nil)
                    return
                }
                if !Self.resumable(error) {
                    end(error)
                    return
                }
                problem = error
            }
            let reached = condition.withLock { received }
            if reached > offset {
                failures = 0
                delay = retryDelay
            }
            failures += 1
            if failures >= attempts {
                end(BackupError.io("the download of \(name) failed \(attempts) times at byte \(reached): \(problem)"))
                return
            }
            try? await Task.sleep(for: delay)
            delay *= 2
            offset = reached
        }
    }

    /// Whether a download that failed so is worth resuming: not when S3 refused it (4xx) or the bytes are
    /// wrong (a `BackupError`); yes for network errors and 5xx.
    static func resumable(_ error: any Error) -> Bool {
        switch error {
        case S3Client.S3Error.status(let code, _): code >= 500
        case is BackupError, is CancellationError: false
        default: true
        }
    }
}
