import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import ZonewardState

@testable import ZonewardFailover

@Suite struct DemandAggregatorTests {
    let start = Date(timeIntervalSince1970: 1_000_000)

    /// Per service and zone, the sum of each proxy's latest report; a proxy's new report replaces its old.
    @Test func sumsTheLatestReportOfEachProxyPerZone() {
        let aggregator = DemandAggregator(window: .seconds(30))
        aggregator.record(DemandReport(proxy: "p1", zone: "za", services: ["web": 10]), at: start)
        aggregator.record(DemandReport(proxy: "p2", zone: "za", services: ["web": 5, "db": 1]), at: start)
        aggregator.record(DemandReport(proxy: "p3", zone: "zb", services: ["web": 2.5]), at: start)
        aggregator.record(DemandReport(proxy: "p1", zone: "za", services: ["web": 20]), at: start + 5)
        #expect(aggregator.demand(at: start + 6) == ["web": ["za": 25, "zb": 2.5], "db": ["za": 1]])
    }

    /// A proxy that stopped reporting counts for three windows, then not at all.
    @Test func reportsExpireAfterThreeWindows() {
        let aggregator = DemandAggregator(window: .seconds(10))
        aggregator.record(DemandReport(proxy: "p1", zone: "za", services: ["web": 10]), at: start)
        aggregator.record(DemandReport(proxy: "p2", zone: "zb", services: ["web": 3]), at: start + 20)
        #expect(aggregator.demand(at: start + 30) == ["web": ["za": 10, "zb": 3]])
        #expect(aggregator.demand(at: start + 31) == ["web": ["zb": 3]])
        #expect(aggregator.demand(at: start + 51) == nil)
    }

    @Test func ratesAreRoundedToThreeSignificantDigits() {
        #expect(DemandAggregator.rounded(12.3456) == 12.3)
        #expect(DemandAggregator.rounded(0.0012345) == 0.00123)
        #expect(DemandAggregator.rounded(98_765) == 98_800)
        #expect(DemandAggregator.rounded(0) == 0)
    }
}

@Suite struct DemandReportAPITests {
    @Test func reportsAreAcceptedAndPublishedInTheSnapshot() async throws {
        let controller = try makeController()
        let app = controller.makeApplication()
        try await app.test(.router) { client in
            let body = jsonBody(#"{"proxy": "p1", "zone": "za", "services": {"orders": 42.5}}"#)
            try await client.execute(uri: "/v1/reports", method: .post, headers: authorized, body: body) {
                #expect($0.status == .noContent)
            }
            try await client.execute(uri: "/v1/reports", method: .post, body: body) {
                #expect($0.status == .unauthorized)
            }
        }
        #expect(controller.demand.demand(at: Date()) == ["orders": ["za": 42.5]])
    }

    @Test func badReportsAreRefusedNamingTheField() async throws {
        let app = try makeController().makeApplication()
        try await app.test(.router) { client in
            for (text, field) in [
                (#"{"proxy": "p1", "zone": "mars", "services": {}}"#, "zone:"),
                (#"{"proxy": "", "zone": "za", "services": {}}"#, "proxy:"),
                (#"{"proxy": "p1", "zone": "za", "services": {"orders": -1}}"#, "services.orders:"),
                (#"{"proxy": "p1", "zone": "za", "services": {"orders": 1e300}}"#, "services.orders:"),
                (#"{"proxy": "p1", "zone": "za"}"#, "body:"),
            ] {
                try await client.execute(uri: "/v1/reports", method: .post, headers: authorized, body: jsonBody(text)) {
                    #expect($0.status == .badRequest, "\(text)")
                    #expect(errorMessage($0).hasPrefix(field), "\(text): \(errorMessage($0))")
                }
            }
        }
    }
}

@Suite struct ScopedTokenTests {
    func makeScopedController() throws -> ControllerService {
        let base = try makeController()
        var settings = base.settings
        settings.scopedTokens = [.read: "reader", .report: "proxy", .operate: "operator"]
        return ControllerService(settings: settings, store: base.store, group: base.group, logger: base.logger)
    }

    /// A proxy's token reads snapshots and reports demand, and cannot fail anything over or drain.
    @Test func eachScopeMayDoItsPartOnly() async throws {
        let app = try makeScopedController().makeApplication()
        @Sendable func bearer(_ token: String) -> HTTPFields { [.authorization: "Bearer \(token)"] }
        let report = jsonBody(#"{"proxy": "p1", "zone": "za", "services": {"orders": 1}}"#)
        let drain = jsonBody(#"{"zone": "za", "duration": "1m", "reason": "test"}"#)
        try await app.test(.router) { client in
            for token in ["reader", "proxy", "operator", "secret"] {
                try await client.execute(uri: "/v1/snapshot?after=0", method: .get, headers: bearer(token)) {
                    #expect($0.status == .ok, "\(token) reads")
                }
            }
            for (token, status) in [
                ("proxy", HTTPResponse.Status.noContent), ("reader", .forbidden), ("operator", .forbidden),
            ] {
                try await client.execute(uri: "/v1/reports", method: .post, headers: bearer(token), body: report) {
                    #expect($0.status == status, "\(token) reports")
                }
            }
            for (token, status) in [
                ("proxy", HTTPResponse.Status.forbidden), ("reader", .forbidden), ("operator", .created),
            ] {
                try await client.execute(uri: "/v1/drains", method: .post, headers: bearer(token), body: drain) {
                    #expect($0.status == status, "\(token) drains")
                    if status == .forbidden { #expect(errorMessage($0).contains("may not operate")) }
                }
            }
            try await client.execute(uri: "/v1/snapshot?after=0", method: .get, headers: bearer("nobody")) {
                #expect($0.status == .unauthorized)
            }
        }
    }
}
