import Foundation

/// Runs a program and collects its output.
enum ProcessRunner {
    static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> (Int32, String) {
        try await withCheckedThrowingContinuation { continuation in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = arguments
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("zoneward-tool-\(UUID())")
            _ = FileManager.default.createFile(atPath: output.path, contents: nil)
            guard let handle = FileHandle(forWritingAtPath: output.path) else {
                continuation.resume(throwing: BackupError.io("cannot capture the output of \(arguments[0])"))
                return
            }
            process.standardOutput = handle
            process.standardError = handle
            process.terminationHandler = { finished in
                try? handle.close()
                let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
                try? FileManager.default.removeItem(at: output)
                continuation.resume(returning: (finished.terminationStatus, text))
            }
            do {
                try process.run()
            } catch {
                try? handle.close()
                try? FileManager.default.removeItem(at: output)
                continuation.resume(throwing: BackupError.io("cannot run \(arguments[0]): \(error)"))
            }
        }
    }
}
