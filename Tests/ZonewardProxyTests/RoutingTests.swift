import Foundation
import Logging
import Testing
import ZonewardModel
import ZonewardState

@testable import ZonewardProxy

@Suite struct HealthStateTests {
    let thresholds = HealthCheckConfiguration(unhealthyThreshold: 3, healthyThreshold: 2)

    @Test func turnsUnhealthyAfterTheThresholdAndBackAfterSuccesses() {
        var health = HealthState()
        #expect(health.record(success: false, thresholds: thresholds) == nil)
        #expect(health.record(success: false, thresholds: thresholds) == nil)
        #expect(health.record(success: false, thresholds: thresholds) == false)
        #expect(!health.isHealthy)
        #expect(health.record(success: true, thresholds: thresholds) == nil)
        #expect(health.record(success: true, thresholds: thresholds) == true)
        #expect(health.isHealthy)
    }

    @Test func aSuccessResetsTheFailureCount() {
        var health = HealthState()
        _ = health.record(success: false, thresholds: thresholds)
        _ = health.record(success: false, thresholds: thresholds)
        _ = health.record(success: true, thresholds: thresholds)
        #expect(health.record(success: false, thresholds: thresholds) == nil)
        #expect(health.isHealthy)
    }
}

@Suite struct OutlierDetectorTests {
    let configuration = OutlierDetectionConfiguration(
        consecutiveFailures: 5,
        baseEjection: .seconds(30),
        maxEjectedPercent: 50
    )
    let now = ContinuousClock.now

    @Test func ejectionsGrowLongerEachTime() {
        var detector = OutlierDetector()
        #expect(
            detector.thresholdReached("a", zonePeers: ["a", "b"], configuration: configuration, at: now)
                == .eject(for: .seconds(30))
        )
        #expect(detector.isEjected("a", at: now + .seconds(29)))
        #expect(!detector.isEjected("a", at: now + .seconds(30)))
        let later = now + .seconds(31)
        #expect(
            detector.thresholdReached("a", zonePeers: ["a", "b"], configuration: configuration, at: later)
                == .eject(for: .seconds(60))
        )
    }

    /// Ejections grow to `maxEjection` and no further.
    @Test func ejectionsAreCappedAtMaxEjection() {
        var detector = OutlierDetector()
        var configuration = configuration
        configuration.maxEjection = .seconds(100)
        var at = now
        var lengths: [Duration] = []
        for _ in 0..<6 {
            guard
                case .eject(let length) = detector.thresholdReached(
                    "a",
                    zonePeers: ["a", "b"],
                    configuration: configuration,
                    at: at
                )
            else {
                Issue.record("not ejected")
                return
            }
            lengths.append(length)
            at = at + length  // fails again the moment it is back
        }
        #expect(lengths == [.seconds(30), .seconds(60), .seconds(90), .seconds(100), .seconds(100), .seconds(100)])
    }

    /// Time back in service decays the multiplier: one step per base-ejection period, as in Envoy.
    @Test func ejectionsDecayAfterAHealthyPeriod() {
        var detector = OutlierDetector()
        var at = now
        for _ in 0..<3 {
            if case .eject(let length) = detector.thresholdReached(
                "a",
                zonePeers: ["a", "b"],
                configuration: configuration,
                at: at
            ) {
                at = at + length
            }
        }
        // Third ejection was 90 s and ended at `at`. Two healthy periods (60 s) take two steps off.
        let action = detector.thresholdReached(
            "a",
            zonePeers: ["a", "b"],
            configuration: configuration,
            at: at + .seconds(61)
        )
        #expect(action == .eject(for: .seconds(60)))
        // Long healthy: back to the base length.
        let later = at + .seconds(61) + .seconds(60) + .seconds(3600)
        #expect(
            detector.thresholdReached("a", zonePeers: ["a", "b"], configuration: configuration, at: later)
                == .eject(for: .seconds(30))
        )
    }

    @Test func neverEjectsMoreThanTheCapOfAZone() {
        var detector = OutlierDetector()
        _ = detector.thresholdReached("a", zonePeers: ["a", "b"], configuration: configuration, at: now)
        #expect(
            detector.thresholdReached("b", zonePeers: ["a", "b"], configuration: configuration, at: now)
                == .refusedAtLimit(firstTime: true)
        )
        #expect(
            detector.thresholdReached("b", zonePeers: ["a", "b"], configuration: configuration, at: now)
                == .refusedAtLimit(firstTime: false)
        )
        #expect(detector.ejected(at: now) == ["a"])
    }

    /// An ejected endpoint that health checks also hold down does not use up the cap.
    @Test func endpointsHeldDownByHealthChecksDoNotCountTowardTheCap() {
        var detector = OutlierDetector()
        _ = detector.thresholdReached("a", zonePeers: ["a", "b"], configuration: configuration, at: now)
        let action = detector.thresholdReached(
            "b",
            zonePeers: ["a", "b"],
            heldDown: ["a"],
            configuration: configuration,
            at: now
        )
        #expect(action == .eject(for: .seconds(30)))
    }
}

@Suite struct RoutingTableTests {
    let configuration = try! ZonewardConfiguration.parse(
        yaml: """
            zones:
              - {name: a, region: east}
              - {name: b, region: east}
              - {name: w, region: west}
            services:
              - name: web
                listen: 127.0.0.1:1
                demand: {a: 6, b: 3, w: 1}
                endpoints:
                  - {address: 127.0.0.1:11, zone: a, weight: 2}
                  - {address: 127.0.0.1:12, zone: a, weight: 1}
                  - {address: 127.0.0.1:13, zone: b, weight: 1}
                  - {address: 127.0.0.1:14, zone: b, weight: 1}
                  - {address: 127.0.0.1:15, zone: w, weight: 3}
                  - {address: 127.0.0.1:16, zone: w, weight: 1}
            """
    )

    func makeTable(zone: String = "a") -> RoutingTable {
        RoutingTable(
            configuration: configuration,
            sourceZone: zone,
            metrics: ProxyMetrics(),
            logger: Logger(label: "test")
        )
    }

    func endpoint(_ table: RoutingTable, _ port: Int) -> UpstreamEndpoint {
        table.endpoints.first { $0.address.port == port }!
    }

    /// Picks follow the plan's row for the proxy's zone, and weights within a zone.
    @Test func picksFollowThePlanAndTheWeights() throws {
        let table = makeTable()
        let routes = try #require(table.snapshot.routes(for: "web"))
        var random = BalancerRandom(seed: 42)
        var zones: [String: Int] = [:]
        var endpoints: [Int: Int] = [:]
        let draws = 60_000
        for _ in 0..<draws {
            let picked = try #require(routes.pick(&random))
            zones[picked.zone, default: 0] += 1
            endpoints[picked.address.port, default: 0] += 1
        }
        for (t, zone) in routes.plan.zoneNames.enumerated() {
            let expected = routes.plan.route(from: routes.sourceZone, to: t)
            #expect(abs(Double(zones[zone, default: 0]) / Double(draws) - expected) < 0.01, "\(zone)")
        }
        // Idle endpoints share their zone's traffic by weight (2 : 1 in zone a).
        let inA = Double(endpoints[11, default: 0] + endpoints[12, default: 0])
        #expect(abs(Double(endpoints[11, default: 0]) / inA - 2.0 / 3) < 0.02)
    }

    @Test func twoChoicesPreferTheLessLoadedEndpoint() throws {
        let table = makeTable(zone: "b")
        let busy = endpoint(table, 13)
        busy.outstanding.store(50, ordering: .relaxed)
        defer { busy.outstanding.store(0, ordering: .relaxed) }
        let routes = try #require(table.snapshot.routes(for: "web"))
        var random = BalancerRandom(seed: 7)
        var busyPicks = 0
        for _ in 0..<1000 where routes.pick(&random) === busy { busyPicks += 1 }
        // Only when both draws land on the busy endpoint (¼ of b's share) is it chosen.
        #expect(busyPicks < 300)
    }

    @Test func anUnhealthyZoneIsReplannedAtOnce() throws {
        let table = makeTable()
        let before = table.version
        for port in [11, 12] {
            for _ in 0..<3 { table.recordHealthCheck(endpoint(table, port), success: false, detail: "test") }
        }
        #expect(table.version > before)
        let routes = try #require(table.snapshot.routes(for: "web"))
        #expect(routes.plan.route(from: routes.sourceZone, to: 0) == 0)
        var random = BalancerRandom(seed: 1)
        for _ in 0..<100 { #expect(routes.pick(&random)?.zone != "a") }
    }

    @Test func drainsMoveTrafficAndSayWhy() throws {
        let table = makeTable()
        table.setDrainedZones(["b"])
        let routes = try #require(table.snapshot.routes(for: "web"))
        #expect(routes.condition == .draining)
        #expect(routes.plan.zoneNames.indices.allSatisfy { routes.plan.route(from: $0, to: 1) == 0 })
    }

    @Test func withNoHealthyEndpointAnywhereItPanicsInsteadOfDropping() throws {
        let table = makeTable()
        for port in 11...16 {
            for _ in 0..<3 { table.recordHealthCheck(endpoint(table, port), success: false, detail: "test") }
        }
        let routes = try #require(table.snapshot.routes(for: "web"))
        #expect(routes.condition == .panic)
        var random = BalancerRandom(seed: 3)
        #expect(routes.pick(&random) != nil)
    }

    /// Panic widens only within undrained zones: a drained zone gets no request even when nothing is healthy.
    @Test func panicNeverRoutesIntoADrainedZone() throws {
        let table = makeTable()
        table.setDrainedZones(["b"])
        for port in 11...16 {
            for _ in 0..<3 { table.recordHealthCheck(endpoint(table, port), success: false, detail: "test") }
        }
        let routes = try #require(table.snapshot.routes(for: "web"))
        #expect(routes.condition == .panic)
        #expect(
            routes.eligibleKeys == ["web/127.0.0.1:11", "web/127.0.0.1:12", "web/127.0.0.1:15", "web/127.0.0.1:16"]
        )
        var random = BalancerRandom(seed: 5)
        for _ in 0..<500 { #expect(routes.pick(&random)?.zone != "b") }
    }

    /// With every zone drained there is nothing routing allows: no endpoint, condition `unavailable`.
    @Test func withEveryZoneDrainedNothingIsPicked() throws {
        let table = makeTable()
        table.setDrainedZones(["a", "b", "w"])
        let routes = try #require(table.snapshot.routes(for: "web"))
        #expect(routes.condition == .unavailable)
        var random = BalancerRandom(seed: 5)
        #expect(routes.pick(&random) == nil)
    }

    @Test func consecutiveFailuresEjectAnEndpoint() throws {
        let table = makeTable()
        let failing = endpoint(table, 11)
        for _ in 0..<5 { table.recordResult(failing, success: false, detail: "HTTP 503") }
        #expect(table.snapshot.ejected.contains(failing.key))
        #expect(table.snapshot.routes(for: "web")?.eligibleKeys.contains(failing.key) == false)
    }

    @Test func aSuccessBreaksTheFailureStreak() {
        let table = makeTable()
        let flaky = endpoint(table, 12)
        for _ in 0..<4 { table.recordResult(flaky, success: false, detail: "HTTP 502") }
        table.recordResult(flaky, success: true, detail: "")
        for _ in 0..<4 { table.recordResult(flaky, success: false, detail: "HTTP 502") }
        #expect(!table.snapshot.ejected.contains(flaky.key))
    }

    @Test func reloadKeepsEndpointsThatStay() throws {
        let table = makeTable()
        let kept = endpoint(table, 11)
        var changed = configuration
        changed.services[0].endpoints.removeLast()
        table.replace(configuration: changed)
        #expect(endpoint(table, 11) === kept)
        #expect(table.endpoints.count == 5)
    }
}

@Suite struct EmbeddedConfigurationTests {
    @Test func theEmbeddedDefaultIsTheShippedExample() throws {
        let path = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("config/zoneward.yaml").path
        let shipped = try String(contentsOfFile: path, encoding: .utf8)
        #expect(ZonewardConfiguration.embeddedDefaultYAML + "\n" == shipped)
        #expect(throws: Never.self) { try ZonewardConfiguration.parse(yaml: ZonewardConfiguration.embeddedDefaultYAML) }
    }
}

@Suite struct EpochFencingTests {
    let configuration = try! ZonewardConfiguration.parse(
        yaml: """
            zones:
              - {name: a, region: east}
              - {name: w, region: west}
            services:
              - name: db
                listen: 127.0.0.1:1
                protocol: tcp
                routing: activeRegion
                regions: [east, west]
                endpoints:
                  - {address: 127.0.0.1:11, zone: a}
                  - {address: 127.0.0.1:12, zone: w}
            """
    )

    /// A snapshot older than the epoch held never undoes a newer failover.
    @Test func aStaleSnapshotIsRefused() throws {
        let table = RoutingTable(
            configuration: configuration,
            sourceZone: "a",
            metrics: ProxyMetrics(),
            logger: Logger(label: "test")
        )
        #expect(table.snapshot.routes(for: "db")?.eligibleKeys == ["db/127.0.0.1:11"])
        #expect(table.applyServiceStates(["db": .init(activeRegion: "west", epoch: 2)]) == ["db": "west"])
        #expect(table.snapshot.routes(for: "db")?.eligibleKeys == ["db/127.0.0.1:12"])
        #expect(table.applyServiceStates(["db": .init(activeRegion: "east", epoch: 1)]).isEmpty)
        #expect(table.snapshot.routes(for: "db")?.eligibleKeys == ["db/127.0.0.1:12"])
        #expect(table.epoch(of: "db") == 2)
    }

    /// The active region's endpoint is down: panic must not reach the standby region (it may not be
    /// promoted yet, or the old primary may be fenced). Requests get 503 no-capacity instead.
    @Test func panicStaysInTheActiveRegion() throws {
        let table = RoutingTable(
            configuration: configuration,
            sourceZone: "a",
            metrics: ProxyMetrics(),
            logger: Logger(label: "test")
        )
        let primary = try #require(table.endpoints.first { $0.address.port == 11 })
        for _ in 0..<3 { table.recordHealthCheck(primary, success: false, detail: "test") }
        var routes = try #require(table.snapshot.routes(for: "db"))
        #expect(routes.condition == .panic)
        #expect(routes.eligibleKeys == ["db/127.0.0.1:11"])
        var random = BalancerRandom(seed: 9)
        for _ in 0..<100 { #expect(routes.pick(&random)?.address.port == 11) }

        // After failover to west, the old primary (fenced) gets nothing even when west is down too.
        table.applyServiceStates(["db": .init(activeRegion: "west", epoch: 3)])
        let standby = try #require(table.endpoints.first { $0.address.port == 12 })
        for _ in 0..<3 { table.recordHealthCheck(standby, success: false, detail: "test") }
        routes = try #require(table.snapshot.routes(for: "db"))
        #expect(routes.eligibleKeys == ["db/127.0.0.1:12"])
        for _ in 0..<100 { #expect(routes.pick(&random)?.address.port == 12) }
    }

    /// The active region's only zone drained and its endpoint down: nothing is allowed, nothing is picked.
    @Test func noCapacityInTheActiveRegionPicksNothing() throws {
        let table = RoutingTable(
            configuration: configuration,
            sourceZone: "a",
            metrics: ProxyMetrics(),
            logger: Logger(label: "test")
        )
        table.setDrainedZones(["a"])
        let routes = try #require(table.snapshot.routes(for: "db"))
        #expect(routes.condition == .unavailable)
        var random = BalancerRandom(seed: 9)
        #expect(routes.pick(&random) == nil)
    }
}
