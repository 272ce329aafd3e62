import Foundation
import Testing

@testable import ZonewardFailover

/// The processes of process group `group` that are still alive (zombies excluded), from /proc.
func livingProcesses(inGroup group: pid_t) -> [pid_t] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { entry -> pid_t? in
        guard let pid = pid_t(entry),
            let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // After "(comm)": state ppid pgrp …
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 2, fields[0] != "Z", pid_t(fields[2]) == group else { return nil }
        return pid
    }
}

@Suite struct DriverTests {
    /// Measured before: the timeout killed only `sh`; the sleeps kept the pipe open and the step waited 100 s.
    @Test func aCommandOverItsTimeoutIsKilledWithItsWholeGroup() async throws {
        let outcome = try await GroupProcess.run(
            ["sh", "-c", "echo started; sleep 100 & sleep 100"],
            environment: [:],
            timeout: .seconds(1)
        )
        // Timed on the runner's own thread: other tests may keep the concurrency pool busy.
        #expect(outcome.elapsed < .seconds(3))
        #expect(outcome.timedOut)
        #expect(outcome.output.contains("started"))
        var left = livingProcesses(inGroup: outcome.processGroup)
        for _ in 0..<250 where !left.isEmpty {
            try await Task.sleep(for: .milliseconds(20))
            left = livingProcesses(inGroup: outcome.processGroup)
        }
        #expect(left.isEmpty, "still running: \(left)")
    }

    @Test func runCommandSaysItTimedOut() async throws {
        let error = await #expect(throws: DriverError.self) {
            _ = try await DriverRunner.runCommand(["sh", "-c", "sleep 100 & sleep 100"], timeout: .seconds(1))
        }
        #expect(error?.description.contains("did not finish within 1s") == true)
    }

    /// A grandchild that keeps the pipe open does not hold the step once the command itself exited.
    @Test func aGrandchildHoldingThePipeDoesNotBlock() async throws {
        let outcome = try await GroupProcess.run(
            ["sh", "-c", "sleep 30 & echo done; exit 3"],
            environment: ["ZONEWARD_TEST": "1"],
            timeout: .seconds(20)
        )
        #expect(outcome.elapsed < .seconds(3))
        #expect(!outcome.timedOut)
        #expect(outcome.status == 3)
        #expect(outcome.output == "done\n")
        kill(-outcome.processGroup, SIGKILL)
    }

    @Test func passesTheEnvironmentAndReportsAMissingProgram() async throws {
        let (status, output) = try await DriverRunner.runCommand(
            ["sh", "-c", "echo $ZONEWARD_ACTION"],
            environment: ["ZONEWARD_ACTION": "fence"],
            timeout: .seconds(10)
        )
        #expect(status == 0)
        #expect(output == "fence\n")
        await #expect(throws: DriverError.self) {
            _ = try await DriverRunner.runCommand(["/nonexistent/fence"], timeout: .seconds(1))
        }
    }
}
