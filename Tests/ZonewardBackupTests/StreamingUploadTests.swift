import Crypto
import Foundation
import Testing
import ZonewardModel

@testable import ZonewardBackup

/// An in-process S3: records every call, holds the parts of open uploads, and fails a chosen part.
final class FakeMultipartStore: MultipartStore, @unchecked Sendable {
    private let lock = NSLock()
    private var open: [String: [Int: Data]] = [:]
    private(set) var objects: [String: Data] = [:]
    private(set) var calls: [String] = []
    private(set) var aborted: [String] = []
    private(set) var partSizes: [Int] = []
    private var inFlight = 0
    private(set) var mostInFlight = 0
    /// The part number whose upload fails.
    var failingPart: Int?
    /// How long each part takes, so uploads overlap.
    var partDelay: Duration = .milliseconds(5)

    var openUploads: Int { lock.withLock { open.count } }

    func putObject(key: String, body: Data) async throws {
        lock.withLock {
            calls.append("PUT \(key)")
            objects[key] = body
        }
    }

    func createMultipartUpload(key: String) async throws -> String {
        lock.withLock {
            let id = "upload-\(calls.count)"
            calls.append("CREATE \(key)")
            open[id] = [:]
            return id
        }
    }

    func uploadPart(key: String, uploadId: String, number: Int, body: Data) async throws -> String {
        lock.withLock {
            inFlight += 1
            mostInFlight = max(mostInFlight, inFlight)
        }
        defer { lock.withLock { inFlight -= 1 } }
        try await Task.sleep(for: partDelay)
        return try lock.withLock {
            if number == failingPart { throw BackupError.io("S3 PUT part \(number) failed") }
            guard open[uploadId] != nil else { throw BackupError.io("no upload \(uploadId)") }
            open[uploadId]?[number] = body
            partSizes.append(body.count)
            calls.append("PART \(number)")
            return "\"etag-\(number)\""
        }
    }

    func completeMultipartUpload(key: String, uploadId: String, parts: [(number: Int, etag: String)]) async throws {
        try lock.withLock {
            guard let stored = open.removeValue(forKey: uploadId) else { throw BackupError.io("no upload \(uploadId)") }
            guard parts.map(\.number) == Array(1...parts.count),
                parts.allSatisfy({ $0.etag == "\"etag-\($0.number)\"" })
            else { throw BackupError.io("bad part list") }
            objects[key] = parts.reduce(into: Data()) { whole, part in whole += stored[part.number] ?? Data() }
            calls.append("COMPLETE \(key)")
        }
    }

    func abortMultipartUpload(key: String, uploadId: String) async throws {
        lock.withLock {
            open[uploadId] = nil
            aborted.append(uploadId)
            calls.append("ABORT \(key)")
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
        let upload = MultipartUploadSink(store: store, key: "app/x.zwb", partSize: partSize)
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
        let upload = MultipartUploadSink(store: store, key: "k", partSize: 10)
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
        let upload = MultipartUploadSink(store: store, key: "app/x.zwb", partSize: 50_000)
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
        let upload = MultipartUploadSink(store: store, key: "k", partSize: 10)
        try await onThread("test-write") { try upload.write(Array(repeating: 1, count: 25)) }
        upload.cancel()
        // The checks come first: neither blocks.
        #expect(throws: CancellationError.self) { try upload.write([1]) }
        #expect(throws: CancellationError.self) { try upload.finish() }
        await upload.abort()
        #expect(store.openUploads == 0 && store.aborted.count == 1 && store.objects.isEmpty)
    }

    @Test func abortAfterASinglePutOrACompletedUploadAbortsNothing() async throws {
        let store = FakeMultipartStore()
        let upload = MultipartUploadSink(store: store, key: "k", partSize: 10)
        try await onThread("test-write") {
            try upload.write(Array(repeating: 1, count: 25))
            try upload.finish()
        }
        await upload.abort()
        #expect(store.aborted.isEmpty && store.objects["k"]?.count == 25)
    }

    @Test func aStoredObjectDecodesFromRangedReadsOfAnyRangeSize() async throws {
        let store = FakeMultipartStore()
        let (result, _) = try await encode(store, sourceSize: 700_000, partSize: 100_000)
        let object = try #require(store.objects["app/x.zwb"])
        for rangeSize in [1000, 4097, 65_536 + 21, 1 << 20] {
            let requested = RangeLog()
            let reader = RangedObjectReader(size: object.count, rangeSize: rangeSize) { range in
                requested.add(range)
                return object.subdata(in: range)
            }
            let (output, key) = (path("restored"), key)
            let decoded = try await onThread("test-decode") {
                try BackupPipeline.decode(from: reader, to: output, key: key, expectedSHA256: result.sha256)
            }
            #expect(decoded.sha256 == result.sha256)
            #expect(
                try Data(contentsOf: URL(fileURLWithPath: path("restored")))
                    == Data(contentsOf: URL(fileURLWithPath: path("source")))
            )
            #expect(requested.total == object.count)
            if rangeSize == 1 << 20 { #expect(requested.count == 1) }
        }
    }

    @Test func aFailedRangeFailsTheDecodeAndWritesNothing() async throws {
        let store = FakeMultipartStore()
        let (result, _) = try await encode(store, sourceSize: 700_000, partSize: 100_000)
        let object = try #require(store.objects["app/x.zwb"])
        let reader = RangedObjectReader(size: object.count, rangeSize: 100_000) { range in
            if range.lowerBound >= 300_000 { throw BackupError.io("S3 GET range failed") }
            return object.subdata(in: range)
        }
        defer { reader.cancel() }
        let (output, key) = (path("restored"), key)
        await #expect(throws: BackupError.io("S3 GET range failed")) {
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

/// The ranges a reader asked for.
final class RangeLog: @unchecked Sendable {
    private let lock = NSLock()
    private var ranges: [Range<Int>] = []

    func add(_ range: Range<Int>) { lock.withLock { ranges.append(range) } }
    var total: Int { lock.withLock { ranges.reduce(0) { $0 + $1.count } } }
    var count: Int { lock.withLock { ranges.count } }
}
