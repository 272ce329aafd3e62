import Foundation
import Testing

@testable import ZonewardBackup

@Suite struct WritebackFileTests {
    /// 20 MiB in uneven pieces (writeback started twice on the way) reads back byte for byte, mode 0600.
    @Test func whatIsWrittenReadsBackAndTheFileIsPrivate() throws {
        #if os(Linux)
        #expect(WritebackFile.startsWriteback)
        #endif
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("writeback-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("out.bin").path
        let file = try WritebackFile(creating: path)
        var expected: [UInt8] = []
        var generator = SystemRandomNumberGenerator()
        while expected.count < 20 << 20 {
            let piece = (0..<Int.random(in: 1...(3 << 20), using: &generator)).map { UInt8(truncatingIfNeeded: $0) }
            try file.write(contentsOf: piece)
            expected += piece
        }
        try file.synchronize()
        try file.close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(expected))
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }
}
