import Foundation
import Logging
import Testing
import ZonewardModel

@testable import ZonewardProxy

@Suite struct DemandRateTests {
    /// After a step change the average has moved 86% of the way in one window, 98% in two.
    @Test func followsAStepWithinTwoWindows() {
        var rate = DemandRate(window: .seconds(10))
        rate.add(count: 100, over: .seconds(1))
        #expect(rate.rate == 100)
        for _ in 0..<10 { rate.add(count: 300, over: .seconds(1)) }
        #expect(abs(rate.rate - (300 - 200 * exp(-2))) < 0.5)
        for _ in 0..<10 { rate.add(count: 300, over: .seconds(1)) }
        #expect(abs(rate.rate - (300 - 200 * exp(-4))) < 0.5)
    }

    @Test func ignoresEmptyIntervals() {
        var rate = DemandRate(window: .seconds(10))
        rate.add(count: 5, over: .zero)
        #expect(rate.samples == 0)
    }
}

@Suite struct DemandResolutionTests {
    let zones = ["a", "b", "c"]

    @Test func withNothingMeasuredConfiguredThenEqual() {
        let configured = DemandResolution.resolve(zones: zones, measured: [:], configured: ["a": 6, "b": 3])
        #expect(configured["a"] == ZoneDemand(rate: 6, source: .configured))
        #expect(configured["c"] == ZoneDemand(rate: 0, source: .configured))
        let equal = DemandResolution.resolve(zones: zones, measured: [:], configured: nil)
        #expect(equal.values.allSatisfy { $0 == ZoneDemand(rate: 1, source: .equal) })
    }

    /// Unmeasured zones keep their configured share, scaled to the measured zones' units; else the mean.
    @Test func unmeasuredZonesFallBackInMeasuredUnits() {
        let scaled = DemandResolution.resolve(zones: zones, measured: ["a": 120], configured: ["a": 6, "b": 3, "c": 1])
        #expect(scaled["a"] == ZoneDemand(rate: 120, source: .measured))
        #expect(scaled["b"] == ZoneDemand(rate: 60, source: .configured))
        #expect(scaled["c"] == ZoneDemand(rate: 20, source: .configured))
        let mean = DemandResolution.resolve(zones: zones, measured: ["a": 10, "b": 30], configured: nil)
        #expect(mean["c"] == ZoneDemand(rate: 20, source: .equal))
    }

    @Test func movesAreJudgedAgainstTheThreshold() {
        let old = DemandResolution.resolve(zones: zones, measured: ["a": 100, "b": 50, "c": 10], configured: nil)
        let small = DemandResolution.resolve(zones: zones, measured: ["a": 109, "b": 46, "c": 10.5], configured: nil)
        #expect(DemandResolution.moved(from: old, to: small, threshold: 0.1).isEmpty)
        let big = DemandResolution.resolve(zones: zones, measured: ["a": 100, "b": 50, "c": 12], configured: nil)
        #expect(DemandResolution.moved(from: old, to: big, threshold: 0.1) == ["c"])
        // A zone near zero moves only past 1% of the total.
        let tiny = DemandResolution.resolve(zones: zones, measured: ["a": 100, "b": 50, "c": 0], configured: nil)
        let tinyMove = DemandResolution.resolve(zones: zones, measured: ["a": 100, "b": 50, "c": 0.1], configured: nil)
        #expect(DemandResolution.moved(from: tiny, to: tinyMove, threshold: 0.1).isEmpty)
    }
}

@Suite struct MeasuredDemandRoutingTests {
    let configuration = try! ZonewardConfiguration.parse(
        yaml: """
            zones: [{name: a, region: r}, {name: b, region: r}, {name: c, region: r}]
            routing: {overloadFactor: 0, replanThreshold: 0.1}
            services:
              - name: web
                listen: 127.0.0.1:1
                demand: {a: 60, b: 30, c: 10}
                endpoints:
                  - {address: 127.0.0.1:11, zone: a}
                  - {address: 127.0.0.1:12, zone: b}
                  - {address: 127.0.0.1:13, zone: c}
            """
    )

    /// The plan follows measured demand, re-plans only past the threshold, and says where demand came from.
    @Test func plansFollowMeasuredDemandWithoutFlapping() throws {
        let table = RoutingTable(
            configuration: configuration,
            sourceZone: "a",
            metrics: ProxyMetrics(),
            logger: Logger(label: "t")
        )
        var routes = try #require(table.snapshot.routes(for: "web"))
        #expect(routes.demand["a"] == ZoneDemand(rate: 60, source: .configured))
        // At α = 0 every zone serves a third: zone a (60%) sends 40/60 of its traffic away.
        #expect(abs(routes.plan.route(from: 0, to: 0) - 1.0 / 1.8) < 1e-9)

        table.applyMeasuredDemand(["web": ["a": 10, "b": 30, "c": 60]], at: Date())
        let shifted = table.version
        routes = try #require(table.snapshot.routes(for: "web"))
        #expect(routes.demand["c"] == ZoneDemand(rate: 60, source: .measured))
        #expect(routes.plan.route(from: 0, to: 0) == 1)  // zone a now has less than its share: all local

        // Within 10%: no new plan.
        table.applyMeasuredDemand(["web": ["a": 10.5, "b": 28, "c": 62]], at: Date())
        #expect(table.version == shifted)
        #expect(table.demandMeasuredAt != nil)
        table.applyMeasuredDemand(["web": ["a": 10, "b": 30, "c": 80]], at: Date())
        #expect(table.version > shifted)
    }
}
