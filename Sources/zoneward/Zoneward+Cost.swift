import ArgumentParser
import Foundation
import Yams
import ZonePlanner
import ZonewardModel

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension Zoneward {
    /// `zoneward cost`: what the measured cross-zone traffic costs, and what it would cost routed otherwise.
    struct Cost: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The cross-zone bill of the measured traffic, and of the same traffic routed other ways.",
            discussion: """
                Reads zoneward_bytes_total and zoneward_requests_total from proxies' /metrics (URLs, sampled \\
                twice --sample apart, the difference being the window) or from saved metrics files (give the \\
                --window they cover). Each service's bytes per source zone are its demand; capacity per zone \\
                comes from --config. The same demand is then routed by Envoy's zone-aware algorithm, by \\
                Kubernetes trafficDistribution PreferSameZone (all local), by round robin over capacity, and \\
                by Zoneward at α = 0, 0.1, …, 1; each gets its monthly cost and its worst zone's load ÷ fair \\
                share. Prices default to AWS's: $0.01/GB each way across zones of a region, $0.02/GB across \\
                regions; --prices FILE sets them (YAML: crossZonePerGBEachWay, crossRegionPerGB).

                --format svg draws the Pareto plot: cost against overload, the α sweep as a line, every \\
                alternative as a labelled point, the measured traffic (the plan in force) marked.

                Examples:
                  zoneward cost --config zoneward.yaml --metrics http://10.0.1.5:9901/metrics --sample 60s
                  zoneward cost --config zoneward.yaml --metrics saved.prom --window 1h --format svg > cost.svg
                """
        )

        @Option(help: ArgumentHelp("Configuration file (zones, regions, services, α).", valueName: "file"))
        var config: String

        @Option(
            name: .customLong("metrics"),
            help: ArgumentHelp(
                "A proxy's /metrics URL, or a saved metrics file; repeat for several.",
                valueName: "url|file"
            )
        )
        var sources: [String]

        @Option(help: ArgumentHelp("Prices file (YAML).", valueName: "file"))
        var prices: String?

        @Option(help: ArgumentHelp("Only this service.", valueName: "name"))
        var service: String?

        @Option(
            help: ArgumentHelp(
                "How long the counters in the files cover, e.g. 1h (needed for files).",
                valueName: "duration"
            )
        )
        var window: String?

        @Option(help: ArgumentHelp("For URLs: how far apart the two scrapes are; default 10s.", valueName: "duration"))
        var sample: String = "10s"

        @Option(help: "table, json or svg.") var format: CostFormat = .table

        enum CostFormat: String, ExpressibleByArgument, CaseIterable {
            case table, json, svg
        }

        func run() async throws {
            let configuration = try loadConfiguration(config)
            if let service, configuration.service(named: service) == nil {
                let known = configuration.services.map(\.name).joined(separator: ", ")
                printError("--service: unknown service \"\(service)\" (known: \(known))")
                throw ExitCode.badInput
            }
            let priceList = try loadPrices()
            let urls = sources.filter { $0.hasPrefix("http://") || $0.hasPrefix("https://") }
            let files = sources.filter { !urls.contains($0) }
            guard !sources.isEmpty else {
                printError("--metrics: give at least one proxy /metrics URL or saved metrics file")
                throw ExitCode.badInput
            }
            var seconds: Double
            var traffic: [ServiceTraffic]
            if !files.isEmpty {
                guard let window, let span = TimeSpan.parse(window), span > .zero else {
                    printError("--window: saved metrics need the time their counters cover, e.g. --window 1h")
                    throw ExitCode.badInput
                }
                guard urls.isEmpty else {
                    printError("--metrics: give URLs or files, not both (they cover different windows)")
                    throw ExitCode.badInput
                }
                seconds = span.seconds
                var samples: [PrometheusSample] = []
                for file in files {
                    guard let data = FileManager.default.contents(atPath: file) else {
                        printError("--metrics: cannot read \(file)")
                        throw ExitCode.badInput
                    }
                    samples += PrometheusText.parse(String(decoding: data, as: UTF8.self))
                }
                traffic = PrometheusText.traffic(samples, service: service)
            } else {
                guard let span = TimeSpan.parse(sample), span >= .seconds(1), span <= .seconds(3600) else {
                    printError("--sample: expected a duration from 1s to 1h, e.g. 30s, got \"\(sample)\"")
                    throw ExitCode.badInput
                }
                let first = try await scrape(urls)
                let started = ContinuousClock.now
                try await Task.sleep(for: span)
                let second = try await scrape(urls)
                seconds = (ContinuousClock.now - started).seconds
                traffic = PrometheusText.difference(
                    PrometheusText.traffic(second, service: service),
                    PrometheusText.traffic(first, service: service)
                )
            }
            guard traffic.contains(where: { !$0.bytes.isEmpty }) else {
                printError("no zoneward_bytes_total samples\(service.map { " for \($0)" } ?? "") in the metrics")
                throw ExitCode.failure
            }
            let report = CostReport.build(
                traffic: traffic,
                configuration: configuration,
                prices: priceList,
                window: seconds
            )
            switch format {
            case .svg:
                print(ParetoPlot.svg(report), terminator: "")
            case .json:
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                encoder.nonConformingFloatEncodingStrategy = .convertToString(
                    positiveInfinity: "inf",
                    negativeInfinity: "-inf",
                    nan: "nan"
                )
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            case .table:
                print(Self.table(report))
            }
        }

        func loadPrices() throws -> TransferPrices {
            guard let prices else { return TransferPrices() }
            guard let data = FileManager.default.contents(atPath: prices) else {
                printError("--prices: cannot read \(prices)")
                throw ExitCode.badInput
            }
            let text = String(decoding: data, as: UTF8.self)
            guard let object = try? Yams.load(yaml: text) as? [String: Any] else {
                printError("--prices: \(prices) is not a YAML mapping (crossZonePerGBEachWay, crossRegionPerGB)")
                throw ExitCode.badInput
            }
            var result = TransferPrices()
            for (key, value) in object {
                let number = (value as? Double) ?? (value as? Int).map(Double.init)
                guard let number, number.isFinite, number >= 0, number <= 1000 else {
                    printError("--prices: \(key): expected a price in dollars per GB from 0 to 1000, got \(value)")
                    throw ExitCode.badInput
                }
                switch key {
                case "crossZonePerGBEachWay": result.crossZonePerGBEachWay = number
                case "crossRegionPerGB": result.crossRegionPerGB = number
                default:
                    printError("--prices: \(key): unknown field (known: crossZonePerGBEachWay, crossRegionPerGB)")
                    throw ExitCode.badInput
                }
            }
            return result
        }

        func scrape(_ urls: [String]) async throws -> [PrometheusSample] {
            var samples: [PrometheusSample] = []
            for url in urls {
                guard let target = URL(string: url) else {
                    printError("--metrics: not a URL: \(url)")
                    throw ExitCode.badInput
                }
                do {
                    let (data, response) = try await URLSession.shared.data(
                        for: URLRequest(url: target, timeoutInterval: 10)
                    )
                    guard (response as? HTTPURLResponse)?.statusCode == 200 else {
                        printError("--metrics: \(url) answered \((response as? HTTPURLResponse)?.statusCode ?? 0)")
                        throw ExitCode.failure
                    }
                    samples += PrometheusText.parse(String(decoding: data, as: UTF8.self))
                } catch let exit as ExitCode {
                    throw exit
                } catch {
                    printError("--metrics: cannot read \(url): \(error.localizedDescription)")
                    throw ExitCode.failure
                }
            }
            return samples
        }

        static func table(_ report: CostReport) -> String {
            var rows: [[String]] = [["service", "from", "to", "requests", "bytes", "cost (window)"]]
            for pair in report.pairs {
                rows.append([
                    pair.service, pair.source, pair.destination, formatNumber(pair.requests.rounded()),
                    formatNumber(pair.bytes.rounded()), "$" + ParetoPlotMoney.format(pair.cost),
                ])
            }
            var text = "Measured over \(formatNumber((report.windowSeconds * 10).rounded() / 10)) s:\n"
            text += TextTable.render(rows)
            var alternatives: [[String]] = [
                ["routing", "cost (window)", "per month", "cross-zone bytes", "worst load ÷ share"]
            ]
            for alternative in report.alternatives {
                let inForce = alternative.alpha.map { abs($0 - report.alphaInForce) < 1e-9 } ?? false
                alternatives.append([
                    alternative.name + (inForce ? " (α in force)" : ""),
                    "$" + ParetoPlotMoney.format(alternative.cost),
                    "$" + ParetoPlotMoney.format(alternative.monthly),
                    String(format: "%.1f%%", alternative.crossZoneShare * 100),
                    alternative.worstOverload.isFinite ? String(format: "%.2f×", alternative.worstOverload) : "∞",
                ])
            }
            text += "\nThe same traffic routed other ways:\n" + TextTable.render(alternatives)
            return text
        }
    }
}

/// Dollar amounts as the table prints them.
enum ParetoPlotMoney {
    static func format(_ value: Double) -> String {
        guard value.isFinite else { return "∞" }
        if value >= 100 { return String(format: "%.0f", value) }
        if value >= 0.01 || value == 0 { return String(format: "%.2f", value) }
        return String(format: "%.6f", value)
    }
}
