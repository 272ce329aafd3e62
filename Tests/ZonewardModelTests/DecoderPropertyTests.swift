import Foundation
import Testing
import ZonewardModel

/// Decoding any document ends in a configuration or a list of problems, never a trap.
///
/// Each case mutates a valid document a few times (a value replaced by an awkward one, a line dropped,
/// doubled, moved, re-indented or cut short) with a seeded generator, so a failure can be replayed.
@Suite struct DecoderPropertyTests {
    static let seedConfiguration = """
        zones:
          - name: us-east-1a
            region: us-east-1
          - name: us-east-1b
            region: us-east-1
          - name: us-west-2a
            region: us-west-2
        routing:
          overloadFactor: 0.2
          costs:
            crossZone: 1
            crossRegion: 10
            pairs:
              - from: us-east-1a
                to: us-west-2a
                cost: 4
        admin:
          listen: 127.0.0.1:9901
        controller:
          listen: 127.0.0.1:9902
        services:
          - name: web
            listen: 127.0.0.1:8080
            protocol: http
            routing: allRegions
            regions: [us-east-1, us-west-2]
            demand:
              us-east-1a: 2
              us-east-1b: 1
            endpoints:
              - address: 10.0.1.10:80
                zone: us-east-1a
                weight: 2
              - address: 10.0.2.10:80
                zone: us-west-2a
            healthCheck:
              path: /healthz
              interval: 500ms
              timeout: 1s
              unhealthyThreshold: 3
              healthyThreshold: 2
            outlierDetection:
              consecutiveFailures: 5
              baseEjection: 30s
              maxEjectedPercent: 50
            failover:
              mode: automatic
              probes:
                us-east-1:
                  http: http://10.0.1.10/healthz
                  interval: 1s
                  timeout: 500ms
                  failuresToDown: 3
                  successesToUp: 2
                us-west-2:
                  tcp: 10.0.2.10:80
              maxLagSeconds: 5
              lag:
                command: [echo, "0"]
              cooldown: 5m
              verifyTimeout: 30s
              fence:
                command: ["true"]
                timeout: 10s
        backups:
          - name: state
            source:
              postgres:
                host: 127.0.0.1
                port: 5432
                database: app
            schedule: "17 * * * *"
            targets:
              - filesystem: /var/backups/zoneward
              - s3:
                  endpoint: http://127.0.0.1:9000
                  bucket: b
                  region: us-east-1
            encryption:
              keyFile: /etc/zoneward/backup.key
            compression:
              codec: zstd
              level: 3
            retention:
              keepLast: 7
            verify: daily
        """

    static let seedTopology = """
        overloadFactor: 0.2
        costs:
          crossZone: 1
          crossRegion: 10
          pairs:
            - from: a
              to: c
              cost: 4
        zones:
          - name: a
            region: r1
            demand: 120
            capacity: 100
          - name: b
            region: r1
            demand: 30
            capacity: 50
          - name: c
            region: r2
            demand: 0
            capacity: 1.5
        """

    /// Values that have broken decoders: overflow, non-finite, base 60, other bases, tags, empties, odd units.
    static let awkwardValues = [
        "99999999999999999999h", "36500d1ms", "1e308", "-1e308", "1e-320", ".inf", "-.inf", ".nan", "-0",
        "1:1:1:1:1:1:1:1:1:1:1:1", "9223372036854775807:59", "-9223372036854775808", "9223372036854775808",
        "99999999999999999999", "0x7fffffffffffffff", "0o777", "0b101", "1_000", "+5", "~", "null", "[]", "{}",
        "''", "\"\"", "!!str 5", "!!int 5", "!!float x", "!!binary aGk=", "yes", "2001-12-14", "٣s", "1.5.5s",
        "..", "1e5s", "0ms", "65536", "host:99999", "[::1]:80", ":80", "*/0 * * * *", "60 * * * *",
        "\"\\u0000\"", String(repeating: "9", count: 400), "- a", "{a: [b, {c: d}]}",
    ]

    @Test func theSeedsAreValid() throws {
        _ = try ZonewardConfiguration.parse(yaml: Self.seedConfiguration)
        _ = try PlanTopology.parse(Self.seedTopology)
    }

    @Test(arguments: 0..<4)
    func mutatedConfigurationsDecodeOrListProblems(batch: Int) {
        var random = SeededRandom(seed: 0x5EED_0000 + UInt64(batch))
        for index in 0..<500 {
            let text = mutate(Self.seedConfiguration, &random)
            do {
                let configuration = try ZonewardConfiguration.parse(yaml: text)
                #expect(finite(configuration), "batch \(batch) case \(index):\n\(text)")
            } catch {
                #expect(!error.problems.isEmpty, "batch \(batch) case \(index):\n\(text)")
            }
        }
    }

    @Test(arguments: 0..<2)
    func mutatedTopologiesDecodeOrListProblems(batch: Int) {
        var random = SeededRandom(seed: 0x7090_0000 + UInt64(batch))
        for index in 0..<500 {
            let text = mutate(Self.seedTopology, &random)
            do {
                let topology = try PlanTopology.parse(text)
                let numbers =
                    [topology.overloadFactor, topology.costs.crossZone, topology.costs.crossRegion]
                    + topology.costs.pairs.map(\.cost) + topology.zones.flatMap { [$0.demand, $0.capacity] }
                #expect(numbers.allSatisfy { $0.isFinite && $0 >= 0 && $0 <= 1e12 }, "case \(index):\n\(text)")
            } catch {
                #expect(!error.problems.isEmpty, "batch \(batch) case \(index):\n\(text)")
            }
        }
    }

    private func finite(_ configuration: ZonewardConfiguration) -> Bool {
        var numbers = [configuration.routing.overloadFactor]
        var durations: [Duration] = []
        for service in configuration.services {
            numbers += service.endpoints.map(\.weight) + (service.demand.map { Array($0.values) } ?? [])
            numbers.append(service.outlierDetection.maxEjectedPercent)
            durations += [
                service.healthCheck.interval, service.healthCheck.timeout, service.outlierDetection.baseEjection,
            ]
            if let failover = service.failover {
                numbers += failover.maxLagSeconds.map { [$0] } ?? []
                durations += [failover.cooldown, failover.verifyTimeout]
            }
        }
        return numbers.allSatisfy(\.isFinite) && durations.allSatisfy { $0 >= .zero && $0 <= TimeSpan.maximum }
    }

    private func mutate(_ seed: String, _ random: inout SeededRandom) -> String {
        var lines = seed.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            guard !lines.isEmpty else { break }
            let at = Int.random(in: 0..<lines.count, using: &random)
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<5:
                // Replace the value after the last ": " (or the list item) with an awkward one.
                let line = lines[at]
                let value = Self.awkwardValues[Int.random(in: 0..<Self.awkwardValues.count, using: &random)]
                if let colon = line.range(of: ": ", options: .backwards) {
                    lines[at] = line[..<colon.upperBound] + value
                } else if let dash = line.range(of: "- ") {
                    lines[at] = line[..<dash.upperBound] + value
                }
            case 5:
                lines.remove(at: at)
            case 6:
                lines.insert(lines[at], at: at)
            case 7:
                lines.swapAt(at, Int.random(in: 0..<lines.count, using: &random))
            case 8:
                lines[at] = Bool.random(using: &random) ? "  " + lines[at] : String(lines[at].dropFirst(2))
            default:
                let cut = Int.random(in: 0...lines[at].count, using: &random)
                lines[at] = String(lines[at].prefix(cut))
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// SplitMix64: small, seeded, good enough to pick mutations reproducibly.
private struct SeededRandom: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
