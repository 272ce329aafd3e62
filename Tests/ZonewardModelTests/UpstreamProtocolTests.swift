import Testing
import ZonewardModel

@Suite struct UpstreamProtocolTests {
    func service(_ extra: String) -> String {
        """
        zones: [{name: a, region: r}]
        services:
          - name: api
            listen: 127.0.0.1:8080
            endpoints: [{address: 127.0.0.1:9000, zone: a}]
        \(extra.isEmpty ? "" : "    " + extra)
        """
    }

    func problems(_ yaml: String) -> [String] {
        do {
            _ = try ZonewardConfiguration.parse(yaml: yaml)
            return []
        } catch {
            return error.problems.map(\.description)
        }
    }

    @Test func defaultsToHTTP1() throws {
        #expect(try ZonewardConfiguration.parse(yaml: service("")).services[0].upstreamProtocol == .http1)
    }

    @Test func decodesHTTP2() throws {
        let configuration = try ZonewardConfiguration.parse(yaml: service("upstreamProtocol: http2"))
        #expect(configuration.services[0].upstreamProtocol == .http2)
    }

    @Test func aBadValueIsNamedWithItsPath() {
        #expect(
            problems(service("upstreamProtocol: h3"))
                == [#"services[0].upstreamProtocol: unknown value "h3" (valid: http1, http2)"#]
        )
    }

    @Test func http2IsForHTTPServicesOnly() {
        let found = problems(service("protocol: tcp\n    upstreamProtocol: http2"))
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("services[0].upstreamProtocol: http2 applies to http services only") == true)
    }

    @Test func aNonStringIsRefused() {
        #expect(problems(service("upstreamProtocol: [http2]")).first?.hasPrefix("services[0].upstreamProtocol") == true)
    }
}

@Suite struct GRPCHealthCheckConfigurationTests {
    let shared = UpstreamProtocolTests()

    @Test func decodesAServiceName() throws {
        let yaml = shared.service("upstreamProtocol: http2\n    healthCheck: {grpc: orders.v1.Orders, interval: 1s}")
        let check = try ZonewardConfiguration.parse(yaml: yaml).services[0].healthCheck
        #expect(check.grpc == "orders.v1.Orders")
        #expect(check.path == nil)
        #expect(check.interval == .seconds(1))
    }

    @Test func anEmptyNameAsksForTheServersOverallHealth() throws {
        let yaml = shared.service("upstreamProtocol: http2\n    healthCheck: {grpc: \"\"}")
        #expect(try ZonewardConfiguration.parse(yaml: yaml).services[0].healthCheck.grpc == "")
    }

    @Test func absentMeansNoGRPCCheck() throws {
        let yaml = shared.service("upstreamProtocol: http2\n    healthCheck: {interval: 1s}")
        #expect(try ZonewardConfiguration.parse(yaml: yaml).services[0].healthCheck.grpc == nil)
    }

    @Test func itNeedsHTTP2Upstreams() {
        #expect(
            shared.problems(shared.service("healthCheck: {grpc: orders}"))
                == [
                    "services[0].healthCheck.grpc: the gRPC health protocol needs upstreamProtocol: http2 (this service is http1)"
                ]
        )
        let tcp = shared.problems(shared.service("protocol: tcp\n    healthCheck: {grpc: orders}"))
        #expect(tcp.contains { $0.hasPrefix("services[0].healthCheck.grpc:") && $0.hasSuffix("(this service is tcp)") })
    }

    @Test func pathAndGRPCAreExclusive() {
        #expect(
            shared.problems(shared.service("upstreamProtocol: http2\n    healthCheck: {grpc: orders, path: /healthz}"))
                == ["services[0].healthCheck.grpc: give either path (an HTTP GET) or grpc (the gRPC health protocol)"]
        )
    }

    @Test(arguments: ["\"a b\"", "[orders]", "~", "\"caf\u{E9}\""])
    func badNamesAreNamedWithTheirPath(_ value: String) {
        let found = shared.problems(shared.service("upstreamProtocol: http2\n    healthCheck: {grpc: \(value)}"))
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("services[0].healthCheck.grpc: ") == true)
    }
}
