import Foundation
import ZonewardModel

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Checks a region once (HTTP GET or TCP connect) and measures replication lag.
public enum RegionProbe {
    /// One check: whether the region answered, and how.
    public static func check(_ probe: ProbeConfiguration) async -> (up: Bool, detail: String) {
        switch probe.target {
        case .http(let url):
            guard let target = URL(string: url) else { return (false, "not a URL: \(url)") }
            let request = URLRequest(
                url: target,
                cachePolicy: .reloadIgnoringLocalCacheData,
                timeoutInterval: probe.timeout.seconds
            )
            do {
                let (_, response) = try await URLSession.shared.data(for: request)
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                return ((200..<400).contains(status), "GET \(url) answered \(status)")
            } catch {
                return (false, "GET \(url) failed: \(error.localizedDescription)")
            }
        case .tcp(let address):
            return await tcpConnect(address, timeout: probe.timeout)
        }
    }

    /// A TCP connect with a timeout, on a blocking socket in a detached thread (one per probe, short-lived).
    static func tcpConnect(_ address: HostPort, timeout: Duration) async -> (up: Bool, detail: String) {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: blockingConnect(address, timeout: timeout))
            }
        }
    }

    private static func blockingConnect(_ address: HostPort, timeout: Duration) -> (up: Bool, detail: String) {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(address.host, String(address.port), &hints, &result) == 0, let info = result else {
            return (false, "cannot resolve \(address.host)")
        }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard fd >= 0 else { return (false, "socket failed") }
        defer { close(fd) }
        var tv = timeval(
            tv_sec: Int(timeout.components.seconds),
            tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000)
        )
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        if connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
            return (true, "TCP connect to \(address) ok")
        }
        return (false, "TCP connect to \(address) failed: \(String(cString: strerror(errno)))")
    }

    /// The replication lag of `region` in seconds, from the configured source.
    public static func lag(_ source: LagSource, region: String, timeout: Duration = .seconds(5)) async throws -> Double
    {
        let text: String
        switch source {
        case .command(let arguments):
            let (status, output) = try await DriverRunner.runCommand(
                arguments,
                environment: ["ZONEWARD_REGION": region],
                timeout: timeout
            )
            guard status == 0 else { throw DriverError("lag command exited \(status): \(output.suffix(200))") }
            text = output
        case .url(let url):
            let separator = url.contains("?") ? "&" : "?"
            guard let target = URL(string: "\(url)\(separator)region=\(region)") else {
                throw DriverError("not a URL: \(url)")
            }
            let (data, _) = try await URLSession.shared.data(
                for: URLRequest(url: target, timeoutInterval: timeout.seconds)
            )
            text = String(decoding: data, as: UTF8.self)
        }
        guard let lag = Double(text.trimmingCharacters(in: .whitespacesAndNewlines)), lag.isFinite, lag >= 0 else {
            throw DriverError("lag source printed \"\(text.prefix(80))\", not a number of seconds")
        }
        return lag
    }
}

/// Up/down of one region from consecutive probe results: down after `failuresToDown` failures in a row,
/// up after `successesToUp` successes in a row. A region starts up.
public typealias RegionHealthTracker = ThresholdHealth

extension ThresholdHealth {
    public var isUp: Bool { isHealthy }

    /// Records one probe; returns the new state when it changed.
    public mutating func record(up: Bool, probe: ProbeConfiguration) -> Bool? {
        record(success: up, failuresToDown: probe.failuresToDown, successesToUp: probe.successesToUp)
    }
}
