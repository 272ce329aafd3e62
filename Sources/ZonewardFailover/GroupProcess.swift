import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a program in its own process group with a deadline: at the deadline the whole group is killed
/// (SIGKILL), and output is read with the same deadline, so a grandchild that keeps the pipe open cannot
/// hold the caller. Blocking work happens on a thread of its own, never on the concurrency pool.
enum GroupProcess {
    struct Outcome: Sendable, Equatable {
        /// The exit status, or 128 + the signal that ended the process.
        var status: Int32
        var output: String
        var timedOut: Bool
        /// The process group id (the child's pid).
        var processGroup: pid_t
        /// From the start of the program to the end of reading its output.
        var elapsed: Duration
    }

    /// How long output is still read after the program exits, for a grandchild that keeps the pipe open.
    static let drainAfterExit: Duration = .milliseconds(200)
    /// The most output kept, from the end.
    static let maxOutputBytes = 64 * 1024

    /// Runs the program; when the calling task is cancelled (a leader that lost its lease), the whole group is
    /// killed at once and this throws `CancellationError`.
    static func run(_ arguments: [String], environment: [String: String], timeout: Duration) async throws -> Outcome {
        let cancelled = CancelFlag()
        let outcome = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let thread = Thread {
                    continuation.resume(
                        with: Result {
                            try runBlocking(arguments, environment: environment, timeout: timeout, cancelled: cancelled)
                        }
                    )
                }
                thread.start()
            }
        } onCancel: {
            cancelled.set()
        }
        if cancelled.isSet { throw CancellationError() }
        return outcome
    }

    /// Set once by a cancelled task; read by the thread that waits for the program.
    final class CancelFlag: Sendable {
        private let flag = Mutex(false)
        func set() { flag.withLock { $0 = true } }
        var isSet: Bool { flag.withLock { $0 } }
    }

    static func runBlocking(
        _ arguments: [String],
        environment: [String: String],
        timeout: Duration,
        cancelled: CancelFlag = CancelFlag()
    ) throws -> Outcome {
        guard let program = arguments.first else { throw DriverError("empty command") }
        // Cancelled before the thread got to run (a busy machine): start nothing.
        if cancelled.isSet { throw CancellationError() }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw DriverError("cannot run \(program): pipe: \(String(cString: strerror(errno)))")
        }
        let readEnd = fds[0]
        let writeEnd = fds[1]
        defer { close(readEnd) }
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(readEnd, F_SETFL, fcntl(readEnd, F_GETFL) | O_NONBLOCK)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 1)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 2)
        posix_spawn_file_actions_addclose(&actions, writeEnd)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group, so the whole group can be killed; default signal handling and no blocked signals.
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes,
            Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        )

        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv + envp { free(pointer) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, program, &actions, &attributes, argv, envp)
        close(writeEnd)
        guard spawned == 0 else {
            throw DriverError("cannot run \(program): \(String(cString: strerror(spawned)))")
        }

        let clock = ContinuousClock()
        let started = clock.now
        let deadline = started + timeout
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var status: Int32?
        var timedOut = false
        var exitedAt: ContinuousClock.Instant?
        var pipeOpen = true
        while true {
            if status == nil {
                var raw: Int32 = 0
                let reaped = waitpid(pid, &raw, WNOHANG)
                if reaped == pid {
                    status = decode(raw)
                    exitedAt = clock.now
                } else if reaped < 0, errno != EINTR {
                    status = -1
                    exitedAt = clock.now
                }
            }
            if status == nil, !timedOut, clock.now >= deadline || cancelled.isSet {
                timedOut = true
                kill(-pid, SIGKILL)
            }
            if let exitedAt {
                if !pipeOpen || clock.now >= exitedAt + drainAfterExit { break }
                if timedOut { kill(-pid, SIGKILL) }
            }
            guard pipeOpen else {
                usleep(10_000)
                continue
            }
            var poller = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
            _ = poll(&poller, 1, 20)
            let count = read(readEnd, &buffer, buffer.count)
            if count > 0 {
                output += buffer[0..<count]
                if output.count > 2 * maxOutputBytes { output.removeFirst(output.count - maxOutputBytes) }
            } else if count == 0 {
                pipeOpen = false
            }
        }
        if output.count > maxOutputBytes { output.removeFirst(output.count - maxOutputBytes) }
        return Outcome(
            status: status ?? -1,
            output: String(decoding: output, as: UTF8.self),
            timedOut: timedOut,
            processGroup: pid,
            elapsed: clock.now - started
        )
    }

    private static func decode(_ raw: Int32) -> Int32 {
        let signal = raw & 0x7f
        if signal == 0 { return (raw >> 8) & 0xff }
        return 128 + signal
    }
}
