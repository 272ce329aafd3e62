import Foundation
import ZonewardModel

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a program and collects its output; a program that outlives its timeout is stopped (SIGTERM, then
/// SIGKILL after a grace period) and the run fails naming the program and the timeout.
enum ProcessRunner {
    /// How long a stopped program gets between SIGTERM and SIGKILL.
    static let grace: Duration = .seconds(5)

    static func run(
        _ arguments: [String],
        environment: [String: String] = [:],
        timeout: Duration
    ) async throws -> (Int32, String) {
        let watch = ProcessWatch()
        // On a Dispatch timer, not a Task: busy cooperative threads must not delay stopping a hung child.
        let timer = DispatchWorkItem {
            guard watch.signal(SIGTERM) else { return }
            DispatchQueue.global().asyncAfter(deadline: .now() + grace.seconds) { _ = watch.signal(SIGKILL) }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout.seconds, execute: timer)
        defer { timer.cancel() }
        let (status, output) = try await withCheckedThrowingContinuation {
            (continuation: CheckedContinuation<(Int32, String), any Error>) in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = arguments
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            // The output may name files of the source: private like everything else in flight.
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("zoneward-tool-\(UUID())")
            let descriptor = open(output.path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else {
                continuation.resume(throwing: BackupError.io("cannot capture the output of \(arguments[0])"))
                return
            }
            let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
            process.standardOutput = handle
            process.standardError = handle
            process.terminationHandler = { finished in
                watch.finish()
                try? handle.close()
                let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
                try? FileManager.default.removeItem(at: output)
                continuation.resume(returning: (finished.terminationStatus, text))
            }
            do {
                try process.run()
                watch.started(pid: process.processIdentifier)
            } catch {
                try? handle.close()
                try? FileManager.default.removeItem(at: output)
                continuation.resume(throwing: BackupError.io("cannot run \(arguments[0]): \(error)"))
            }
        }
        if watch.timedOut {
            throw BackupError.io(
                "\(arguments[0]) did not finish within \(TimeSpan.format(timeout)) and was stopped: \(output.suffix(300))"
            )
        }
        return (status, output)
    }
}

/// The pid of a running child, whether it finished, and whether the timeout had to stop it.
private final class ProcessWatch: @unchecked Sendable {
    private let lock = NSLock()
    private var pid: Int32 = 0
    private var finished = false
    private var stopped = false

    func started(pid: Int32) {
        lock.withLock { self.pid = pid }
    }

    func finish() {
        lock.withLock { finished = true }
    }

    var timedOut: Bool { lock.withLock { stopped } }

    /// Sends `signal` while the child still runs (never to a reused pid); false when it already finished.
    func signal(_ signal: Int32) -> Bool {
        lock.withLock {
            guard !finished, pid > 0 else { return false }
            stopped = true
            kill(pid, signal)
            return true
        }
    }
}
