import Foundation

extension ZonewardConfiguration {
    /// Reads and validates a configuration file; throws `ConfigurationError` listing every problem.
    public static func load(file path: String) throws(ConfigurationError) -> ZonewardConfiguration {
        let text = try readDocument(path)
        do {
            return try parse(yaml: text)
        } catch {
            throw ConfigurationError(file: path, problems: error.problems)
        }
    }

    /// Parses and validates a configuration document; throws `ConfigurationError` listing every problem.
    public static func parse(yaml text: String) throws(ConfigurationError) -> ZonewardConfiguration {
        let reader = DocumentReader()
        let configuration = reader.parse(text).flatMap { decode($0, reader) }
        guard let configuration, reader.problems.isEmpty else {
            throw ConfigurationError(problems: reader.problems)
        }
        return configuration
    }

    private static func decode(_ root: DocumentValue, _ reader: DocumentReader) -> ZonewardConfiguration? {
        let known = ["zones", "routing", "timeouts", "services", "admin", "controller", "backups"]
        guard let fields = reader.mapping(root, known: known) else { return nil }
        let zones = reader.required(fields, "zones", in: root).map { decodeZones($0, reader).map(\.zone) } ?? []
        let timeouts = fields["timeouts"].map { decodeTimeouts($0, base: TimeoutConfiguration(), reader) } ?? .init()
        let zoneNames = zones.map(\.name)

        var routing = RoutingConfiguration()
        if let value = fields["routing"],
            let routingFields = reader.mapping(
                value,
                known: ["overloadFactor", "costs", "demandWindow", "replanThreshold", "measuredDemand"]
            )
        {
            if let measured = routingFields["measuredDemand"] {
                routing.measuredDemand = reader.bool(measured) ?? routing.measuredDemand
            }
            if let window = routingFields["demandWindow"] {
                routing.demandWindow = reader.duration(window, minimum: .seconds(1)) ?? routing.demandWindow
            }
            if let threshold = routingFields["replanThreshold"] {
                routing.replanThreshold = reader.number(threshold) ?? routing.replanThreshold
            }
            if let alpha = routingFields["overloadFactor"] {
                routing.overloadFactor = reader.number(alpha) ?? routing.overloadFactor
            }
            if let costs = routingFields["costs"] {
                routing.costs = decodeCosts(costs, zoneNames: zoneNames, reader) ?? routing.costs
            }
        }

        var services: [ServiceConfiguration] = []
        if let value = fields["services"], let list = reader.sequence(value) {
            for item in list {
                if let service = decodeService(item, zones: zones, timeouts: timeouts, reader) {
                    services.append(service)
                }
            }
            var seen: Set<String> = []
            for (index, service) in services.enumerated() where !seen.insert(service.name).inserted {
                reader.report("services[\(index)].name", "duplicate service name \"\(service.name)\"")
            }
            var listeners: [HostPort: String] = [:]
            for service in services {
                if let other = listeners[service.listen] {
                    reader.report(
                        "services[\(services.firstIndex(of: service) ?? 0)].listen",
                        "\(service.listen) is already the listener of service \"\(other)\""
                    )
                }
                listeners[service.listen] = service.name
            }
        }

        var admin = AdminConfiguration()
        if let value = fields["admin"], let adminFields = reader.mapping(value, known: ["listen", "probes"]) {
            admin.listen = adminFields["listen"].flatMap { hostPort($0, reader) } ?? admin.listen
            admin.probes = adminFields["probes"].flatMap { hostPort($0, reader) }
            if let probes = admin.probes, probes == admin.listen {
                reader.report(value.child("probes"), "must differ from admin.listen (\(admin.listen))")
            }
        }
        var controller: ControllerConfiguration?
        if let value = fields["controller"],
            let controllerFields = reader.mapping(value, known: ["listen", "tokenFile", "tokens", "advertise", "ha"])
        {
            var decoded = ControllerConfiguration()
            decoded.listen = controllerFields["listen"].flatMap { hostPort($0, reader) } ?? decoded.listen
            decoded.tokenFile = controllerFields["tokenFile"].flatMap { reader.string($0) }
            if let tokens = controllerFields["tokens"],
                let files = reader.mapping(tokens, known: ["read", "report", "operate", "backup"])
            {
                for (scope, file) in files { decoded.tokens[scope] = reader.string(file) }
            }
            if let advertise = controllerFields["advertise"], let url = reader.string(advertise) {
                if let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil {
                    decoded.advertise = url.hasSuffix("/") ? String(url.dropLast()) : url
                } else {
                    reader.report(advertise.path, "expected an http:// or https:// URL, got \"\(url)\"")
                }
            }
            if let ha = controllerFields["ha"] {
                decoded.ha = decodeControllerHA(ha, reader)
            }
            controller = decoded
        }
        var configuration = ZonewardConfiguration(
            zones: zones,
            routing: routing,
            services: services,
            admin: admin,
            controller: controller
        )
        if let backups = fields["backups"] { configuration.backups = decodeBackups(backups, reader) }
        if let ha = controller?.ha {
            let jobs = configuration.backups.map(\.name)
            if !jobs.contains(ha.stateJob) {
                reader.report(
                    "controller.ha.state.job",
                    "no backup job named \"\(ha.stateJob)\" (known: \(jobs.isEmpty ? "none" : jobs.joined(separator: ", ")))"
                )
            }
        }
        configuration.timeouts = timeouts
        return configuration
    }

    private static func decodeService(
        _ value: DocumentValue,
        zones: [ZoneConfiguration],
        timeouts: TimeoutConfiguration,
        _ reader: DocumentReader
    ) -> ServiceConfiguration? {
        let known = [
            "name", "listen", "protocol", "tls", "upstreamTLS", "routing", "regions", "demand", "endpoints",
            "healthCheck", "outlierDetection", "failover", "timeouts", "maxConnections", "forwardedFor", "discovery",
            "upstreamProtocol",
        ]
        guard let fields = reader.mapping(value, known: known) else { return nil }
        let zoneNames = zones.map(\.name)
        let knownZones = "(known: \(zoneNames.joined(separator: ", ")))"
        let name = reader.required(fields, "name", in: value).flatMap { reader.string($0) }
        let listen = reader.required(fields, "listen", in: value).flatMap { hostPort($0, reader) }
        let wireProtocol =
            fields["protocol"].map { reader.choice($0, as: ServiceConfiguration.WireProtocol.self) } ?? .http
        let routing =
            fields["routing"].map { reader.choice($0, as: ServiceConfiguration.RoutingMode.self) } ?? .allRegions

        var tls: TLSConfiguration?
        if let tlsValue = fields["tls"], let tlsFields = reader.mapping(tlsValue, known: ["cert", "key"]) {
            let cert = reader.required(tlsFields, "cert", in: tlsValue).flatMap { reader.string($0) }
            let key = reader.required(tlsFields, "key", in: tlsValue).flatMap { reader.string($0) }
            if let cert, let key { tls = TLSConfiguration(certificateFile: cert, keyFile: key) }
        }

        var upstreamTLS: UpstreamTLSConfiguration?
        if let tlsValue = fields["upstreamTLS"],
            let tlsFields = reader.mapping(tlsValue, known: ["caFile", "serverName"])
        {
            let caFile = reader.required(tlsFields, "caFile", in: tlsValue).flatMap { reader.string($0) }
            if let caFile, !FileManager.default.fileExists(atPath: caFile) {
                reader.report(tlsValue.child("caFile"), "no such file: \(caFile)")
            }
            let serverName = tlsFields["serverName"].flatMap { reader.string($0) }
            if let caFile { upstreamTLS = UpstreamTLSConfiguration(caFile: caFile, serverName: serverName) }
        }

        let discovery = fields["discovery"].flatMap { decodeDiscovery($0, zoneNames: zoneNames, reader) }
        var endpoints: [EndpointConfiguration] = []
        let endpointList: [DocumentValue]?
        if fields["endpoints"] == nil && fields["discovery"] != nil {
            endpointList = []  // discovered only
        } else if fields["endpoints"] == nil {
            reader.report(
                value.child("endpoints"),
                "missing required field (or give discovery: {kubernetes: …} or {dns: …})"
            )
            endpointList = nil
        } else {
            endpointList = fields["endpoints"].flatMap { reader.sequence($0) }
        }
        if let list = endpointList {
            if list.isEmpty && fields["discovery"] == nil {
                reader.report(value.child("endpoints"), "a service needs at least one endpoint")
            }
            for item in list {
                guard let endpointFields = reader.mapping(item, known: ["address", "zone", "weight"]) else { continue }
                let address = reader.required(endpointFields, "address", in: item).flatMap { hostPort($0, reader) }
                var zone: String?
                if let zoneValue = reader.required(endpointFields, "zone", in: item),
                    let text = reader.string(zoneValue)
                {
                    if zoneNames.contains(text) {
                        zone = text
                    } else {
                        reader.report(zoneValue.path, "unknown zone \"\(text)\" \(knownZones)")
                    }
                }
                let weight = endpointFields["weight"].map { reader.number($0) } ?? 1
                if let address, let zone, let weight {
                    endpoints.append(EndpointConfiguration(address: address, zone: zone, weight: weight))
                }
            }
        }

        var demand: [String: Double]?
        if let demandValue = fields["demand"], let entries = reader.dictionary(demandValue) {
            var decoded: [String: Double] = [:]
            for (zone, rate) in entries {
                guard zoneNames.contains(zone) else {
                    reader.report(rate.path, "unknown zone \"\(zone)\" \(knownZones)")
                    continue
                }
                decoded[zone] = reader.number(rate)
            }
            demand = decoded
        }

        let knownRegions = orderedUnique(zones.map(\.region))
        var regions: [String] = []
        if let regionsValue = fields["regions"], let list = reader.sequence(regionsValue) {
            for item in list {
                guard let region = reader.string(item) else { continue }
                if !knownRegions.contains(region) {
                    reader.report(
                        item.path,
                        "unknown region \"\(region)\" (known: \(knownRegions.joined(separator: ", ")))"
                    )
                } else if regions.contains(region) {
                    reader.report(item.path, "region \"\(region)\" is listed twice")
                } else {
                    regions.append(region)
                }
            }
        } else {
            regions = orderedUnique(
                endpoints.compactMap { endpoint in zones.first { $0.name == endpoint.zone }?.region }
            )
        }

        let healthCheck = fields["healthCheck"].flatMap { decodeHealthCheck($0, reader) } ?? .init()
        let outlier = fields["outlierDetection"].flatMap { decodeOutlierDetection($0, reader) } ?? .init()

        var failover: FailoverConfiguration?
        if let failoverValue = fields["failover"] {
            failover = decodeFailover(failoverValue, regions: regions, reader)
            if regions.count < 2 {
                reader.report(
                    failoverValue.path,
                    "a service that fails over needs at least two regions (regions: [...])"
                )
            }
        }

        guard let name, let listen, let wireProtocol, let routing else { return nil }
        var service = ServiceConfiguration(
            name: name,
            listen: listen,
            wireProtocol: wireProtocol,
            tls: tls,
            upstreamTLS: upstreamTLS,
            routing: routing,
            regions: regions,
            demand: demand,
            endpoints: endpoints,
            healthCheck: healthCheck,
            outlierDetection: outlier,
            failover: failover
        )
        service.timeouts = fields["timeouts"].map { decodeTimeouts($0, base: timeouts, reader) } ?? timeouts
        if let limit = fields["maxConnections"] {
            service.maxConnections = reader.integer(limit, minimum: 1) ?? service.maxConnections
        }
        if let forwarded = fields["forwardedFor"] {
            service.forwardedFor = decodeForwardedFor(forwarded, reader) ?? service.forwardedFor
        }
        service.discovery = discovery
        if let upstreamProtocol = fields["upstreamProtocol"] {
            if let chosen = reader.choice(upstreamProtocol, as: ServiceConfiguration.UpstreamProtocol.self) {
                if wireProtocol == .tcp && chosen == .http2 {
                    reader.report(upstreamProtocol.path, "http2 applies to http services only (this one is tcp)")
                }
                service.upstreamProtocol = chosen
            }
        }
        if service.healthCheck.grpc != nil, service.upstreamProtocol != .http2, let check = fields["healthCheck"] {
            let speaks = wireProtocol == .tcp ? "tcp" : service.upstreamProtocol.rawValue
            reader.report(
                check.child("grpc"),
                "the gRPC health protocol needs upstreamProtocol: http2 (this service is \(speaks))"
            )
        }
        return service
    }

    /// Decodes `discovery: {kubernetes: {namespace, service, port}}` or `discovery: {dns: [{name, port, zone}]}`.
    private static func decodeDiscovery(
        _ value: DocumentValue,
        zoneNames: [String],
        _ reader: DocumentReader
    ) -> DiscoveryConfiguration? {
        guard let fields = reader.mapping(value, known: ["kubernetes", "dns"]) else { return nil }
        if fields.count != 1 {
            reader.report(value.path, "give exactly one of kubernetes: {…} or dns: [{…}]")
            return nil
        }
        if let kubernetes = fields["kubernetes"] {
            guard let entry = reader.mapping(kubernetes, known: ["namespace", "service", "port"]) else { return nil }
            let namespace = entry["namespace"].flatMap { reader.string($0) }
            guard let service = reader.required(entry, "service", in: kubernetes).flatMap({ reader.string($0) })
            else { return nil }
            var port: PortSelector?
            if let portValue = entry["port"], case .scalar = portValue.node {
                let text = portValue.node.scalar?.string ?? ""
                let isNumber =
                    portValue.node.tag != .init(.str) && !text.isEmpty && text.allSatisfy(\.isASCII)
                    && text.allSatisfy(\.isNumber)
                // Digits only: reader.integer, which refuses what would overflow (never Yams' own `int`).
                if isNumber {
                    guard let number = reader.integer(portValue, minimum: 1) else { return nil }
                    guard number <= 65_535 else {
                        reader.report(portValue.path, "a port number is 1 to 65535, got \(number)")
                        return nil
                    }
                    port = .number(number)
                } else if let name = reader.string(portValue) {
                    port = .name(name)
                }
            } else if let portValue = entry["port"] {
                reader.report(portValue.path, "expected a port name such as http, or a number")
            }
            return .kubernetes(KubernetesDiscovery(namespace: namespace, service: service, port: port))
        }
        guard let dns = fields["dns"] else { return nil }
        // One entry or a list of them, one per zone.
        let items: [DocumentValue]
        if case .mapping = dns.node { items = [dns] } else { items = reader.sequence(dns) ?? [] }
        var entries: [DNSDiscovery] = []
        for item in items {
            guard let entry = reader.mapping(item, known: ["name", "port", "zone", "resolver"]) else { continue }
            let resolver = entry["resolver"].flatMap { hostPort($0, reader) }
            let name = reader.required(entry, "name", in: item).flatMap { reader.string($0) }
            let port = reader.required(entry, "port", in: item).flatMap { reader.integer($0, minimum: 1) }
            if let port, port > 65_535, let portValue = entry["port"] {
                reader.report(portValue.path, "a port number is 1 to 65535, got \(port)")
            }
            var zone: String?
            if let zoneValue = reader.required(entry, "zone", in: item), let text = reader.string(zoneValue) {
                if zoneNames.contains(text) {
                    zone = text
                } else {
                    reader.report(
                        zoneValue.path,
                        "unknown zone \"\(text)\" (known: \(zoneNames.joined(separator: ", ")))"
                    )
                }
            }
            if let name, let port, port <= 65_535, let zone {
                entries.append(DNSDiscovery(name: name, port: port, zone: zone, resolver: resolver))
            }
        }
        return entries.isEmpty ? nil : .dns(entries)
    }

    /// Decodes `timeouts: {requestHead: 10s, …}` over `base`: fields not given keep the base's value.
    private static func decodeTimeouts(
        _ value: DocumentValue,
        base: TimeoutConfiguration,
        _ reader: DocumentReader
    ) -> TimeoutConfiguration {
        var timeouts = base
        guard let fields = reader.mapping(value, known: TimeoutConfiguration.fieldNames) else { return base }
        for (name, field) in fields {
            timeouts[name] = reader.duration(field, minimum: .milliseconds(10))
        }
        return timeouts
    }

    private static func decodeForwardedFor(
        _ value: DocumentValue,
        _ reader: DocumentReader
    ) -> ForwardedForConfiguration? {
        guard let fields = reader.mapping(value, known: ["trustedHops", "trustedProxies"]) else { return nil }
        var forwarded = ForwardedForConfiguration()
        if let hops = fields["trustedHops"] { forwarded.trustedHops = reader.integer(hops) ?? 0 }
        if let proxies = fields["trustedProxies"], let list = reader.sequence(proxies) {
            for item in list {
                guard let text = reader.string(item) else { continue }
                if let range = AddressRange(parsing: text) {
                    forwarded.trustedProxies.append(range)
                } else {
                    reader.report(item.path, "expected an IPv4 or IPv6 CIDR range such as 10.0.0.0/8, got \"\(text)\"")
                }
            }
        }
        return forwarded
    }

    private static func decodeFailover(
        _ value: DocumentValue,
        regions: [String],
        _ reader: DocumentReader
    ) -> FailoverConfiguration? {
        let known = [
            "mode", "probes", "maxLagSeconds", "lag", "cooldown", "fence", "promote", "verifyTimeout", "drill",
        ]
        guard let fields = reader.mapping(value, known: known) else { return nil }
        var failover = FailoverConfiguration()
        if let mode = fields["mode"] {
            failover.mode = reader.choice(mode, as: FailoverConfiguration.Mode.self) ?? failover.mode
        }
        if let probes = fields["probes"], let entries = reader.dictionary(probes) {
            for (region, probe) in entries {
                guard regions.contains(region) else {
                    reader.report(probe.path, "not one of the service's regions (\(regions.joined(separator: ", ")))")
                    continue
                }
                failover.probes[region] = decodeProbe(probe, reader)
            }
        }
        if failover.mode == .automatic {
            for region in regions where failover.probes[region] == nil {
                reader.report(
                    value.child("probes"),
                    "automatic failover needs a probe for every region; \(region) has none"
                )
            }
        }
        if let lag = fields["maxLagSeconds"] { failover.maxLagSeconds = reader.number(lag) }
        if let lag = fields["lag"], let lagFields = reader.mapping(lag, known: ["command", "url"]) {
            if let command = lagFields["command"] {
                failover.lag = decodeCommand(command, reader).map { .command($0) }
            } else if let url = lagFields["url"] {
                failover.lag = reader.string(url).map { .url($0) }
            } else {
                reader.report(lag.path, "give either command: [program, args…] or url: http://…")
            }
        }
        if failover.maxLagSeconds != nil && failover.lag == nil {
            reader.report(value.child("lag"), "maxLagSeconds needs a lag source (lag: {command: [...]} or {url: ...})")
        }
        if let cooldown = fields["cooldown"] { failover.cooldown = reader.duration(cooldown) ?? failover.cooldown }
        if let verify = fields["verifyTimeout"] {
            failover.verifyTimeout = reader.duration(verify, minimum: .milliseconds(100)) ?? failover.verifyTimeout
        }
        if let fence = fields["fence"] { failover.fence = decodeDriver(fence, reader) }
        if let promote = fields["promote"] { failover.promote = decodeDriver(promote, reader) }
        if let drill = fields["drill"] { failover.drill = decodeDrillPolicy(drill, reader) }
        return failover
    }

    private static func decodeProbe(_ value: DocumentValue, _ reader: DocumentReader) -> ProbeConfiguration? {
        let known = ["http", "tcp", "interval", "timeout", "failuresToDown", "successesToUp"]
        guard let fields = reader.mapping(value, known: known) else { return nil }
        let target: ProbeConfiguration.Target?
        if let http = fields["http"] {
            target = reader.string(http).flatMap { url in
                guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
                    reader.report(http.path, "expected an http:// or https:// URL, got \"\(url)\"")
                    return nil
                }
                return .http(url)
            }
        } else if let tcp = fields["tcp"] {
            target = hostPort(tcp, reader).map { .tcp($0) }
        } else {
            reader.report(value.path, "give either http: URL or tcp: host:port")
            target = nil
        }
        guard let target else { return nil }
        var probe = ProbeConfiguration(target: target)
        if let interval = fields["interval"] {
            probe.interval = reader.duration(interval, minimum: .milliseconds(50)) ?? probe.interval
        }
        if let timeout = fields["timeout"] {
            probe.timeout = reader.duration(timeout, minimum: .milliseconds(10)) ?? probe.timeout
        }
        if let failures = fields["failuresToDown"] {
            probe.failuresToDown = reader.integer(failures, minimum: 1) ?? probe.failuresToDown
        }
        if let successes = fields["successesToUp"] {
            probe.successesToUp = reader.integer(successes, minimum: 1) ?? probe.successesToUp
        }
        return probe
    }

    private static func decodeDriver(_ value: DocumentValue, _ reader: DocumentReader) -> DriverConfiguration? {
        guard let fields = reader.mapping(value, known: ["command", "webhook", "timeout"]) else { return nil }
        let kind: DriverConfiguration.Kind?
        if let command = fields["command"] {
            kind = decodeCommand(command, reader).map { .command($0) }
        } else if let webhook = fields["webhook"] {
            kind = reader.string(webhook).map { .webhook($0) }
        } else {
            reader.report(value.path, "give either command: [program, args…] or webhook: URL")
            kind = nil
        }
        guard let kind else { return nil }
        var driver = DriverConfiguration(kind: kind)
        if let timeout = fields["timeout"] {
            driver.timeout = reader.duration(timeout, minimum: .milliseconds(10)) ?? driver.timeout
        }
        return driver
    }

    private static func decodeCommand(_ value: DocumentValue, _ reader: DocumentReader) -> [String]? {
        guard let items = reader.sequence(value) else { return nil }
        let words = items.compactMap { reader.string($0) }
        guard words.count == items.count, !words.isEmpty else {
            if items.isEmpty { reader.report(value.path, "the command needs at least a program") }
            return nil
        }
        return words
    }

    private static func decodeHealthCheck(_ value: DocumentValue, _ reader: DocumentReader) -> HealthCheckConfiguration?
    {
        let known = ["path", "grpc", "interval", "timeout", "unhealthyThreshold", "healthyThreshold"]
        guard let fields = reader.mapping(value, known: known) else { return nil }
        var check = HealthCheckConfiguration()
        if let path = fields["path"], let text = reader.string(path) {
            if text.hasPrefix("/") { check.path = text } else { reader.report(path.path, "must start with /") }
        }
        if let grpc = fields["grpc"] {
            // A gRPC service name is short printable ASCII ("" for the server as a whole); null reads as "".
            let text: String?
            if case .scalar(let scalar) = grpc.node, scalar.string.isEmpty {
                text = ""
            } else {
                text = reader.string(grpc)
            }
            if let text {
                if text.utf8.count > 1_024 || !text.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) {
                    reader.report(grpc.path, "a gRPC service name (printable ASCII, no spaces, at most 1024 bytes)")
                } else if fields["path"] != nil {
                    reader.report(grpc.path, "give either path (an HTTP GET) or grpc (the gRPC health protocol)")
                } else {
                    check.grpc = text
                }
            }
        }
        if let interval = fields["interval"] {
            check.interval = reader.duration(interval, minimum: .milliseconds(10)) ?? check.interval
        }
        if let timeout = fields["timeout"] {
            check.timeout = reader.duration(timeout, minimum: .milliseconds(1)) ?? check.timeout
        }
        if let threshold = fields["unhealthyThreshold"] {
            check.unhealthyThreshold = reader.integer(threshold, minimum: 1) ?? check.unhealthyThreshold
        }
        if let threshold = fields["healthyThreshold"] {
            check.healthyThreshold = reader.integer(threshold, minimum: 1) ?? check.healthyThreshold
        }
        return check
    }

    private static func decodeOutlierDetection(
        _ value: DocumentValue,
        _ reader: DocumentReader
    ) -> OutlierDetectionConfiguration? {
        let known = ["consecutiveFailures", "baseEjection", "maxEjectedPercent", "maxEjection"]
        guard let fields = reader.mapping(value, known: known) else { return nil }
        var detection = OutlierDetectionConfiguration()
        if let failures = fields["consecutiveFailures"] {
            detection.consecutiveFailures = reader.integer(failures, minimum: 1) ?? detection.consecutiveFailures
        }
        if let ejection = fields["baseEjection"] {
            detection.baseEjection = reader.duration(ejection, minimum: .milliseconds(1)) ?? detection.baseEjection
        }
        if let ejection = fields["maxEjection"] {
            detection.maxEjection = reader.duration(ejection, minimum: .milliseconds(1)) ?? detection.maxEjection
        }
        if let percent = fields["maxEjectedPercent"], let number = reader.number(percent) {
            if number <= 100 {
                detection.maxEjectedPercent = number
            } else {
                reader.report(percent.path, "must be between 0 and 100, got \(formatNumber(number))")
            }
        }
        return detection
    }
}

// MARK: - Parts shared with the planner's topology file

/// Reads a file for decoding, or throws a problem naming the file.
func readDocument(_ path: String) throws(ConfigurationError) -> String {
    guard FileManager.default.fileExists(atPath: path) else {
        throw ConfigurationError(file: path, problems: [.init(path: "", message: "no such file")])
    }
    guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
        throw ConfigurationError(file: path, problems: [.init(path: "", message: "cannot read the file as UTF-8 text")])
    }
    return text
}

/// Decodes a list of `{name, region, …}` zones, reporting duplicates; returns each zone with all its fields.
func decodeZones(
    _ value: DocumentValue,
    _ reader: DocumentReader,
    extraFields: [String] = []
) -> [(zone: ZoneConfiguration, fields: [String: DocumentValue], item: DocumentValue)] {
    guard let list = reader.sequence(value) else { return [] }
    if list.isEmpty { reader.report(value.path, "at least one zone is needed") }
    var zones: [(zone: ZoneConfiguration, fields: [String: DocumentValue], item: DocumentValue)] = []
    for item in list {
        guard let fields = reader.mapping(item, known: ["name", "region"] + extraFields) else { continue }
        let name = reader.required(fields, "name", in: item).flatMap { reader.string($0) }
        let region = reader.required(fields, "region", in: item).flatMap { reader.string($0) }
        if let name, zones.contains(where: { $0.zone.name == name }) {
            reader.report(item.child("name"), "duplicate zone name \"\(name)\"")
            continue
        }
        if let name, let region { zones.append((ZoneConfiguration(name: name, region: region), fields, item)) }
    }
    return zones
}

/// Decodes `costs: {crossZone, crossRegion, pairs}`, checking that pairs name known, distinct zones.
func decodeCosts(_ value: DocumentValue, zoneNames: [String], _ reader: DocumentReader) -> CostConfiguration? {
    guard let fields = reader.mapping(value, known: ["crossZone", "crossRegion", "pairs"]) else { return nil }
    var costs = CostConfiguration()
    if let crossZone = fields["crossZone"] { costs.crossZone = reader.number(crossZone) ?? costs.crossZone }
    if let crossRegion = fields["crossRegion"] { costs.crossRegion = reader.number(crossRegion) ?? costs.crossRegion }
    if let pairsValue = fields["pairs"], let list = reader.sequence(pairsValue) {
        let known = "(known: \(zoneNames.joined(separator: ", ")))"
        for item in list {
            guard let pairFields = reader.mapping(item, known: ["from", "to", "cost"]) else { continue }
            var ends: [String] = []
            for key in ["from", "to"] {
                guard let endValue = reader.required(pairFields, key, in: item), let zone = reader.string(endValue)
                else { continue }
                if zoneNames.contains(zone) {
                    ends.append(zone)
                } else {
                    reader.report(endValue.path, "unknown zone \"\(zone)\" \(known)")
                }
            }
            let cost = reader.required(pairFields, "cost", in: item).flatMap { reader.number($0) }
            if ends.count == 2, ends[0] == ends[1] {
                reader.report(item.path, "from and to are the same zone; the cost within a zone is always 0")
                continue
            }
            if ends.count == 2, let cost {
                costs.pairs.append(CostOverride(from: ends[0], to: ends[1], cost: cost))
            }
        }
    }
    return costs
}

func hostPort(_ value: DocumentValue, _ reader: DocumentReader) -> HostPort? {
    guard let text = reader.string(value) else { return nil }
    guard let address = HostPort(parsing: text) else {
        reader.report(
            value.path,
            "expected host:port with a port from 0 to 65535, e.g. 127.0.0.1:8080, got \"\(text)\""
        )
        return nil
    }
    return address
}

func orderedUnique(_ items: [String]) -> [String] {
    var seen: [String] = []
    for item in items where !seen.contains(item) { seen.append(item) }
    return seen
}

/// Decodes `controller.ha`: exactly one of `etcd` and `kubernetes`, and `state.job`.
func decodeControllerHA(_ value: DocumentValue, _ reader: DocumentReader) -> ControllerHAConfiguration? {
    guard let fields = reader.mapping(value, known: ["etcd", "kubernetes", "state", "safetyMargin"]) else { return nil }
    var election: ControllerHAConfiguration.Election?
    switch (fields["etcd"], fields["kubernetes"]) {
    case (.some, .some):
        reader.report(value.path, "set one of etcd and kubernetes, not both")
    case (nil, nil):
        reader.report(value.path, "set one of etcd (endpoints) and kubernetes (lease) to elect a leader")
    case (.some(let etcd), nil):
        if let etcdFields = reader.mapping(
            etcd,
            known: ["endpoints", "prefix", "caFile", "certFile", "keyFile", "ttl"]
        ) {
            var decoded = ControllerHAConfiguration.EtcdElection(endpoints: [])
            if let endpoints = reader.required(etcdFields, "endpoints", in: etcd), let list = reader.sequence(endpoints)
            {
                for item in list {
                    guard let url = reader.string(item) else { continue }
                    guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""),
                        parsed.host != nil
                    else {
                        reader.report(
                            item.path,
                            "expected an etcd client URL such as http://127.0.0.1:2379, got \"\(url)\""
                        )
                        continue
                    }
                    decoded.endpoints.append(url.hasSuffix("/") ? String(url.dropLast()) : url)
                }
                if list.isEmpty { reader.report(endpoints.path, "expected at least one etcd endpoint") }
            }
            if let prefix = etcdFields["prefix"], let text = reader.string(prefix) {
                if text.isEmpty || !text.hasPrefix("/") {
                    reader.report(
                        prefix.path,
                        "expected a key prefix starting with /, e.g. /zoneward/, got \"\(text)\""
                    )
                } else {
                    decoded.prefix = text.hasSuffix("/") ? text : text + "/"
                }
            }
            decoded.caFile = etcdFields["caFile"].flatMap { reader.string($0) }
            decoded.certFile = etcdFields["certFile"].flatMap { reader.string($0) }
            decoded.keyFile = etcdFields["keyFile"].flatMap { reader.string($0) }
            if (decoded.certFile == nil) != (decoded.keyFile == nil) {
                reader.report(etcd.path, "certFile and keyFile go together: set both or neither")
            }
            if let ttl = etcdFields["ttl"] {
                decoded.ttl = reader.duration(ttl, minimum: .seconds(2)) ?? decoded.ttl
            }
            election = .etcd(decoded)
        }
    case (nil, .some(let kubernetes)):
        if let kubeFields = reader.mapping(
            kubernetes,
            known: ["namespace", "lease", "leaseDuration", "renewDeadline", "retryPeriod", "kubeconfig"]
        ) {
            var decoded = ControllerHAConfiguration.KubernetesLeaseElection()
            decoded.namespace = kubeFields["namespace"].flatMap { reader.string($0) }
            if let lease = kubeFields["lease"] { decoded.lease = reader.string(lease) ?? decoded.lease }
            decoded.kubeconfig = kubeFields["kubeconfig"].flatMap { reader.string($0) }
            if let field = kubeFields["leaseDuration"] {
                decoded.leaseDuration = reader.duration(field, minimum: .seconds(1)) ?? decoded.leaseDuration
            }
            if let field = kubeFields["renewDeadline"] {
                decoded.renewDeadline = reader.duration(field, minimum: .seconds(1)) ?? decoded.renewDeadline
            }
            if let field = kubeFields["retryPeriod"] {
                decoded.retryPeriod = reader.duration(field, minimum: .milliseconds(100)) ?? decoded.retryPeriod
            }
            if decoded.renewDeadline >= decoded.leaseDuration {
                reader.report(kubernetes.child("renewDeadline"), "must be shorter than leaseDuration")
            }
            if decoded.retryPeriod >= decoded.renewDeadline {
                reader.report(kubernetes.child("retryPeriod"), "must be shorter than renewDeadline")
            }
            election = .kubernetes(decoded)
        }
    }
    var stateJob: String?
    var keep = 20
    if let state = reader.required(fields, "state", in: value),
        let stateFields = reader.mapping(state, known: ["job", "keep"])
    {
        stateJob = reader.required(stateFields, "job", in: state).flatMap { reader.string($0) }
        if let field = stateFields["keep"] { keep = reader.integer(field, minimum: 2, maximum: 10_000) ?? keep }
    }
    guard let election, let stateJob else { return nil }
    var ha = ControllerHAConfiguration(election: election, stateJob: stateJob)
    ha.keep = keep
    if let margin = fields["safetyMargin"] {
        ha.safetyMargin = reader.duration(margin, minimum: .milliseconds(100)) ?? ha.safetyMargin
    }
    if case .etcd(let etcd) = election, ha.safetyMargin * 2 >= etcd.ttl {
        reader.report(value.child("safetyMargin"), "must be less than half of etcd.ttl")
    }
    return ha
}
