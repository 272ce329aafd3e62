import Crypto
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where the backup pipeline writes a stored object as it is sealed: a file, an S3 upload, or several of
/// them. `write` and `finish` are called on one thread (the pipeline's), never on the Swift concurrency pool,
/// so a sink may block there (for a full disk, or for an upload slot).
protocol ObjectSink: AnyObject, Sendable {
    /// The next bytes of the object.
    func write(_ bytes: [UInt8]) throws
    /// Every byte was written: make the object durable (fsync a file, complete an upload).
    func finish() throws
}

/// A new file (mode 0600), fsynced by `finish` unless told not to.
final class FileObjectSink: ObjectSink, @unchecked Sendable {
    let path: String
    private let handle: WritebackFile
    private let synchronize: Bool

    init(path: String, synchronize: Bool = true) throws {
        self.path = path
        self.handle = try WritebackFile(creating: path)
        self.synchronize = synchronize
    }

    func write(_ bytes: [UInt8]) throws {
        try handle.write(contentsOf: bytes)
    }

    func finish() throws {
        if synchronize { try handle.synchronize() }
        try handle.close()
    }
}

/// The same bytes to every sink, in order: one encoding for all of a job's targets.
final class FanOutSink: ObjectSink, @unchecked Sendable {
    let sinks: [any ObjectSink]

    init(_ sinks: [any ObjectSink]) {
        self.sinks = sinks
    }

    func write(_ bytes: [UInt8]) throws {
        for sink in sinks { try sink.write(bytes) }
    }

    func finish() throws {
        for sink in sinks { try sink.finish() }
    }
}

/// The S3 operations an upload needs; `S3Client` sends them, tests fake them. Bodies are ranges of local
/// files with their SHA-256, streamed from disk by the sender.
protocol MultipartStore: Sendable {
    /// One PUT of the whole object.
    func putObject(key: String, body: FileRange) async throws
    /// CreateMultipartUpload: the upload's id.
    func createMultipartUpload(key: String) async throws -> String
    /// UploadPart: the part's ETag.
    func uploadPart(key: String, uploadId: String, number: Int, body: FileRange) async throws -> String
    /// CompleteMultipartUpload with the parts' numbers and ETags, in order.
    func completeMultipartUpload(key: String, uploadId: String, parts: [(number: Int, etag: String)]) async throws
    /// AbortMultipartUpload: the parts uploaded so far are discarded.
    func abortMultipartUpload(key: String, uploadId: String) async throws
    /// DeleteObject: an object the run stored, or may have stored, and will not describe.
    func deleteObject(key: String) async throws
}

/// Streams an object into S3 as it is written: parts of `partSize` bytes are uploaded while the pipeline
/// goes on, at most `maxInFlight` at a time (`write` waits for a slot). A part fills a spool file of its own
/// in `spoolDirectory` (the run's private staging directory), hashed as it is written, and is uploaded from
/// there, so memory stays at a few hundred KiB whatever `partSize` (up to S3's 5 GiB), and a part that
/// fails is sent again from its file; `maxInFlight` + 1 spool files are reused in turn, removed by
/// `finish` and `abort`. An object no larger than one part is sent in one PUT by `finish`. After any
/// failure or cancellation the owner calls `abort()`, which waits for the parts in flight and aborts the
/// multipart upload, so S3 keeps no orphan parts; and it deletes the object if the single PUT or the
/// completion was sent (its answer may be lost or cancelled after S3 stored the object) and the owner has
/// not said `keep()` (the manifest describing it is written).
final class MultipartUploadSink: ObjectSink, @unchecked Sendable {
    /// S3's limit on the parts of one upload.
    static let maximumParts = 10_000

    let store: any MultipartStore
    let key: String
    let partSize: Int
    let maxInFlight: Int
    /// The spool files, one per slot.
    let spoolPaths: [String]

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var uploadId: String?
    private var etags: [Int: String] = [:]
    private var running: [Int: Task<Void, Never>] = [:]
    /// The one request the writer waits on (the single PUT, the create, the complete): cancelled with the
    /// parts, so a cancelled run does not wait out its retries.
    private var request: Task<Void, Never>?
    /// Spool slots no part fills or uploads from.
    private var freeSlots: [Int]
    private var failure: (any Error)?
    private var completed = false
    /// The single PUT or the completion was sent: the object may exist from then on.
    private var objectMayExist = false
    /// The owner wrote the manifest: the object is a backup and `abort` leaves it.
    private var kept = false
    /// `abort` began: too late to keep the object.
    private var aborting = false
    /// Each spool file open for reading, for the uploads: they go on if the files are unlinked under them (a
    /// signal removes the staging directory before it aborts the upload).
    private let readers: [RawFile]
    // Only the writing thread touches these.
    private let writers: [FileHandle]
    private var slot = 0
    private var filled = 0
    private var hasher = SHA256()
    private var nextPart = 1
    /// Bytes written so far: the object's size once `finish` returned.
    private(set) var size: Int64 = 0

    /// Creates the spool files (mode 600) in `spoolDirectory`.
    init(store: any MultipartStore, key: String, partSize: Int, spoolDirectory: String, maxInFlight: Int = 1) throws {
        self.store = store
        self.key = key
        self.partSize = max(1, partSize)
        self.maxInFlight = max(1, maxInFlight)
        let name = "upload-\(UUID().uuidString)"
        let paths = (0...self.maxInFlight).map {
            URL(fileURLWithPath: spoolDirectory).appendingPathComponent("\(name)-\($0)").path
        }
        spoolPaths = paths
        freeSlots = Array(1...self.maxInFlight)
        do {
            writers = try paths.map { try createPrivateFile($0) }
            readers = try paths.map { try RawFile(reading: $0) }
        } catch {
            for path in paths { unlink(path) }
            throw error
        }
    }

    func write(_ bytes: [UInt8]) throws {
        try checkFailure()
        var rest = bytes[...]
        while !rest.isEmpty {
            // A full part goes only once more bytes follow it: the last part is never empty, and an object
            // of exactly one part is one PUT.
            if filled == partSize { try submitPart() }
            let piece = rest.prefix(partSize - filled)
            try writers[slot].write(contentsOf: piece)
            hasher.update(data: piece)
            filled += piece.count
            rest = rest.dropFirst(piece.count)
        }
        size += Int64(bytes.count)
    }

    func finish() throws {
        try checkFailure()
        if nextPart == 1 {
            let body = filledRange()
            condition.withLock { objectMayExist = true }
            try awaitRequest { [store, key] in try await store.putObject(key: key, body: body) }
            condition.withLock { completed = true }
            removeSpools()
            return
        }
        if filled > 0 { try submitPart() }
        let (uploadId, parts): (String, [(number: Int, etag: String)]) = try condition.withLock {
            while !running.isEmpty && failure == nil { condition.wait() }
            if let failure { throw failure }
            guard let id = self.uploadId else { throw BackupError.io("internal: no multipart upload of \(key)") }
            return (id, etags.sorted { $0.key < $1.key }.map { (number: $0.key, etag: $0.value) })
        }
        guard parts.count == nextPart - 1 else {
            throw BackupError.io("internal: \(parts.count) parts of \(key) uploaded, \(nextPart - 1) sent")
        }
        removeSpools()
        condition.withLock { objectMayExist = true }
        try awaitRequest { [store, key] in
            try await store.completeMultipartUpload(key: key, uploadId: uploadId, parts: parts)
        }
        condition.withLock { completed = true }
    }

    /// Stops the upload from another thread: the writer's next call throws `CancellationError` and the parts
    /// in flight are cancelled. The owner still calls `abort()` once the writer has returned.
    func cancel() {
        condition.withLock {
            if failure == nil { failure = CancellationError() }
            for task in running.values { task.cancel() }
            request?.cancel()
            condition.broadcast()
        }
    }

    /// The object is described by a manifest now: `abort` (a signal arriving before the run returns) leaves
    /// it. Throws `CancellationError` once `abort` began (it deletes the object): the owner must then not
    /// record the backup. The two decide under one lock, so exactly one of them wins.
    func keep() throws {
        try condition.withLock {
            guard !aborting else { throw CancellationError() }
            kept = true
        }
    }

    /// After a failure, or from a signal handler while the writer still runs: waits for the (cancelled)
    /// parts in flight, aborts the multipart upload if one was started and not completed, deletes the object
    /// and its manifest if the object may exist and was not kept, and removes the spool files. Errors are
    /// swallowed; the run already failed.
    ///
    /// The delete is for a signal's clean-up: the process exits and the run's own (which deletes what it
    /// wrote) never runs. Before, a completion under way when SIGTERM came could store an object that no
    /// manifest described and nothing would ever delete. The single PUT or the completion, once sent, is
    /// not cancelled here but waited for (within the signal handler's few seconds): cancelled, S3 could
    /// still store the object after the delete. A run cancelled by its owner (`cancel()`) cancels it, and
    /// its delete follows the cancelled request's end.
    func abort() async {
        let (tasks, pending, uploadId, completed, mayExist, kept) = condition.withLock {
            aborting = true
            if failure == nil { failure = CancellationError() }
            for task in running.values { task.cancel() }
            if !objectMayExist { request?.cancel() }
            condition.broadcast()
            return (
                Array(running.values), request, self.uploadId, self.completed, objectMayExist, self.kept
            )
        }
        for task in tasks { await task.value }
        if mayExist, let pending { await pending.value }
        removeSpools()
        if let uploadId, !completed { try? await store.abortMultipartUpload(key: key, uploadId: uploadId) }
        if mayExist && !kept {
            // The manifest too: the owner may be writing it as the signal comes.
            for stored in [key, StoredObject.manifestName(key)] { try? await store.deleteObject(key: stored) }
        }
    }

    /// Runs one request from the writing thread and waits for it (`waitForTask`), where `cancel()` and
    /// `abort()` can cancel it; after a failure it is cancelled as it starts.
    private func awaitRequest<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        try checkFailure()
        defer { condition.withLock { request = nil } }
        return try waitForTask(body) { task in
            condition.withLock {
                request = task
                if failure != nil { task.cancel() }
            }
        }
    }

    private func checkFailure() throws {
        try condition.withLock {
            if let failure { throw failure }
        }
    }

    /// What the current slot holds, with its SHA-256.
    private func filledRange() -> FileRange {
        FileRange(
            path: spoolPaths[slot],
            offset: 0,
            count: filled,
            sha256: hexString(hasher.finalize()),
            file: readers[slot]
        )
    }

    /// Unlinks the spool files; their descriptors close with the sink (a signal handler's `abort` may run
    /// while the writer still writes to one).
    private func removeSpools() {
        for path in spoolPaths { unlink(path) }
    }

    /// Hands the filled spool file to an upload task, once fewer than `maxInFlight` are running, and goes on
    /// in a free one; the first part starts the multipart upload.
    private func submitPart() throws {
        guard nextPart <= Self.maximumParts else {
            throw BackupError.io(
                "the object \(key) needs more than \(Self.maximumParts) parts of \(partSize >> 20) MiB: raise partSizeMiB"
            )
        }
        var uploadId = condition.withLock { self.uploadId }
        if uploadId == nil {
            let created = try awaitRequest { [store, key] in try await store.createMultipartUpload(key: key) }
            let failed = condition.withLock { () -> (any Error)? in
                self.uploadId = created
                return failure
            }
            if let failed {
                // Cancelled while it was being created: `abort()` may have found no upload to abort.
                _ = try? waitForTask { [store, key] in
                    try await store.abortMultipartUpload(key: key, uploadId: created)
                }
                throw failed
            }
            uploadId = created
        }
        guard let uploadId else { return }
        let part = filledRange()
        let (number, uploading) = (nextPart, slot)
        nextPart += 1
        slot = try condition.withLock {
            while running.count >= maxInFlight && failure == nil { condition.wait() }
            if let failure { throw failure }
            // The task reports under this lock, so it finds itself in `running`.
            running[number] = Task { [store, key] in
                let result: Result<String, any Error>
                do {
                    result = .success(
                        try await store.uploadPart(key: key, uploadId: uploadId, number: number, body: part)
                    )
                } catch {
                    result = .failure(error)
                }
                self.partFinished(number, slot: uploading, result)
            }
            // Slots: one per upload running, one filling; a finished upload frees its own.
            guard !freeSlots.isEmpty else { throw BackupError.io("internal: no free spool file for \(key)") }
            return freeSlots.removeFirst()
        }
        try writers[slot].truncate(atOffset: 0)
        filled = 0
        hasher = SHA256()
    }

    private func partFinished(_ number: Int, slot: Int, _ result: Result<String, any Error>) {
        condition.withLock {
            running[number] = nil
            freeSlots.append(slot)
            switch result {
            case .success(let etag): etags[number] = etag
            case .failure(let error): if failure == nil { failure = error }
            }
            condition.broadcast()
        }
    }
}

/// Runs async work from a thread that may block (a pipeline's, never the Swift concurrency pool's) and
/// waits for its result; `started` gets the task first (to cancel it from elsewhere).
func waitForTask<T: Sendable>(
    _ body: @escaping @Sendable () async throws -> T,
    started: (Task<Void, Never>) -> Void = { _ in }
) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    let task = Task {
        do {
            box.set(.success(try await body()))
        } catch {
            box.set(.failure(error))
        }
        done.signal()
    }
    started(task)
    done.wait()
    return try box.get()
}

private final class ResultBox<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<T, any Error>?

    func set(_ value: Result<T, any Error>) {
        lock.withLock { result = value }
    }

    func get() throws -> T {
        guard let result = lock.withLock({ result }) else { throw BackupError.io("internal: no result") }
        return try result.get()
    }
}

/// The S3 uploads under way in this process, so a signal handler can abort them before the process exits
/// (`abortAll`), where the run's own clean-up would not run; a `kill -9`ed run's uploads are aborted by the
/// next run of its job.
public enum InFlightUploads {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var uploads: [ObjectIdentifier: MultipartUploadSink] = [:]

    static func add(_ upload: MultipartUploadSink) {
        lock.withLock { uploads[ObjectIdentifier(upload)] = upload }
    }

    static func remove(_ upload: MultipartUploadSink) {
        lock.withLock { uploads[ObjectIdentifier(upload)] = nil }
    }

    /// Aborts every upload under way, waiting at most `timeout` for S3 to answer; for a signal handler that
    /// is about to exit. Blocking: never call it on the Swift concurrency pool.
    public static func abortAll(timeout: Duration = .seconds(5)) {
        let all = lock.withLock { Array(uploads.values) }
        guard !all.isEmpty else { return }
        let done = DispatchSemaphore(value: 0)
        Task {
            await withTaskGroup(of: Void.self) { group in
                for upload in all { group.addTask { await upload.abort() } }
            }
            done.signal()
        }
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        _ = done.wait(timeout: .now() + seconds)
    }
}
