import Foundation
import ZonePlanner
import ZonewardModel

/// What the proxy's status page (`GET /` on the admin listener) shows, as plain values: the same facts as
/// `/admin/plan` and `/metrics`, nothing more.
struct ProxyStatus: Sendable, Equatable {
    struct Zone: Sendable, Equatable {
        var name: String
        var region: String
        /// The capacity the plan used: weights of the zone's eligible endpoints (0 when drained).
        var capacity: Double
        var demand: Double
        /// `measured`, `configured` or `equal`.
        var demandSource: String
        /// Traffic the plan sends to the zone, and the most it may.
        var load: Double
        var bound: Double
        var drained: Bool
        var endpoints: Int
        var healthy: Int
        var ejected: Int
    }

    struct Endpoint: Sendable, Equatable {
        var address: String
        var zone: String
        var weight: Double
        var healthy: Bool
        var ejected: Bool
        var eligible: Bool
        var outstanding: Int
    }

    struct Service: Sendable, Equatable {
        var name: String
        /// `local`, `spilling`, `draining`, `panic` or `unavailable`.
        var condition: String
        var crossZoneFraction: Double
        var crossRegionFraction: Double
        var maxLoadFactor: Double
        /// In configuration order; the heat maps' rows and columns.
        var zones: [Zone]
        /// `routes[source][destination]`: the plan's probabilities, in `zones` order.
        var routes: [[Double]]
        /// `requests[source][destination]`: requests counted by this proxy's metrics since it started.
        var requests: [[Double]]
        /// Requests that reached no endpoint (`destination_zone="none"`).
        var unrouted: Double
        var endpoints: [Endpoint]
        /// Where discovery stands (`synced: …`), when the service has discovered endpoints.
        var discovery: String?
    }

    var sourceZone: String
    var version: Int
    var drainedZones: [String]
    var services: [Service]
    var generatedAt: Date
    /// When measured demand was last applied; nil while nothing was measured.
    var demandMeasuredAt: Date?
}

extension ProxyStatus {
    /// The status of `snapshot`, with the measured traffic read from the proxy's Prometheus text.
    init(
        snapshot: RoutingSnapshot,
        discovery: [String: DiscoveryStatus],
        demandMeasuredAt: Date?,
        metricsText: String,
        now: Date
    ) {
        let samples = PrometheusText.parse(metricsText)
        let traffic = Dictionary(
            PrometheusText.traffic(samples).map { ($0.service, $0) },
            uniquingKeysWith: { first, _ in first }
        )
        var services: [Service] = []
        for routes in snapshot.services {
            let plan = routes.plan
            let names = routes.problem.zones.map(\.name)
            let measured = traffic[routes.service.name]
            let zones = routes.problem.zones.enumerated().map { index, zone in
                let endpoints = routes.allEndpoints.filter { $0.zone == zone.name }
                return Zone(
                    name: zone.name,
                    region: zone.region,
                    capacity: zone.capacity,
                    demand: routes.demand[zone.name]?.rate ?? zone.demand,
                    demandSource: routes.demand[zone.name]?.source.rawValue ?? "configured",
                    load: plan.load.indices.contains(index) ? plan.load[index] : 0,
                    bound: plan.bound.indices.contains(index) ? plan.bound[index] : 0,
                    drained: snapshot.drainedZones.contains(zone.name),
                    endpoints: endpoints.count,
                    healthy: endpoints.filter { !snapshot.unhealthy.contains($0.key) }.count,
                    ejected: endpoints.filter { snapshot.ejected.contains($0.key) }.count
                )
            }
            services.append(
                Service(
                    name: routes.service.name,
                    condition: routes.condition.rawValue,
                    crossZoneFraction: plan.crossZoneFraction,
                    crossRegionFraction: plan.crossRegionFraction,
                    maxLoadFactor: plan.maxLoadFactor,
                    zones: zones,
                    routes: names.indices.map { s in
                        names.indices.map { t in plan.count == names.count ? plan.route(from: s, to: t) : 0 }
                    },
                    requests: names.map { source in
                        names.map { destination in measured?.requests[ZonePair(source, destination)] ?? 0 }
                    },
                    unrouted: names.reduce(0) { $0 + (measured?.requests[ZonePair($1, "none")] ?? 0) },
                    endpoints: routes.allEndpoints.map { endpoint in
                        Endpoint(
                            address: endpoint.address.description,
                            zone: endpoint.zone,
                            weight: endpoint.weight,
                            healthy: !snapshot.unhealthy.contains(endpoint.key),
                            ejected: snapshot.ejected.contains(endpoint.key),
                            eligible: routes.eligibleKeys.contains(endpoint.key),
                            outstanding: endpoint.outstandingRequests
                        )
                    },
                    discovery: discovery[routes.service.name].map { status in
                        "\(status.state) since \(status.since.formatted(.iso8601)), \(status.endpoints) endpoints"
                            + (status.detail.isEmpty ? "" : ": \(status.detail)")
                    }
                )
            )
        }
        self.init(
            sourceZone: snapshot.sourceZone,
            version: snapshot.version,
            drainedZones: snapshot.drainedZones.sorted(),
            services: services,
            generatedAt: now,
            demandMeasuredAt: demandMeasuredAt
        )
    }
}

/// Renders the proxy's status page: per service, zones by region, the plan in force as a heat map beside the
/// measured traffic, and the endpoints. Every name is escaped.
enum StatusPage {
    /// Seconds between the page's reloads.
    static let refreshSeconds = 5

    static func render(_ status: ProxyStatus) -> String {
        var body = "<h1>Zoneward proxy · zone \(HTMLPage.escape(status.sourceZone))</h1>\n"
        let drained = status.drainedZones.isEmpty ? "none" : status.drainedZones.joined(separator: ", ")
        body += """
            <p class="meta">Plan version \(status.version) · drained zones: \(HTMLPage.escape(drained)) · \
            generated \(status.generatedAt.formatted(.iso8601)) · refreshes every \(refreshSeconds) s · \
            the same facts as <a href="/admin/plan">/admin/plan</a> and <a href="/metrics">/metrics</a></p>\n
            """
        if status.services.isEmpty { body += "<p>No service is configured.</p>\n" }
        for service in status.services {
            body += section(service, status: status)
        }
        return HTMLPage.document(
            title: "Zoneward proxy · \(status.sourceZone)",
            refreshSeconds: refreshSeconds,
            body: body
        )
    }

    static func section(_ service: ProxyStatus.Service, status: ProxyStatus) -> String {
        let name = HTMLPage.escape(service.name)
        var html =
            "<h2 id=\"service-\(name)\">\(name) \(HTMLPage.badge(service.condition, tone(service.condition)))</h2>\n"
        var meta = [
            "cross-zone \(percent(service.crossZoneFraction))",
            "cross-region \(percent(service.crossRegionFraction))",
            "busiest zone at \(HTMLPage.decimal(service.maxLoadFactor))× its fair share",
        ]
        if let measuredAt = status.demandMeasuredAt, service.zones.contains(where: { $0.demandSource == "measured" }) {
            meta.append("demand measured at \(measuredAt.formatted(.iso8601))")
        }
        html += "<p class=\"meta\">\(HTMLPage.escape(meta.joined(separator: " · ")))</p>\n"
        html += "<h3>Zones by region</h3>\n" + zonesTable(service)
        html += "<h3>Routes</h3>\n<div class=\"maps\">\n"
        let names = service.zones.map(\.name)
        html += "<figure>\n<div class=\"title\">Plan in force</div>\n"
        html += HTMLPage.svg(
            .init(
                id: "plan",
                rows: names,
                columns: names,
                values: service.routes.map { $0.map { Optional($0) } },
                highlightRow: status.sourceZone
            )
        )
        html += """
            <figcaption>The plan in force: the probability that a request starting in a zone (row) is served \
            in a zone (column).</figcaption>
            </figure>\n
            """
        html += "<figure>\n<div class=\"title\">Measured traffic</div>\n"
        html += HTMLPage.svg(measuredMap(service, sourceZone: status.sourceZone))
        let total = service.requests.joined().reduce(0, +)
        var caption = """
            Measured by this proxy since it started: the share of the \(HTMLPage.quantity(total)) requests from \
            each zone served in each zone. This proxy counts the requests that start in \
            \(status.sourceZone); the other zones' rows are on their proxies.
            """
        if service.unrouted > 0 {
            caption += " \(HTMLPage.quantity(service.unrouted)) requests reached no endpoint."
        }
        html += "<figcaption>\(HTMLPage.escape(caption))</figcaption>\n</figure>\n</div>\n"
        html += "<h3>Endpoints</h3>\n" + endpointsTable(service)
        if let discovery = service.discovery {
            html += "<p class=\"meta\">Discovery: \(HTMLPage.escape(discovery))</p>\n"
        }
        return html
    }

    /// Each source row as shares of its requests; a row with none is not measured (nil).
    static func measuredMap(_ service: ProxyStatus.Service, sourceZone: String) -> HTMLPage.HeatMap {
        let names = service.zones.map(\.name)
        var values: [[Double?]] = []
        var tooltips: [[String]] = []
        for (s, source) in names.enumerated() {
            let row = service.requests.indices.contains(s) ? service.requests[s] : []
            let total = row.reduce(0, +)
            values.append(names.indices.map { t in total > 0 && row.indices.contains(t) ? row[t] / total : nil })
            tooltips.append(
                names.enumerated().map { t, destination in
                    let count = row.indices.contains(t) ? row[t] : 0
                    return total > 0
                        ? "\(source) → \(destination): \(HTMLPage.quantity(count)) of \(HTMLPage.quantity(total)) requests"
                        : "\(source) → \(destination): not measured here"
                }
            )
        }
        return .init(
            id: "measured",
            rows: names,
            columns: names,
            values: values,
            tooltips: tooltips,
            highlightRow: sourceZone
        )
    }

    static func zonesTable(_ service: ProxyStatus.Service) -> String {
        var regions: [String] = []
        for zone in service.zones where !regions.contains(zone.region) { regions.append(zone.region) }
        var rows: [[String]] = []
        for region in regions {
            rows.append(["<tr class=\"region\"><th colspan=\"7\">Region \(HTMLPage.escape(region))</th></tr>"])
            for zone in service.zones where zone.region == region {
                let health: String
                if zone.endpoints == 0 {
                    health = HTMLPage.badge("no endpoints", .idle)
                } else {
                    let tone: HTMLPage.Tone =
                        zone.healthy == zone.endpoints && zone.ejected == 0 ? .ok : (zone.healthy == 0 ? .bad : .warn)
                    var text = "\(zone.healthy)/\(zone.endpoints) healthy"
                    if zone.ejected > 0 { text += ", \(zone.ejected) ejected" }
                    health = HTMLPage.badge(text, tone)
                }
                rows.append([
                    "<td data-zone=\"\(HTMLPage.escape(zone.name))\">\(HTMLPage.escape(zone.name))</td>",
                    HTMLPage.numberCell(HTMLPage.quantity(zone.capacity)),
                    "<td class=\"num\">\(HTMLPage.escape(HTMLPage.quantity(zone.demand))) "
                        + "<small>(\(HTMLPage.escape(zone.demandSource)))</small></td>",
                    HTMLPage.numberCell(HTMLPage.quantity(zone.load)),
                    HTMLPage.numberCell(HTMLPage.quantity(zone.bound)),
                    zone.drained ? HTMLPage.badge("drained", .warn) : "no",
                    health,
                ])
            }
        }
        return HTMLPage.table(["Zone", "Capacity", "Demand", "Load (plan)", "Bound", "Drain", "Health"], rows)
    }

    static func endpointsTable(_ service: ProxyStatus.Service) -> String {
        guard !service.endpoints.isEmpty else { return "<p>No endpoint.</p>\n" }
        let rows = service.endpoints.map { endpoint -> [String] in
            [
                HTMLPage.escape(endpoint.address),
                HTMLPage.escape(endpoint.zone),
                HTMLPage.numberCell(HTMLPage.quantity(endpoint.weight)),
                endpoint.healthy ? HTMLPage.badge("healthy", .ok) : HTMLPage.badge("unhealthy", .bad),
                endpoint.ejected ? HTMLPage.badge("ejected", .bad) : "no",
                endpoint.eligible ? "yes" : HTMLPage.badge("no", .warn),
                HTMLPage.numberCell(String(endpoint.outstanding)),
            ]
        }
        return HTMLPage.table(["Endpoint", "Zone", "Weight", "Health", "Ejected", "Eligible", "Outstanding"], rows)
    }

    static func tone(_ condition: String) -> HTMLPage.Tone {
        switch condition {
        case "local": .ok
        case "spilling", "draining": .warn
        default: .bad
        }
    }

    static func percent(_ fraction: Double) -> String {
        fraction.isFinite ? String(format: "%.1f%%", fraction * 100) : "—"
    }
}
