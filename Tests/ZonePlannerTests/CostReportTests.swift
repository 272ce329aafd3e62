import Testing
import ZonewardModel

@testable import ZonePlanner

/// The cost report on a fixed metrics fixture, every figure computed by hand.
@Suite struct CostReportTests {
    static let configuration: ZonewardConfiguration = {
        // Two zones of one region, one endpoint each (capacity 1 and 1); α in force 0.2.
        let yaml = """
            zones:
              - {name: a, region: r1}
              - {name: b, region: r1}
            routing: {overloadFactor: 0.2}
            services:
              - name: web
                listen: 127.0.0.1:1
                endpoints:
                  - {address: 127.0.0.1:2, zone: a}
                  - {address: 127.0.0.1:3, zone: b}
            """
        return (try? ZonewardConfiguration.parse(yaml: yaml)) ?? ZonewardConfiguration(zones: [])
    }()

    /// A proxy's /metrics in a day: from a, 2 GB stayed and 1 GB went to b; from b, 1 GB stayed.
    static let metrics = """
        # HELP zoneward_bytes_total Bytes per zone pair.
        # TYPE zoneward_bytes_total counter
        zoneward_bytes_total{service="web",source_zone="a",destination_zone="a",direction="request"} 1.5e9
        zoneward_bytes_total{service="web",source_zone="a",destination_zone="a",direction="response"} 0.5e9
        zoneward_bytes_total{service="web",source_zone="a",destination_zone="b",direction="response"} 1000000000
        zoneward_bytes_total{service="web",source_zone="b",destination_zone="b",direction="request"} 1e9
        zoneward_requests_total{service="web",source_zone="a",destination_zone="b",code_class="2xx"} 40
        zoneward_requests_total{service="other \\"quoted\\"",source_zone="a",destination_zone="b",code_class="2xx"} 7
        not a sample line {
        """

    func report() -> CostReport {
        let traffic = PrometheusText.traffic(PrometheusText.parse(Self.metrics))
        return CostReport.build(
            traffic: traffic,
            configuration: Self.configuration,
            prices: TransferPrices(),
            window: 86_400
        )
    }

    func alternative(_ name: String) -> CostReport.Alternative? {
        report().alternatives.first { $0.name == name }
    }

    @Test func metricsAreReadAndSummedOverDirections() {
        let traffic = PrometheusText.traffic(PrometheusText.parse(Self.metrics))
        let web = traffic.first { $0.service == "web" }
        #expect(web?.bytes[ZonePair("a", "a")] == 2e9)
        #expect(web?.bytes[ZonePair("a", "b")] == 1e9)
        #expect(web?.requests[ZonePair("a", "b")] == 40)
        #expect(traffic.contains { $0.service == "other \"quoted\"" })
    }

    /// 1 GB crossed zones at $0.01 each way: $0.02 for the day, $0.60 for 30 days; each zone carried 2 GB of
    /// 4, exactly its share.
    @Test func theMeasuredBill() throws {
        let measured = try #require(alternative("measured"))
        #expect(abs(measured.cost - 0.02) < 1e-12)
        #expect(abs(measured.monthly - 0.60) < 1e-9)
        #expect(abs(measured.worstOverload - 1) < 1e-12)
        #expect(abs(measured.crossZoneShare - 0.25) < 1e-12)
    }

    /// Envoy keeps 0.5 of all traffic in a (2 GB) and sends a's other 1 GB to b: the measured routing.
    /// All-local costs nothing but loads a with 3 GB for a 2 GB share. Round robin sends half of everything
    /// across: 2 GB, $0.04.
    @Test func theAlternatives() throws {
        let envoy = try #require(alternative("envoy"))
        #expect(abs(envoy.cost - 0.02) < 1e-12)
        #expect(abs(envoy.worstOverload - 1) < 1e-12)
        let local = try #require(alternative("prefer-same-zone"))
        #expect(local.cost == 0)
        #expect(abs(local.worstOverload - 1.5) < 1e-12)
        let roundRobin = try #require(alternative("round-robin"))
        #expect(abs(roundRobin.cost - 0.04) < 1e-12)
        #expect(abs(roundRobin.crossZoneShare - 0.5) < 1e-12)
    }

    /// Zoneward at α: zone a may serve (1 + α) · 2 GB, so 3 − 2.4 = 0.6 GB crosses at α = 0.2 ($0.012), none
    /// at α = 0.5 (a serves 3 GB: 1.5× its share).
    @Test func theAlphaSweep() throws {
        let sweep = report().alternatives.compactMap(\.alpha)
        #expect(sweep == [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1])
        let atPoint2 = try #require(alternative("zoneward α=0.2"))
        #expect(abs(atPoint2.cost - 0.012) < 1e-12)
        #expect(abs(atPoint2.worstOverload - 1.2) < 1e-9)
        let atHalf = try #require(alternative("zoneward α=0.5"))
        #expect(atHalf.cost < 1e-12)
        #expect(abs(atHalf.worstOverload - 1.5) < 1e-9)
        #expect(report().alphaInForce == 0.2)
    }

    @Test func thePlotNamesEveryAlternative() {
        let svg = ParetoPlot.svg(report())
        for label in ["measured (plan in force)", "envoy", "prefer-same-zone", "round-robin", "α=0.2", "α=0.5…1"] {
            #expect(svg.contains(label), "\(label)")
        }
        #expect(svg.hasPrefix("<svg"))
    }
}
