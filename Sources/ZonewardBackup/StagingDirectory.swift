import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fresh private directory (mode 0700) for plaintext in flight — a SQLite snapshot, a tar archive, a
/// `pg_dump` file, a restored copy being checked — whose files are created 0600.
///
/// The owner holds an exclusive `flock` on a lock file inside for as long as the directory lives, so a
/// directory whose lock can be taken belongs to a process that died (killed, crashed) and is removed by the
/// next `create` under the same root. Call `remove()` on every exit path (`defer`).
public struct StagingDirectory: Sendable {
    static let namePrefix = "zoneward-staging-"
    static let lockName = ".lock"

    public let url: URL
    private let lockDescriptor: Int32

    public var path: String { url.path }

    /// Removes what killed runs left under `root`, then creates a fresh private directory there.
    public static func create(
        in root: URL = FileManager.default.temporaryDirectory,
        purpose: String
    ) throws -> StagingDirectory {
        sweep(root)
        let url = root.appendingPathComponent("\(namePrefix)\(purpose)-\(UUID().uuidString)")
        guard mkdir(url.path, 0o700) == 0 else {
            throw BackupError.io("cannot create the staging directory \(url.path): \(String(cString: strerror(errno)))")
        }
        // mkdir's mode is filtered by the umask, which can only remove bits; set it exactly.
        chmod(url.path, 0o700)
        let descriptor = open(url.appendingPathComponent(lockName).path, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard descriptor >= 0, flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let reason = String(cString: strerror(errno))
            if descriptor >= 0 { close(descriptor) }
            try? FileManager.default.removeItem(at: url)
            throw BackupError.io("cannot lock the staging directory \(url.path): \(reason)")
        }
        InFlight.add(url.path)
        return StagingDirectory(url: url, lockDescriptor: descriptor)
    }

    /// Creates an empty file `name` inside with mode 0600 and returns its path. Tools that then write to
    /// it (`tar -f`, `pg_dump -f`, SQLite) truncate it and keep its mode.
    public func file(_ name: String) throws -> String {
        let path = url.appendingPathComponent(name).path
        let descriptor = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw BackupError.io("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        close(descriptor)
        return path
    }

    /// Deletes the directory and everything in it, and releases the lock.
    public func remove() {
        try? FileManager.default.removeItem(at: url)
        InFlight.remove(url.path)
        close(lockDescriptor)
    }

    /// Removes staging directories under `root` whose owner is gone: their lock can be taken.
    static func sweep(_ root: URL) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        for name in names where name.hasPrefix(namePrefix) {
            let directory = root.appendingPathComponent(name)
            let descriptor = open(directory.appendingPathComponent(lockName).path, O_RDWR | O_CLOEXEC)
            if descriptor < 0 {
                // Killed between mkdir and creating the lock: no owner can be alive after a minute.
                let modified =
                    (try? FileManager.default.attributesOfItem(atPath: directory.path)[.modificationDate]) as? Date
                if let modified, Date().timeIntervalSince(modified) > 60 {
                    try? FileManager.default.removeItem(at: directory)
                }
                continue
            }
            if flock(descriptor, LOCK_EX | LOCK_NB) == 0 {
                try? FileManager.default.removeItem(at: directory)
            }
            close(descriptor)
        }
    }
}

/// Every path that holds plaintext in flight in this process — staging directories, a restore's temporary
/// file — so a signal handler can remove them before the process exits (`removeAll()`), where `defer` would
/// not run.
public enum InFlight {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var paths: Set<String> = []

    static func add(_ path: String) {
        lock.withLock { _ = paths.insert(path) }
    }

    static func remove(_ path: String) {
        lock.withLock { _ = paths.remove(path) }
    }

    /// Removes every path in flight (or only those under `root`); for a signal handler that is about to exit.
    public static func removeAll(under root: URL? = nil) {
        let all = lock.withLock { paths }
        for path in all where root.map({ path.hasPrefix($0.path + "/") }) ?? true {
            try? FileManager.default.removeItem(atPath: path)
        }
    }
}
