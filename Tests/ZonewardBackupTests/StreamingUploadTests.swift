import Crypto
import Foundation
import NIOCore
import Testing
import ZonewardModel

@testable import ZonewardBackup

/// An in-process S3: records every call, holds the parts of open uploads, and fails a chosen part.
final class FakeMultipartStore: MultipartStore, @unchecked Sendable {
    private let lock = NSLock()
    private var open: [String: [Int: Data]] = [:]
    private var _objects: [String: Data] = [:]
    private var _calls: [String] = []
    private var _aborted: [String] = []
    private var _partSizes: [Int] = []
    private var inFlight = 0
    private var _mostInFlight = 0
    /// The part number whose upload fails.
    var failingPart: Int?
    /// How long each part takes, so uploads overlap.
    var partDelay: Duration = .milliseconds(5)
    /// How long a single PUT takes (an S3 that stalls); it honours cancellation.
    var putDelay: Duration = .zero
    /// The completion stores the object, then its answer never comes (until cancelled): a completion
    /// S3 carried out whose answer is lost.
    var completionStalls = false
    /// The single PUTs that were cancelled while they stalled.
    private var _cancelledPuts = 0
    private var _startedPuts = 0
    private var _completionsStarted = 0
    /// The completion is carried out by S3 this long after it was sent, whether or not the client is still
    /// waiting for its answer (a cancelled request does not stop it); the request waits for it.
    var completionCommitsAfter: Duration?

    var openUploads: Int { lock.withLock { open.count } }
    // Read through the lock: the upload's tasks write them while a test polls.
    var objects: [String: Data] { lock.withLock { _objects } }
    var calls: [String] { lock.withLock { _calls } }
    var aborted: [String] { lock.withLock { _aborted } }
    var partSizes: [Int] { lock.withLock { _partSizes } }
    var mostInFlight: Int { lock.withLock { _mostInFlight } }
    var cancelledPuts: Int { lock.withLock { _cancelledPuts } }
    var startedPuts: Int { lock.withLock { _startedPuts } }
    var completionsStarted: Int { lock.withLock { _completionsStarted } }

    func putObject(key: String, body: FileRange) async throws {
        lock.withLock { _startedPuts += 1 }
        if putDelay > .zero {
            do {
                try await Task.sleep(for: putDelay)
            } catch {
                lock.withLock { _cancelledPuts += 1 }
                throw error
            }
        }
        let bytes = try body.read()
        try check(body, bytes)
        lock.withLock {
            _calls.append("PUT \(key)")
            _objects[key] = bytes
        }
    }

    /// What S3 checks: the payload's SHA-256 is the one signed.
    private func check(_ body: FileRange, _ bytes: Data) throws {
        guard hexString(SHA256.hash(data: bytes)) == body.sha256, bytes.count == body.count else {
            throw BackupError.io("XAmzContentSHA256Mismatch")
        }
    }

    func createMultipartUpload(key: String) async throws -> String {
        lock.withLock {
            let id = "upload-\(_calls.count)"
            _calls.append("CREATE \(key)")
            open[id] = [:]
            return id
        }
    }

    func uploadPart(key: String, uploadId: String, number: Int, body range: FileRange) async throws -> String {
        lock.withLock {
            inFlight += 1
            _mostInFlight = max(_mostInFlight, inFlight)
        }
        defer { lock.withLock { inFlight -= 1 } }
        try await Task.sleep(for: partDelay)
        // Read as S3 would, once the upload is under way: the sink must not touch the part's file meanwhile
        // (it fills the next part in another file), and the SHA-256 it signed must be the bytes'.
        let body = try range.read()
        try check(range, body)
        return try lock.withLock {
            if number == failingPart { throw BackupError.io("S3 PUT part \(number) failed") }
            guard open[uploadId] != nil else { throw BackupError.io("no upload \(uploadId)") }
            open[uploadId]?[number] = body
            _partSizes.append(body.count)
            _calls.append("PART \(number)")
            return "\"etag-\(number)\""
        }
    }

    func completeMultipartUpload(key: String, uploadId: String, parts: [(number: Int, etag: String)]) async throws {
        let object: Data = try lock.withLock {
            guard let stored = open.removeValue(forKey: uploadId) else { throw BackupError.io("no upload \(uploadId)") }
            guard parts.map(\.number) == Array(1...parts.count),
                parts.allSatisfy({ $0.etag == "\"etag-\($0.number)\"" })
            else { throw BackupError.io("bad part list") }
            _completionsStarted += 1
            return parts.reduce(into: Data()) { whole, part in whole += stored[part.number] ?? Data() }
        }
        let commit = { [self] in
            lock.withLock {
                _objects[key] = object
                _calls.append("COMPLETE \(key)")
            }
        }
        if let delay = completionCommitsAfter {
            // S3's side goes on whatever the client does; the request returns when it is done, or at once
            // when cancelled.
            Task {
                try? await Task.sleep(for: delay)
                commit()
            }
            while !lock.withLock({ _calls.contains("COMPLETE \(key)") }) {
                try Task.checkCancellation()
                try? await Task.sleep(for: .milliseconds(5))
            }
        } else {
            commit()
        }
        if completionStalls { try await Task.sleep(for: .seconds(3600)) }
    }

    func deleteObject(key: String) async throws {
        lock.withLock {
            _objects[key] = nil
            _calls.append("DELETE \(key)")
        }
    }

    func abortMultipartUpload(key: String, uploadId: String) async throws {
        lock.withLock {
            open[uploadId] = nil
            _aborted.append(uploadId)
            _calls.append("ABORT \(key)")
        }
    }
}

@Suite struct StreamingUploadTests {
    let directory: URL
    let key = BackupKey(bytes: (0..<32).map { UInt8($0) })

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("zoneward-stream-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// `size` random bytes: they do not compress, so the stored object is a little larger.
    func makeSource(_ size: Int) throws -> String {
        try Data((0..<size).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: path("source")))
        return path("source")
    }

    /// Encodes into a file and a streamed upload at once, in 64 KiB chunks, on a thread of its own (a sink
    /// blocks its thread while it waits for S3, which must not be one of the Swift concurrency pool's).
    func encode(
        _ store: FakeMultipartStore,
        sourceSize: Int,
        partSize: Int
    ) async throws -> (PipelineResult, MultipartUploadSink) {
        let upload = try MultipartUploadSink(
            store: store,
            key: "app/x.zwb",
            partSize: partSize,
            spoolDirectory: directory.path
        )
        let fanOut = FanOutSink([try FileObjectSink(path: path("stored")), upload])
        let source = try makeSource(sourceSize)
        let key = key
        let result = try await onThread("test-encode") {
            try BackupPipeline.encode(from: source, into: fanOut, key: key, chunkSize: 64 << 10)
        }
        return (result, upload)
    }

    @Test func theObjectIsUploadedInPartsWhileItIsEncodedAndMatchesTheFileAndChecksum() async throws {
        let store = FakeMultipartStore()
        let partSize = 100_000
        let (result, upload) = try await encode(store, sourceSize: 1 << 20, partSize: partSize)
        let file = try Data(contentsOf: URL(fileURLWithPath: path("stored")))
        let uploaded = try #require(store.objects["app/x.zwb"])
        #expect(uploaded == file)
        #expect(hexString(SHA256.hash(data: uploaded)) == result.sha256)
        #expect(Int64(uploaded.count) == result.storedBytes && upload.size == result.storedBytes)
        // Every part but the last is exactly the part size; the last holds the rest, and is not empty.
        let parts = (file.count + partSize - 1) / partSize
        #expect(store.partSizes.count == parts)
        #expect(store.partSizes.filter { $0 == partSize }.count == parts - 1)
        #expect(store.calls.first == "CREATE app/x.zwb" && store.calls.last == "COMPLETE app/x.zwb")
        #expect(!store.calls.contains { $0.hasPrefix("PUT") })
        // Bounded: never more than two parts uploading at once.
        #expect((1...2).contains(store.mostInFlight), "\(store.mostInFlight)")
        #expect(store.openUploads == 0)
    }

    @Test func anObjectNoLargerThanOnePartIsOnePut() async throws {
        let store = FakeMultipartStore()
        let (result, _) = try await encode(store, sourceSize: 200_000, partSize: 4 << 20)
        #expect(store.calls == ["PUT app/x.zwb"])
        #expect(store.objects["app/x.zwb"].map { hexString(SHA256.hash(data: $0)) } == result.sha256)
    }

    @Test(arguments: [(10, ["PUT k"], [Int]()), (11, ["CREATE k", "PART 1", "PART 2", "COMPLETE k"], [10, 1])])
    func exactlyOnePartIsOnePutOneByteMoreIsTwoParts(size: Int, calls: [String], parts: [Int]) async throws {
        let store = FakeMultipartStore()
        let upload = try MultipartUploadSink(store: store, key: "k", partSize: 10, spoolDirectory: directory.path)
        let bytes = (0..<size).map { UInt8($0) }
        try await onThread("test-write") {
            try upload.write(Array(bytes[..<3]))
            try upload.write(Array(bytes[3...]))
            try upload.finish()
        }
        #expect(store.calls.filter { !$0.hasPrefix("PART") } == calls.filter { !$0.hasPrefix("PART") })
        #expect(store.partSizes.sorted(by: >) == parts)
        #expect(store.objects["k"] == Data(bytes))
    }

    @Test func aFailedPartFailsTheEncodingAndAbortLeavesNoOpenUpload() async throws {
        let store = FakeMultipartStore()
        store.failingPart = 3
        var thrown: (any Error)?
        let upload = try MultipartUploadSink(
            store: store,
            key: "app/x.zwb",
            partSize: 50_000,
            spoolDirectory: directory.path
        )
        let source = try makeSource(1 << 20)
        let key = key
        do {
            try await onThread("test-encode") {
                try BackupPipeline.encode(from: source, into: FanOutSink([upload]), key: key, chunkSize: 64 << 10)
            }
        } catch {
            thrown = error
        }
        #expect("\(thrown.map { "\($0)" } ?? "no error")".contains("S3 PUT part 3 failed"))
        #expect(store.openUploads == 1)
        await upload.abort()
        #expect(store.openUploads == 0)
        #expect(store.aborted.count == 1)
        #expect(store.objects.isEmpty)
        #expect(store.calls.last == "ABORT app/x.zwb")
    }

    @Test func cancellingStopsTheWriterAndAbortsTheUpload() async throws {
        let store = FakeMultipartStore()
        let upload = try MultipartUploadSink(store: store, key: "k", partSize: 10, spoolDirectory: directory.path)
        try await onThread("test-write") { try upload.write(Array(repeating: 1, count: 25)) }
        upload.cancel()
        // The checks come first: neither blocks.
        #expect(throws: CancellationError.self) { try upload.write([1]) }
        #expect(throws: CancellationError.self) { try upload.finish() }
        await upload.abort()
        #expect(store.openUploads == 0 && store.aborted.count == 1 && store.objects.isEmpty)
    }

    /// A cancelled run does not wait out the single PUT (or create, or complete) it is blocked in: the
    /// request is cancelled with the parts. The PUT stalls for an hour; what shows the cancellation is the
    /// store seeing its PUT cancelled, not a wall-clock bound, which a busy 2-core machine running every
    /// suite at once broke once (12.5 s against 10). The time limit only stops a hang.
    @Test(.timeLimit(.minutes(2))) func cancellingEndsASinglePutInFlight() async throws {
        let store = FakeMultipartStore()
        store.putDelay = .seconds(3600)
        let upload = try MultipartUploadSink(store: store, key: "k", partSize: 10, spoolDirectory: directory.path)
        let finished = Task {
            try await onThread("test-finish") {
                try upload.write([1, 2, 3])
                try upload.finish()
            }
        }
        // Cancelled once the PUT is under way (on a busy pool the writer may take a while to get there).
        for _ in 0..<1000 where store.startedPuts == 0 { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(50))
        upload.cancel()
        await #expect(throws: CancellationError.self) { try await finished.value }
        #expect(store.cancelledPuts == 1)
        await upload.abort()
        #expect(store.objects.isEmpty)
    }

    /// Once the owner kept the object (its manifest is written), `abort` (a signal before the run returns)
    /// aborts and deletes nothing.
    @Test(arguments: [25, 5]) func abortAfterAKeptObjectDoesNothing(size: Int) async throws {
        let store = FakeMultipartStore()
        let upload = try await finishedUpload(store, size: size)
        try upload.keep()
        await upload.abort()
        #expect(store.aborted.isEmpty && store.objects["k"]?.count == size)
        #expect(!store.calls.contains { $0.hasPrefix("DELETE") })
    }

    /// A stored object no manifest describes yet is deleted by `abort`, with the manifest that may be on its
    /// way: after a signal nothing else would delete them.
    @Test(arguments: [25, 5]) func abortBeforeTheObjectIsKeptDeletesIt(size: Int) async throws {
        let store = FakeMultipartStore()
        let upload = try await finishedUpload(store, key: "j/k.zwb", size: size)
        await upload.abort()
        #expect(store.objects.isEmpty)
        #expect(store.calls.suffix(2) == ["DELETE j/k.zwb", "DELETE j/k.json"])
    }

    /// Once `abort` began, the object is no longer the owner's to keep: `keep` throws and the run fails
    /// instead of recording a backup the abort deletes (a signal during the manifest's upload).
    @Test func keepAfterAbortBeganThrows() async throws {
        let store = FakeMultipartStore()
        let upload = try await finishedUpload(store, size: 25)
        await upload.abort()
        #expect(throws: CancellationError.self) { try upload.keep() }
        #expect(store.objects.isEmpty)
    }

    /// A signal's `abort` during the completion waits for it, then deletes: cancelled instead, the
    /// completion S3 goes on with would store the object after the delete. Before, the object appeared
    /// once the abort had returned.
    @Test(.timeLimit(.minutes(2))) func anAbortDuringTheCompletionWaitsForItThenDeletes() async throws {
        let store = FakeMultipartStore()
        store.completionCommitsAfter = .milliseconds(300)
        let upload = try MultipartUploadSink(store: store, key: "k", partSize: 10, spoolDirectory: directory.path)
        let finished = Task {
            try await onThread("test-finish") {
                try upload.write(Array(repeating: 1, count: 25))
                try upload.finish()
            }
        }
        for _ in 0..<1000 where store.completionsStarted == 0 { try await Task.sleep(for: .milliseconds(10)) }
        await upload.abort()
        _ = try? await finished.value
        // Past the commit, had it been left running on its own.
        try await Task.sleep(for: .milliseconds(500))
        #expect(store.objects.isEmpty)
        let calls = store.calls
        #expect(calls.firstIndex(of: "COMPLETE k").map { $0 < (calls.firstIndex(of: "DELETE k") ?? -1) } == true)
    }

    /// Before: SIGTERM during the completion cancelled it after S3 had stored the object; the abort found no
    /// upload to abort, and the object stayed in the bucket with no manifest, for good.
    @Test(.timeLimit(.minutes(2))) func aCompletionCancelledAfterS3StoredTheObjectLeavesNoObject() async throws {
        let store = FakeMultipartStore()
        store.completionStalls = true
        let upload = try MultipartUploadSink(store: store, key: "k", partSize: 10, spoolDirectory: directory.path)
        let finished = Task {
            try await onThread("test-finish") {
                try upload.write(Array(repeating: 1, count: 25))
                try upload.finish()
            }
        }
        for _ in 0..<1000 where !store.calls.contains("COMPLETE k") { try await Task.sleep(for: .milliseconds(10)) }
        #expect(store.objects["k"] != nil)
        upload.cancel()
        await #expect(throws: CancellationError.self) { try await finished.value }
        await upload.abort()
        #expect(store.objects.isEmpty)
        #expect(store.calls.contains("DELETE k"))
    }

    /// A sink (10-byte parts) that wrote `size` bytes of ones as `key` and finished: one PUT up to 10
    /// bytes, a completed multipart upload above.
    func finishedUpload(_ store: FakeMultipartStore, key: String = "k", size: Int) async throws -> MultipartUploadSink {
        let upload = try MultipartUploadSink(store: store, key: key, partSize: 10, spoolDirectory: directory.path)
        try await onThread("test-write") {
            try upload.write(Array(repeating: 1, count: size))
            try upload.finish()
        }
        return upload
    }

    /// The spool files the upload sinks left in the test's directory.
    func spoolFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("upload-") }
    }

    @Test func partsAreSpooledToTwoFilesInTurnAndRemovedOnceTheUploadCompletes() async throws {
        let store = FakeMultipartStore()
        let (_, upload) = try await encode(store, sourceSize: 1 << 20, partSize: 100_000)
        #expect(upload.spoolPaths.count == 2)
        #expect(store.partSizes.count > 2)
        #expect(try spoolFiles().isEmpty)
    }

    @Test func abortRemovesTheSpoolFiles() async throws {
        let store = FakeMultipartStore()
        let upload = try MultipartUploadSink(store: store, key: "k", partSize: 10, spoolDirectory: directory.path)
        try await onThread("test-write") { try upload.write(Array(repeating: 1, count: 25)) }
        #expect(try !spoolFiles().isEmpty)
        upload.cancel()
        await upload.abort()
        #expect(try spoolFiles().isEmpty)
    }

    @Test func partsStillUploadOnceTheSpoolFilesAreUnlinked() async throws {
        // A signal removes the staging directory first, then aborts the upload: until then, parts go on.
        let store = FakeMultipartStore()
        let upload = try MultipartUploadSink(store: store, key: "k", partSize: 10, spoolDirectory: directory.path)
        let bytes = (0..<45).map { UInt8($0) }
        try await onThread("test-write") { try upload.write(Array(bytes[..<15])) }
        for name in try spoolFiles() { try FileManager.default.removeItem(at: directory.appendingPathComponent(name)) }
        try await onThread("test-write") {
            try upload.write(Array(bytes[15...]))
            try upload.finish()
        }
        #expect(store.objects["k"] == Data(bytes))
    }

    /// A download that hands out `object` from `offset` in pieces of `pieceSize`, logging where each began,
    /// and breaks off (a network error) after `breakAfter` bytes of its first attempt when given.
    func download(
        _ object: Data,
        pieceSize: Int,
        log: DownloadLog,
        breakAfter: Int? = nil
    ) -> StreamedObjectReader.Download {
        { offset, deliver in
            let attempt = log.start(offset)
            var position = offset
            while position < object.count {
                if attempt == 0, let breakAfter, position - offset >= breakAfter {
                    throw ConnectionLost()
                }
                let end = min(object.count, position + pieceSize)
                try await deliver(ByteBuffer(bytes: object[position..<end]))
                log.delivered(end - position)
                position = end
            }
        }
    }

    @Test func aStoredObjectDecodesFromOneStreamedDownloadOfAnyPieceSize() async throws {
        let store = FakeMultipartStore()
        let (result, _) = try await encode(store, sourceSize: 700_000, partSize: 100_000)
        let object = try #require(store.objects["app/x.zwb"])
        for pieceSize in [1000, 4097, 65_536 + 21, 1 << 20] {
            let log = DownloadLog()
            let reader = StreamedObjectReader(
                size: object.count,
                name: "x",
                bufferLimit: 50_000,
                download: download(object, pieceSize: pieceSize, log: log)
            )
            defer { reader.cancel() }
            let (output, key) = (path("restored"), key)
            let decoded = try await onThread("test-decode") {
                try BackupPipeline.decode(from: reader, to: output, key: key, expectedSHA256: result.sha256)
            }
            #expect(decoded.sha256 == result.sha256)
            #expect(
                try Data(contentsOf: URL(fileURLWithPath: path("restored")))
                    == Data(contentsOf: URL(fileURLWithPath: path("source")))
            )
            // One request for the whole object.
            #expect(log.offsets == [0])
            #expect(log.total == object.count)
        }
    }

    @Test func theDownloadWaitsWhileTheReaderIsBehind() async throws {
        let object = Data((0..<1_000_000).map { UInt8(truncatingIfNeeded: $0) })
        let log = DownloadLog()
        let reader = StreamedObjectReader(
            size: object.count,
            name: "x",
            bufferLimit: 100_000,
            download: download(object, pieceSize: 10_000, log: log)
        )
        defer { reader.cancel() }
        let first = try await onThread("test-read") { try reader.read(upTo: 10) }
        #expect(first == Array(object[0..<10]))
        try await Task.sleep(for: .milliseconds(200))
        // Queued: at most the limit, and the piece that reached it; the one after that waits.
        #expect(log.total <= 100_000 + 2 * 10_000, "\(log.total)")
        let rest = try await onThread("test-read") { try reader.read(upTo: 2_000_000) }
        #expect(first + rest == Array(object))
        #expect(try await onThread("test-read") { try reader.read(upTo: 10) }.isEmpty)
    }

    @Test func aDownloadThatBreaksOffResumesFromTheByteReached() async throws {
        let object = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 * 7) })
        let log = DownloadLog()
        let reader = StreamedObjectReader(
            size: object.count,
            name: "x",
            retryDelay: .zero,
            download: download(object, pieceSize: 30_000, log: log, breakAfter: 120_000)
        )
        defer { reader.cancel() }
        let bytes = try await onThread("test-read") { try reader.read(upTo: 400_000) }
        #expect(bytes == Array(object))
        #expect(log.offsets == [0, 120_000])
    }

    /// A connection that fails after the last byte arrived leaves nothing to resume: the read succeeds
    /// (a Range from the end would be refused).
    @Test func aDownloadThatFailsAfterItsLastByteIsWhole() async throws {
        let object = Data((0..<50_000).map { UInt8(truncatingIfNeeded: $0) })
        let log = DownloadLog()
        let reader = StreamedObjectReader(size: object.count, name: "x", retryDelay: .zero) { offset, deliver in
            guard log.start(offset) == 0 else { throw BackupError.io("416: the range is past the end") }
            try await deliver(ByteBuffer(bytes: object))
            throw ConnectionLost()
        }
        defer { reader.cancel() }
        let bytes = try await onThread("test-read") { try reader.read(upTo: 60_000) }
        #expect(bytes == Array(object))
    }

    @Test func aRefusedOrWrongDownloadFailsAtOnceAndARepeatedBreakFailsAfterTheAttempts() async throws {
        let log = DownloadLog()
        let refused = StreamedObjectReader(size: 100, name: "s3://b/k", retryDelay: .zero) { offset, _ in
            _ = log.start(offset)
            throw S3Client.S3Error.status(412, "PreconditionFailed")
        }
        defer { refused.cancel() }
        await #expect(throws: S3Client.S3Error.self) { try await onThread("test-read") { try refused.read(upTo: 10) } }
        #expect(log.offsets == [0])
        let tooLong = StreamedObjectReader(size: 5, name: "s3://b/k") { _, deliver in
            try await deliver(ByteBuffer(bytes: [1, 2, 3, 4, 5, 6]))
        }
        defer { tooLong.cancel() }
        await #expect(throws: BackupError.io("s3://b/k sent more than its 5 bytes")) {
            try await onThread("test-read") { try tooLong.read(upTo: 10) }
        }
        let breaking = DownloadLog()
        let broken = StreamedObjectReader(size: 100, name: "s3://b/k", attempts: 3, retryDelay: .zero) { offset, _ in
            _ = breaking.start(offset)
            throw ConnectionLost()
        }
        defer { broken.cancel() }
        do {
            _ = try await onThread("test-read") { try broken.read(upTo: 10) }
            Issue.record("a download that always breaks was read")
        } catch {
            #expect("\(error)".contains("the download of s3://b/k failed 3 times at byte 0"), "\(error)")
        }
        #expect(breaking.offsets == [0, 0, 0])
    }

    @Test func cancellingEndsABlockedReadAndTheDownloadAtOnce() async throws {
        let ended = DownloadLog()
        let reader = StreamedObjectReader(size: 1 << 30, name: "x", bufferLimit: 1000) { offset, deliver in
            _ = ended.start(offset)
            defer { ended.end() }
            // Endless: only cancellation stops it.
            while true { try await deliver(ByteBuffer(repeating: 1, count: 500)) }
        }
        let reading = Task {
            try await onThread("test-read") {
                while true { _ = try reader.read(upTo: 100) }
            }
        }
        // Cancelled once the download runs (on a busy pool that may take a while).
        for _ in 0..<500 where ended.offsets.isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(20))
        reader.cancel()
        await #expect(throws: CancellationError.self) { try await reading.value }
        for _ in 0..<1000 where ended.ends == 0 { try await Task.sleep(for: .milliseconds(10)) }
        // The download is endless, so its end is the cancellation reaching it. No wall-clock bound: with
        // every suite running at once on 2 cores, a task can wait seconds for a thread.
        #expect(ended.offsets == [0] && ended.ends == 1)
    }

    @Test func aFailedDownloadFailsTheDecodeAndWritesNothing() async throws {
        let store = FakeMultipartStore()
        let (result, _) = try await encode(store, sourceSize: 700_000, partSize: 100_000)
        let object = try #require(store.objects["app/x.zwb"])
        let reader = StreamedObjectReader(size: object.count, name: "x") { _, deliver in
            try await deliver(ByteBuffer(bytes: object[0..<300_000]))
            throw BackupError.io("S3 GET failed")
        }
        defer { reader.cancel() }
        let (output, key) = (path("restored"), key)
        await #expect(throws: BackupError.io("S3 GET failed")) {
            try await onThread("test-decode") {
                try BackupPipeline.decode(from: reader, to: output, key: key, expectedSHA256: result.sha256)
            }
        }
        #expect(!FileManager.default.fileExists(atPath: path("restored")))
    }

    @Test(arguments: [
        ("4", "must be ≥ 5, got 4"), ("5121", "must be ≤ 5120, got 5121"), ("big", "expected a whole number"),
    ])
    func aPartSizeOutsideS3sLimitsIsRefusedNamingTheField(value: String, message: String) {
        do {
            _ = try ZonewardConfiguration.parse(yaml: s3Job("partSizeMiB: \(value)"))
            Issue.record("accepted partSizeMiB: \(value)")
        } catch {
            #expect(
                error.problems.contains {
                    $0.description.hasPrefix("backups[0].targets[0].s3.partSizeMiB: \(message)")
                },
                "\(error.problems)"
            )
        }
    }

    @Test func aPartSizeInMebibytesIsRead() throws {
        let job = try ZonewardConfiguration.parse(yaml: s3Job("partSizeMiB: 5")).backups.first
        guard case .s3(let target) = job?.targets.first else {
            Issue.record("no S3 target")
            return
        }
        #expect(target.partSize == 5 << 20)
        let plain = try ZonewardConfiguration.parse(yaml: s3Job(nil)).backups.first
        guard case .s3(let defaulted) = plain?.targets.first else { return }
        #expect(defaulted.partSize == nil)
    }

    func s3Job(_ option: String?) -> String {
        """
        zones: [{name: z1, region: r1}]
        backups:
          - name: app
            source: {sqlite: /var/lib/app.db}
            schedule: "17 * * * *"
            targets: [{s3: {endpoint: "http://127.0.0.1:9", bucket: b, region: r\(option.map { ", \($0)" } ?? "")}}]
            encryption: {keyFile: /etc/zoneward/backup.key}
        """
    }
}

/// Where each attempt of a download began, and the bytes it delivered.
final class DownloadLog: @unchecked Sendable {
    private let lock = NSLock()
    private var starts: [Int] = []
    private var bytes = 0
    private var finished = 0

    /// Logs an attempt from `offset`; its number, from 0.
    func start(_ offset: Int) -> Int {
        lock.withLock {
            starts.append(offset)
            return starts.count - 1
        }
    }

    func delivered(_ count: Int) {
        lock.withLock { bytes += count }
    }

    /// An attempt returned or threw.
    func end() {
        lock.withLock { finished += 1 }
    }

    var offsets: [Int] { lock.withLock { starts } }
    var total: Int { lock.withLock { bytes } }
    var ends: Int { lock.withLock { finished } }
}

/// A network error, as a connection that breaks off gives.
struct ConnectionLost: Error {}
