import Foundation
import Testing
import ZonewardModel

@Suite struct ConfigurationTests {
    static let valid = """
        zones:
          - {name: us-east-1a, region: us-east-1}
          - {name: us-east-1b, region: us-east-1}
          - {name: us-west-2a, region: us-west-2}
        routing: {overloadFactor: 0.3, costs: {crossZone: 2, crossRegion: 20, pairs: [{from: us-east-1a, to: us-west-2a, cost: 4}]}}
        services:
          - name: web
            listen: 0.0.0.0:8080
            demand: {us-east-1a: 2, us-east-1b: 1}
            endpoints:
              - {address: 10.0.1.10:80, zone: us-east-1a, weight: 2}
              - {address: "[fd00::1]:80", zone: us-west-2a}
            healthCheck: {path: /healthz, interval: 500ms}
        """

    @Test func decodesAValidConfiguration() throws {
        let configuration = try ZonewardConfiguration.parse(yaml: Self.valid)
        #expect(configuration.zones.count == 3)
        #expect(configuration.regions == ["us-east-1", "us-west-2"])
        #expect(configuration.routing.overloadFactor == 0.3)
        let web = try #require(configuration.service(named: "web"))
        #expect(web.listen == HostPort(host: "0.0.0.0", port: 8080))
        #expect(web.endpoints[1].address.host == "fd00::1")
        #expect(web.endpoints[1].weight == 1)
        #expect(web.regions == ["us-east-1", "us-west-2"])
        #expect(web.demand == ["us-east-1a": 2, "us-east-1b": 1])
        #expect(web.healthCheck.interval == .milliseconds(500))
        #expect(web.healthCheck.timeout == .seconds(1))
        let east = configuration.zones[0]
        let west = configuration.zones[2]
        #expect(configuration.routing.costs.cost(from: east, to: west) == 4)
        #expect(configuration.routing.costs.cost(from: west, to: east) == 20)
        #expect(configuration.routing.costs.cost(from: east, to: configuration.zones[1]) == 2)
        #expect(configuration.routing.costs.cost(from: east, to: east) == 0)
    }

    @Test func theShippedExampleIsValid() throws {
        let path = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("config/zoneward.yaml").path
        let configuration = try ZonewardConfiguration.load(file: path)
        #expect(configuration.regions.count == 2)
        #expect(configuration.zones.count >= 3)
        let zonesWithEndpoints = Set(configuration.services.flatMap { $0.endpoints.map(\.zone) })
        #expect(zonesWithEndpoints == Set(configuration.zones.map(\.name)))
    }

    @Test func namesTheUnknownZoneWithItsPathAndTheKnownOnes() {
        let yaml = Self.valid.replacingOccurrences(
            of: "{address: \"[fd00::1]:80\", zone: us-west-2a}",
            with: "{address: 10.0.0.1:80, zone: us-east-1d}"
        )
        #expect(
            problems(yaml) == [
                #"services[0].endpoints[1].zone: unknown zone "us-east-1d" (known: us-east-1a, us-east-1b, us-west-2a)"#
            ]
        )
    }

    /// Every problem is reported at once, each with its own path.
    @Test func collectsEveryProblem() {
        let yaml = """
            zones:
              - {name: a, region: r}
              - {name: a, region: r}
              - {region: r}
            routing: {overloadFactor: -1, costs: {crossZone: .nan}}
            services:
              - name: web
                listen: nowhere
                protocol: udp
                endpoints:
                  - {address: 10.0.0.1:99999, zone: a, weight: -2}
                healthCheck: {interval: soon, unhealthyThreshold: 0}
                colour: blue
            """
        let found = problems(yaml)
        let expected = [
            #"zones[1].name: duplicate zone name "a""#,
            "zones[2].name: missing required field",
            "routing.overloadFactor: must be ≥ 0, got -1",
            "routing.costs.crossZone: must be a finite number, got nan",
            #"services[0].listen: expected host:port with a port from 0 to 65535, e.g. 127.0.0.1:8080, got "nowhere""#,
            #"services[0].protocol: unknown value "udp" (valid: http, tcp)"#,
            "services[0].endpoints[0].weight: must be ≥ 0, got -2",
            #"services[0].healthCheck.interval: expected a duration such as 500ms, 2s, 30m or 1h, got "soon""#,
            "services[0].healthCheck.unhealthyThreshold: must be ≥ 1, got 0",
            "services[0].colour: unknown field",
        ]
        for line in expected {
            #expect(found.contains { $0.hasPrefix(line) }, "missing: \(line)\nfound: \(found)")
        }
        #expect(found.contains { $0.hasPrefix("services[0].endpoints[0].address:") })
    }

    @Test func wrongTypesAreNamed() {
        let found = problems("zones: {name: a}\nservices: 3")
        #expect(found.contains { $0.hasPrefix("zones: expected a list, got a mapping") })
        #expect(found.contains { $0.hasPrefix(#"services: expected a list, got "3""#) })
    }

    @Test func notYAMLAtAll() {
        let found = problems("zones: [unclosed")
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("not valid YAML or JSON") == true)
    }

    @Test func missingFileIsReportedWithItsPath() {
        #expect(throws: ConfigurationError.self) { try ZonewardConfiguration.load(file: "/nonexistent/zoneward.yaml") }
        do {
            _ = try ZonewardConfiguration.load(file: "/nonexistent/zoneward.yaml")
        } catch {
            #expect(error.description == "/nonexistent/zoneward.yaml: no such file")
        }
    }

    @Test func duplicateListenersAndServiceNames() {
        let yaml = """
            zones: [{name: a, region: r}]
            services:
              - {name: web, listen: 127.0.0.1:80, endpoints: [{address: 127.0.0.1:1, zone: a}]}
              - {name: web, listen: 127.0.0.1:80, endpoints: [{address: 127.0.0.1:2, zone: a}]}
            """
        let found = problems(yaml)
        #expect(found.contains(#"services[1].name: duplicate service name "web""#))
        #expect(found.contains { $0.hasPrefix("services[1].listen: 127.0.0.1:80 is already the listener") })
    }

    private func problems(_ yaml: String) -> [String] {
        do {
            _ = try ZonewardConfiguration.parse(yaml: yaml)
            return []
        } catch {
            return error.problems.map(\.description)
        }
    }
}

@Suite struct PlanTopologyTests {
    @Test func decodesYAMLAndJSON() throws {
        let yaml = try PlanTopology.parse(
            """
            overloadFactor: 0.5
            costs: {pairs: [{from: a, to: b, cost: 4}]}
            zones:
              - {name: a, region: r1, demand: 120, capacity: 100}
              - {name: b, region: r2, demand: 0, capacity: 1.5}
            """
        )
        let json = try PlanTopology.parse(
            #"{"overloadFactor": 0.5, "costs": {"pairs": [{"from": "a", "to": "b", "cost": 4}]}, "#
                + #""zones": [{"name": "a", "region": "r1", "demand": 120, "capacity": 100}, "#
                + #"{"name": "b", "region": "r2", "demand": 0, "capacity": 1.5}]}"#
        )
        #expect(yaml == json)
        #expect(yaml.zones[1].capacity == 1.5)
        #expect(yaml.costs.crossRegion == 10)
    }

    @Test(arguments: [
        ("zones: []", "zones: at least one zone is needed"),
        ("overloadFactor: -0.1\nzones: [{name: a, region: r, demand: 1, capacity: 1}]", "overloadFactor: must be ≥ 0"),
        ("zones: [{name: a, region: r, demand: -1, capacity: 1}]", "zones[0].demand: must be ≥ 0"),
        ("zones: [{name: a, region: r, demand: .inf, capacity: 1}]", "zones[0].demand: must be a finite number"),
        (
            "zones: [{name: a, region: r, demand: lots, capacity: 1}]",
            #"zones[0].demand: expected a number, got "lots""#
        ),
        ("zones: [{name: a, region: r, demand: \"3\", capacity: 1}]", #"zones[0].demand: expected a number"#),
        ("zones: [{name: a, region: r, capacity: 1}]", "zones[0].demand: missing required field"),
        (
            "zones: [{name: a, region: r, demand: 1, capacity: 1}, {name: a, region: r, demand: 1, capacity: 1}]",
            #"zones[1].name: duplicate zone name "a""#
        ),
        (
            "costs: {pairs: [{from: a, to: x, cost: 1}]}\nzones: [{name: a, region: r, demand: 1, capacity: 1}]",
            #"costs.pairs[0].to: unknown zone "x" (known: a)"#
        ),
        (
            "costs: {pairs: [{from: a, to: a, cost: 1}]}\nzones: [{name: a, region: r, demand: 1, capacity: 1}]",
            "costs.pairs[0]: from and to are the same zone"
        ),
        ("zones: [{name: a, region: r, demand: 1, capacity: 0}]", "zones: every zone has capacity 0"),
        ("{}", "zones: missing required field"),
    ])
    func refusesBadInputNamingTheField(text: String, expected: String) {
        do {
            _ = try PlanTopology.parse(text)
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.problems.contains { $0.description.hasPrefix(expected) }, "\(error.problems)")
        }
    }
}

@Suite struct ValueParsingTests {
    @Test(arguments: [
        ("500ms", Duration.milliseconds(500)), ("2s", .seconds(2)), ("30m", .seconds(1800)),
        ("1h30m", .seconds(5400)), ("1d", .seconds(86_400)), ("1.5s", .milliseconds(1500)),
    ])
    func parsesDurations(text: String, expected: Duration) {
        #expect(TimeSpan.parse(text) == expected)
    }

    @Test(arguments: ["", "5", "s", "5 parsecs", "-1s", "1x"])
    func refusesBadDurations(text: String) {
        #expect(TimeSpan.parse(text) == nil)
    }

    @Test func formatsDurations() {
        #expect(TimeSpan.format(.seconds(5400)) == "1h30m")
        #expect(TimeSpan.format(.milliseconds(250)) == "250ms")
        #expect(TimeSpan.format(.zero) == "0s")
    }

    @Test func parsesHostPorts() {
        #expect(HostPort(parsing: "127.0.0.1:80") == HostPort(host: "127.0.0.1", port: 80))
        #expect(HostPort(parsing: "[::1]:8080") == HostPort(host: "::1", port: 8080))
        #expect(HostPort(parsing: "[::1]:8080")?.description == "[::1]:8080")
        for bad in ["127.0.0.1", "::1:80", "host:70000", ":80", "a b:1"] {
            #expect(HostPort(parsing: bad) == nil, "\(bad)")
        }
    }
}

@Suite struct DiscoveryConfigurationTests {
    func parse(_ discovery: String) throws(ConfigurationError) -> ZonewardConfiguration {
        try ZonewardConfiguration.parse(
            yaml: """
                zones: [{name: a, region: r}]
                services:
                  - name: web
                    listen: 127.0.0.1:8080
                    discovery: \(discovery)
                """
        )
    }

    @Test func kubernetesWithAPortNameOrNumber() throws {
        let named = try parse("{kubernetes: {namespace: shop, service: web, port: http}}")
        #expect(
            named.services[0].discovery == .kubernetes(.init(namespace: "shop", service: "web", port: .name("http")))
        )
        #expect(named.services[0].endpoints.isEmpty)
        let numbered = try parse("{kubernetes: {service: web, port: 8080}}")
        #expect(numbered.services[0].discovery == .kubernetes(.init(service: "web", port: .number(8080))))
    }

    @Test func badDiscoveryIsNamed() {
        for (yaml, path) in [
            ("{kubernetes: {service: web, port: 70000}}", "services[0].discovery.kubernetes.port"),
            ("{kubernetes: {port: http}}", "services[0].discovery.kubernetes.service"),
            ("{kubernetes: {service: web}, dns: {name: x, port: 1, zone: a}}", "services[0].discovery"),
            ("{dns: [{name: web.internal, port: 80, zone: mars}]}", "services[0].discovery.dns[0].zone"),
        ] {
            do {
                _ = try parse(yaml)
                Issue.record("accepted \(yaml)")
            } catch {
                #expect(error.problems.contains { $0.path == path }, "\(yaml): \(error.problems)")
            }
        }
    }

    @Test func withoutEndpointsOrDiscoveryTheServiceIsRefused() {
        #expect(throws: ConfigurationError.self) {
            try ZonewardConfiguration.parse(
                yaml: "zones: [{name: a, region: r}]\nservices: [{name: web, listen: 127.0.0.1:8080}]"
            )
        }
    }
}
