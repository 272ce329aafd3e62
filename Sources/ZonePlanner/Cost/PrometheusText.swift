/// One sample of the Prometheus text format: `name{label="value",…} number`.
public struct PrometheusSample: Sendable, Equatable {
    public var name: String
    public var labels: [String: String]
    public var value: Double
}

/// Reads the Prometheus text exposition format (what `/metrics` answers): comments and blank lines are
/// skipped, label values are unescaped (`\\`, `\"`, `\n`), and a malformed line is skipped, never fatal.
public enum PrometheusText {
    public static func parse(_ text: String) -> [PrometheusSample] {
        var samples: [PrometheusSample] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = raw.drop { $0 == " " || $0 == "\t" }
            guard !line.isEmpty, line.first != "#", let sample = parseLine(Substring(line)) else { continue }
            samples.append(sample)
        }
        return samples
    }

    static func parseLine(_ line: Substring) -> PrometheusSample? {
        var index = line.startIndex
        while index < line.endIndex, line[index] != "{", line[index] != " ", line[index] != "\t" {
            index = line.index(after: index)
        }
        let name = String(line[line.startIndex..<index])
        guard !name.isEmpty else { return nil }
        var labels: [String: String] = [:]
        if index < line.endIndex, line[index] == "{" {
            index = line.index(after: index)
            while true {
                while index < line.endIndex, line[index] == " " || line[index] == "," {
                    index = line.index(after: index)
                }
                guard index < line.endIndex else { return nil }
                if line[index] == "}" {
                    index = line.index(after: index)
                    break
                }
                let keyStart = index
                while index < line.endIndex, line[index] != "=" { index = line.index(after: index) }
                guard index < line.endIndex else { return nil }
                let key = String(line[keyStart..<index]).trimmingSpaces
                index = line.index(after: index)
                guard index < line.endIndex, line[index] == "\"" else { return nil }
                index = line.index(after: index)
                var value = ""
                var closed = false
                while index < line.endIndex {
                    let character = line[index]
                    index = line.index(after: index)
                    if character == "\"" {
                        closed = true
                        break
                    }
                    if character == "\\", index < line.endIndex {
                        let escaped = line[index]
                        index = line.index(after: index)
                        value.append(escaped == "n" ? "\n" : escaped)
                    } else {
                        value.append(character)
                    }
                }
                guard closed else { return nil }
                labels[key] = value
            }
        }
        let rest = line[index...].split(separator: " ", omittingEmptySubsequences: true)
        guard let first = rest.first else { return nil }
        let value: Double?
        switch first {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default: value = Double(first)
        }
        guard let value else { return nil }
        return PrometheusSample(name: name, labels: labels, value: value)
    }

    /// Each service's bytes and requests per zone pair from `zoneward_bytes_total` and
    /// `zoneward_requests_total` samples (summed over directions, status classes and sources).
    public static func traffic(_ samples: [PrometheusSample], service: String? = nil) -> [ServiceTraffic] {
        var byService: [String: ServiceTraffic] = [:]
        for sample in samples where sample.value.isFinite && sample.value >= 0 {
            guard let name = sample.labels["service"], service == nil || service == name,
                let source = sample.labels["source_zone"], let destination = sample.labels["destination_zone"]
            else { continue }
            let pair = ZonePair(source, destination)
            switch sample.name {
            case "zoneward_bytes_total":
                byService[name, default: ServiceTraffic(service: name)].bytes[pair, default: 0] += sample.value
            case "zoneward_requests_total":
                byService[name, default: ServiceTraffic(service: name)].requests[pair, default: 0] += sample.value
            default:
                continue
            }
        }
        return byService.values.sorted { $0.service < $1.service }
    }

    /// `later − earlier` per service and pair (counters restarted in between count from 0).
    public static func difference(_ later: [ServiceTraffic], _ earlier: [ServiceTraffic]) -> [ServiceTraffic] {
        let before = Dictionary(earlier.map { ($0.service, $0) }, uniquingKeysWith: { a, _ in a })
        return later.map { current in
            var result = ServiceTraffic(service: current.service)
            for (pair, value) in current.bytes {
                let old = before[current.service]?.bytes[pair] ?? 0
                result.bytes[pair] = value >= old ? value - old : value
            }
            for (pair, value) in current.requests {
                let old = before[current.service]?.requests[pair] ?? 0
                result.requests[pair] = value >= old ? value - old : value
            }
            return result
        }
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
