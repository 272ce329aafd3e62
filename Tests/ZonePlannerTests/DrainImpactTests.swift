import Testing
import ZonePlanner
import ZonewardModel

@Suite struct DrainImpactTests {
    let configuration = try! ZonewardConfiguration.parse(
        yaml: """
            zones:
              - {name: e1, region: east}
              - {name: e2, region: east}
              - {name: w1, region: west}
            services:
              - name: web
                listen: 127.0.0.1:8080
                endpoints:
                  - {address: 127.0.0.1:1, zone: e1}
                  - {address: 127.0.0.1:2, zone: e2}
                  - {address: 127.0.0.1:3, zone: w1}
              - name: db
                listen: 127.0.0.1:5432
                protocol: tcp
                routing: activeRegion
                regions: [east, west]
                endpoints:
                  - {address: 127.0.0.1:4, zone: e1}
                  - {address: 127.0.0.1:5, zone: w1}
            """
    )

    @Test func drainingOneOfTwoZonesIsSafeAndMovesTraffic() {
        let impacts = DrainImpact.assess(draining: "e2", configuration: configuration, drainedZones: [])
        let web = impacts.first { $0.service == "web" }
        #expect(web?.crossZoneBefore == 0)
        #expect((web?.crossZoneAfter ?? 0) > 0)
        #expect(web?.isUnsafe == false)
    }

    @Test func drainingTheActiveRegionsLastZoneIsUnsafe() {
        let impacts = DrainImpact.assess(draining: "e1", configuration: configuration, drainedZones: [])
        #expect(impacts.first { $0.service == "db" }?.regionsLeftEmpty == ["east"])
        // web still has e2 in east.
        #expect(impacts.first { $0.service == "web" }?.isUnsafe == false)
    }

    @Test func activeRegionFromStateIsRespected() {
        let impacts = DrainImpact.assess(
            draining: "e1",
            configuration: configuration,
            drainedZones: [],
            activeRegions: ["db": "west"]
        )
        #expect(impacts.first { $0.service == "db" }?.isUnsafe == false)
    }

    @Test func existingDrainsCount() {
        let impacts = DrainImpact.assess(draining: "e1", configuration: configuration, drainedZones: ["e2"])
        #expect(impacts.first { $0.service == "web" }?.regionsLeftEmpty == ["east"])
    }
}
