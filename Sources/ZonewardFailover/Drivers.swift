import Foundation
import ZonewardModel

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Why a driver, probe or lag source failed.
public struct DriverError: Error, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Runs fence and promote drivers: a command (exec with a timeout and the failover in its environment) or
/// a webhook (HTTP POST of the same as JSON through URLSession).
public enum DriverRunner {
    /// The facts a driver gets.
    public struct Context: Sendable, Codable {
        public var service: String
        public var from: String
        public var to: String
        /// The epoch the service will have once the change is made.
        public var epoch: Int64
        public var operation: Int64
        public var action: String
        /// The term of the controller leader that calls; a driver that keeps the highest term it has seen can
        /// refuse a call from an older one (a deposed leader). 0 for a single controller.
        public var term: Int64 = 0
    }

    /// Runs `driver`; returns a short description of what happened, or throws.
    public static func run(_ driver: DriverConfiguration, context: Context) async throws -> String {
        switch driver.kind {
        case .command(let arguments):
            let environment = [
                "ZONEWARD_SERVICE": context.service, "ZONEWARD_FROM": context.from, "ZONEWARD_TO": context.to,
                "ZONEWARD_EPOCH": String(context.epoch), "ZONEWARD_OPERATION": String(context.operation),
                "ZONEWARD_ACTION": context.action, "ZONEWARD_TERM": String(context.term),
            ]
            let (status, output) = try await runCommand(arguments, environment: environment, timeout: driver.timeout)
            guard status == 0 else {
                throw DriverError("\(arguments[0]) exited \(status): \(output.suffix(400))")
            }
            return "\(arguments[0]) exited 0"
        case .webhook(let url):
            let body = try JSONEncoder().encode(context)
            let status = try await post(url, body: body, timeout: driver.timeout)
            guard (200..<300).contains(status) else { throw DriverError("POST \(url) answered \(status)") }
            return "POST \(url) answered \(status)"
        }
    }

    /// Runs a program with extra environment in its own process group; after `timeout` the whole group is
    /// killed and this throws. Returns its exit status and (the last 64 KiB of) its output.
    public static func runCommand(
        _ arguments: [String],
        environment: [String: String] = [:],
        timeout: Duration
    ) async throws -> (Int32, String) {
        let outcome = try await GroupProcess.run(arguments, environment: environment, timeout: timeout)
        if outcome.timedOut {
            throw DriverError(
                "\(arguments[0]) did not finish within \(TimeSpan.format(timeout)); its process group was killed: "
                    + "\(outcome.output.suffix(400))"
            )
        }
        return (outcome.status, outcome.output)
    }

    static func post(_ url: String, body: Data, timeout: Duration) async throws -> Int {
        guard let target = URL(string: url) else { throw DriverError("not a URL: \(url)") }
        var request = URLRequest(url: target, timeoutInterval: timeout.seconds)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = body
        let (_, response) = try await URLSession.shared.data(for: request)
        return (response as? HTTPURLResponse)?.statusCode ?? 0
    }
}
