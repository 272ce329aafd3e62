/// The configuration `zoneward run` uses when no `--config` is given: the same text as
/// `config/zoneward.yaml` (a test keeps the two equal).
extension ZonewardConfiguration {
    public static let embeddedDefaultYAML = """
        # Zoneward example configuration: two regions, three zones, one HTTP service.
        # Validate with: zoneward config check config/zoneward.yaml

        # The topology: every availability zone and the region it belongs to.
        zones:
          - {name: us-east-1a, region: us-east-1}
          - {name: us-east-1b, region: us-east-1}
          - {name: us-west-2a, region: us-west-2}

        # How the planner trades cost against balance.
        routing:
          overloadFactor: 0.2          # α: a zone may serve up to 20% above its fair share (default 0.2)
          costs:
            crossZone: 1               # cost of a hop between zones of one region (default 1)
            crossRegion: 10            # cost of a hop between regions (default 10)

        services:
          - name: web
            listen: 127.0.0.1:8080     # where the proxy accepts this service's traffic
            protocol: http             # http (default) or tcp
            routing: allRegions        # allRegions (stateless) or activeRegion (one writer region)
            regions: [us-east-1, us-west-2]   # primary first
            # Traffic that starts in each zone; optional (equal per zone if absent). Measured rates override it.
            demand: {us-east-1a: 2, us-east-1b: 1, us-west-2a: 1}
            endpoints:                 # weight: relative capacity (default 1)
              - {address: 127.0.0.1:18101, zone: us-east-1a, weight: 2}
              - {address: 127.0.0.1:18102, zone: us-east-1a, weight: 1}
              - {address: 127.0.0.1:18103, zone: us-east-1b, weight: 2}
              - {address: 127.0.0.1:18104, zone: us-east-1b, weight: 1}
              - {address: 127.0.0.1:18105, zone: us-west-2a, weight: 1}
              - {address: 127.0.0.1:18106, zone: us-west-2a, weight: 1}
            healthCheck:               # active checks per endpoint
              path: /healthz           # HTTP GET; omit to check by TCP connect
              interval: 2s
              timeout: 1s
              unhealthyThreshold: 3
              healthyThreshold: 2
            outlierDetection:          # passive: eject endpoints that keep failing real requests
              consecutiveFailures: 5
              baseEjection: 30s        # grows with each ejection of the same endpoint
              maxEjectedPercent: 50    # never eject more than half of a zone's endpoints

        admin:
          listen: 127.0.0.1:9901       # /metrics, /admin/plan, /healthz, /readyz
        """
}
