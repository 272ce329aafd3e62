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
