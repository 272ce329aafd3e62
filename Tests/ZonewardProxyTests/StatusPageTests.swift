import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
import ZonePlanner
import ZonewardModel

@testable import ZonewardProxy

@Suite struct StatusPageTests {
    let configuration = try! ZonewardConfiguration.parse(
        yaml: """
            zones:
              - {name: a, region: east}
              - {name: w, region: west}
              - {name: b, region: east}
            services:
              - name: web
                listen: 127.0.0.1:1
                demand: {a: 6, b: 3, w: 1}
                endpoints:
                  - {address: 127.0.0.1:11, zone: a, weight: 1}
                  - {address: 127.0.0.1:13, zone: b, weight: 1}
                  - {address: 127.0.0.1:14, zone: b, weight: 1}
                  - {address: 127.0.0.1:15, zone: w, weight: 3}
            """
    )
    let now = Date(timeIntervalSince1970: 1_750_000_000)

    func makeTable() -> RoutingTable {
        RoutingTable(
            configuration: configuration,
            sourceZone: "a",
            metrics: ProxyMetrics(),
            logger: Logger(label: "test")
        )
    }

    func status(_ table: RoutingTable) -> ProxyStatus {
        ProxyStatus(
            snapshot: table.snapshot,
            discovery: table.discoveryStatus,
            demandMeasuredAt: table.demandMeasuredAt,
            metricsText: table.metrics.registry.emitToString(),
            now: now
        )
    }

    /// The heat map's numbers are the plan's (as /admin/plan has them, two decimals), and the measured map's
    /// are the shares of this proxy's counted requests.
    @Test func theHeatMapsCarryThePlanAndTheMeasuredShares() throws {
        let table = makeTable()
        let routes = try #require(table.snapshot.routes(for: "web"))
        for _ in 0..<7 { routes.metrics.recordRequest(destination: 0, status: 200, sent: 10, received: 10) }
        for _ in 0..<3 { routes.metrics.recordRequest(destination: 2, status: 200, sent: 10, received: 10) }
        routes.metrics.recordRequest(destination: -1, status: 503, sent: 0, received: 0)
        let status = status(table)
        let service = try #require(status.services.first)
        #expect(service.zones.map(\.name) == ["a", "w", "b"])
        #expect(service.requests[0] == [7, 0, 3])
        #expect(service.unrouted == 1)

        let html = StatusPage.render(status)
        let report = PlanReport(plan: routes.plan, envoy: routes.envoy)
        for source in ["a", "w", "b"] {
            for destination in ["a", "w", "b"] {
                let probability = try #require(report.routes[source]?[destination])
                let cell = try #require(cellText(html, "plan \(source) \(destination)"))
                #expect(cell == String(format: "%.2f", probability), "\(source) → \(destination)")
            }
        }
        // Zone a has less capacity than its demand: some of its requests cross, so the row is not all local.
        #expect(try #require(report.routes["a"]?["a"]) < 1)
        #expect(cellText(html, "measured a a") == "0.70")
        #expect(cellText(html, "measured a w") == "0.00")
        #expect(cellText(html, "measured a b") == "0.30")
        #expect(cellText(html, "measured b a") == "—")
        #expect(html.contains("1 requests reached no endpoint"))
    }

    @Test func thePageShowsZonesByRegionEndpointsDrainsAndHealth() throws {
        let table = makeTable()
        table.setDrainedZones(["b"])
        let endpoint = try #require(table.endpoints.first { $0.address.port == 15 })
        for _ in 0..<3 { table.recordHealthCheck(endpoint, success: false, detail: "test") }
        let html = StatusPage.render(status(table))
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"))
        #expect(html.contains("<h1>Zoneward proxy · zone a</h1>"))
        // Regions in order of first appearance, each followed by its zones.
        let east = try #require(html.range(of: "Region east"))
        let west = try #require(html.range(of: "Region west"))
        let zoneB = try #require(html.range(of: "<td data-zone=\"b\">"))
        let zoneW = try #require(html.range(of: "<td data-zone=\"w\">"))
        #expect(east.lowerBound < zoneB.lowerBound && zoneB.lowerBound < west.lowerBound)
        #expect(west.lowerBound < zoneW.lowerBound)
        #expect(html.contains("badge warn\">drained"))
        #expect(html.contains("0/1 healthy"))
        #expect(html.contains("<td>127.0.0.1:15</td><td>w</td>"))
        #expect(html.contains("badge bad\">unhealthy"))
        #expect(html.contains("draining"))
        #expect(html.contains("6 <small>(configured)</small>"))
        // Nothing external, no script.
        #expect(!html.contains("<script") && !html.contains("<link") && !html.contains(" src="))
    }

    /// Service and zone names, endpoint addresses and discovery details are escaped.
    @Test func namesAreEscaped() {
        let zone = ProxyStatus.Zone(
            name: "<script>alert(1)</script>",
            region: "r\"egion",
            capacity: 1,
            demand: 1,
            demandSource: "configured",
            load: 1,
            bound: 1.2,
            drained: false,
            endpoints: 1,
            healthy: 1,
            ejected: 0
        )
        let status = ProxyStatus(
            sourceZone: "<script>alert(1)</script>",
            version: 1,
            drainedZones: ["<b>x</b>"],
            services: [
                .init(
                    name: "<script>svc</script>",
                    condition: "local",
                    crossZoneFraction: 0,
                    crossRegionFraction: 0,
                    maxLoadFactor: 1,
                    zones: [zone],
                    routes: [[1]],
                    requests: [[4]],
                    unrouted: 0,
                    endpoints: [
                        .init(
                            address: "<img src=x>",
                            zone: zone.name,
                            weight: 1,
                            healthy: true,
                            ejected: false,
                            eligible: true,
                            outstanding: 0
                        )
                    ],
                    discovery: "stale: <i>api</i>"
                )
            ],
            generatedAt: now,
            demandMeasuredAt: nil
        )
        let html = StatusPage.render(status)
        #expect(!html.contains("<script"))
        #expect(!html.contains("<img"))
        #expect(!html.contains("<b>x"))
        #expect(!html.contains("<i>api"))
        #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        #expect(html.contains("Region r&quot;egion"))
        #expect(
            html.contains(
                "data-cell=\"plan &lt;script&gt;alert(1)&lt;/script&gt; &lt;script&gt;alert(1)&lt;/script&gt;\""
            )
        )
    }

    /// `GET /` is the page on the admin listener, and not found on the probes listener.
    @Test func theAdminListenerServesThePageAndTheProbesListenerDoesNot() throws {
        let table = makeTable()
        for probesOnly in [false, true] {
            let channel = EmbeddedChannel(
                handler: AdminHandler(table: table, readiness: Readiness(), probesOnly: probesOnly)
            )
            let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
            try channel.writeInbound(HTTPServerRequestPart.head(head))
            try channel.writeInbound(HTTPServerRequestPart.end(nil))
            guard case .head(let response) = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
                Issue.record("no response head")
                return
            }
            var body = ""
            while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
                if case .body(.byteBuffer(let buffer)) = part { body += String(buffer: buffer) }
            }
            if probesOnly {
                #expect(response.status == .notFound)
                #expect(!body.contains("<html"))
            } else {
                #expect(response.status == .ok)
                #expect(response.headers["Content-Type"] == ["text/html; charset=utf-8"])
                #expect(body.contains("data-cell=\"plan a a\""))
            }
            _ = try channel.finish()
        }
    }

    /// The text of the heat-map cell `data-cell="NAME"`.
    func cellText(_ html: String, _ name: String) -> String? {
        guard let start = html.range(of: "data-cell=\"\(name)\"") else { return nil }
        let rest = html[start.upperBound...]
        guard let cellEnd = rest.range(of: "</g>") else { return nil }
        let cell = rest[..<cellEnd.lowerBound]
        guard let text = cell.range(of: "<text"), let open = cell[text.upperBound...].range(of: ">"),
            let close = cell[open.upperBound...].range(of: "</text>")
        else { return nil }
        return String(cell[open.upperBound..<close.lowerBound])
    }
}
