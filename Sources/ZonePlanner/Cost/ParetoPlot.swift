import Foundation
import ZonewardModel

/// The cost report as an SVG Pareto plot: monthly cost against the worst zone's overload. Zoneward's α
/// sweep is a line of labelled points; every other alternative is a labelled point; the measured traffic
/// (the plan in force) is marked.
public enum ParetoPlot {
    public static func svg(_ report: CostReport, title: String = "Zoneward: cost against overload") -> String {
        let width = 900.0
        let height = 480.0
        let left = 90.0
        let right = 300.0
        let top = 50.0
        let bottom = 60.0
        let plotted = report.alternatives.filter { $0.worstOverload.isFinite && $0.monthly.isFinite }
        let xs = plotted.map(\.worstOverload)
        let ys = plotted.map(\.monthly)
        let xMin = min(1, xs.min() ?? 1)
        let xMax = max(xMin + 0.1, (xs.max() ?? 2) * 1.05)
        let yMax = max(0.01, (ys.max() ?? 1) * 1.1)
        func x(_ value: Double) -> Double { left + (value - xMin) / (xMax - xMin) * (width - left - right) }
        func y(_ value: Double) -> Double { height - bottom - value / yMax * (height - top - bottom) }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
            viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(left)" y="28" font-size="16" font-weight="bold">\(escape(title))</text>

            """
        // Axes with five ticks each.
        svg += line(left, height - bottom, width - right, height - bottom, "black")
        svg += line(left, top, left, height - bottom, "black")
        for step in 0...4 {
            let xv = xMin + (xMax - xMin) * Double(step) / 4
            let yv = yMax * Double(step) / 4
            svg += line(x(xv), height - bottom, x(xv), height - bottom + 5, "black")
            svg += text(x(xv), height - bottom + 20, "\(formatNumber((xv * 100).rounded() / 100))×", anchor: "middle")
            svg += line(left - 5, y(yv), width - right, y(yv), "#e6e6e6")
            svg += text(left - 8, y(yv) + 4, "$\(money(yv))", anchor: "end")
        }
        svg += text((left + width - right) / 2, height - 15, "worst zone load ÷ its fair share", anchor: "middle")
        svg +=
            "<text x=\"20\" y=\"\((top + height - bottom) / 2)\" transform=\"rotate(-90 20 \((top + height - bottom) / 2))\" "
        svg += "text-anchor=\"middle\">cost per month (USD)</text>\n"
        // The α sweep as a line.
        let sweep = plotted.filter { $0.alpha != nil }.sorted { ($0.alpha ?? 0) < ($1.alpha ?? 0) }
        if !sweep.isEmpty {
            let points = sweep.map { "\(format(x($0.worstOverload))),\(format(y($0.monthly)))" }.joined(separator: " ")
            svg += "<polyline points=\"\(points)\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n"
            // Points that land on one spot (a plan no larger α changes) get one label: "α=0.3…1".
            var groups: [(x: Double, y: Double, first: Double, last: Double, inForce: Bool)] = []
            for point in sweep {
                guard let alpha = point.alpha else { continue }
                let inForce = abs(alpha - report.alphaInForce) < 1e-9
                let px = x(point.worstOverload)
                let py = y(point.monthly)
                svg += circle(px, py, inForce ? 6 : 3.5, "#1f77b4")
                if let last = groups.last, abs(last.x - px) < 1, abs(last.y - py) < 1 {
                    groups[groups.count - 1].last = alpha
                    groups[groups.count - 1].inForce = last.inForce || inForce
                } else {
                    groups.append((px, py, alpha, alpha, inForce))
                }
            }
            var labelled: (x: Double, y: Double)?
            for group in groups {
                // A label closer than 14 px to the previous one would overlap it; the one in force always shows.
                if let previous = labelled, hypot(previous.x - group.x, previous.y - group.y) < 14, !group.inForce {
                    continue
                }
                let range =
                    group.first == group.last
                    ? formatNumber(group.first) : "\(formatNumber(group.first))…\(formatNumber(group.last))"
                svg += text(group.x + 7, group.y - 7, "α=\(range)", color: "#1f77b4", bold: group.inForce)
                labelled = (group.x, group.y)
            }
        }
        let colors = [
            "measured": "#d62728", "envoy": "#2ca02c", "prefer-same-zone": "#9467bd", "round-robin": "#8c564b",
        ]
        for point in plotted where point.alpha == nil {
            let color = colors[point.name] ?? "black"
            let px = x(point.worstOverload)
            let py = y(point.monthly)
            if point.name == "measured" {
                svg += "<rect x=\"\(format(px - 6))\" y=\"\(format(py - 6))\" width=\"12\" height=\"12\" fill=\"none\" "
                svg += "stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            } else {
                svg += circle(px, py, 5, color)
            }
        }
        // The legend on the right names every point with its figures.
        var legendY = top + 10
        svg += text(width - right + 15, legendY, "alternative: $/month, worst", bold: true)
        for point in plotted where point.alpha == nil || abs((point.alpha ?? -1) - report.alphaInForce) < 1e-9 {
            legendY += 18
            let label = point.name == "measured" ? "measured (plan in force)" : point.name
            svg += text(
                width - right + 15,
                legendY,
                "\(label): $\(money(point.monthly)), \(formatNumber((point.worstOverload * 100).rounded() / 100))×",
                color: colors[point.name] ?? "#1f77b4"
            )
        }
        for point in report.alternatives where !point.worstOverload.isFinite {
            legendY += 18
            svg += text(width - right + 15, legendY, "\(point.name): overloads a zone without capacity", color: "#555")
        }
        svg += "</svg>\n"
        return svg
    }

    static func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, _ color: String) -> String {
        "<line x1=\"\(format(x1))\" y1=\"\(format(y1))\" x2=\"\(format(x2))\" y2=\"\(format(y2))\" stroke=\"\(color)\"/>\n"
    }

    static func circle(_ cx: Double, _ cy: Double, _ r: Double, _ color: String) -> String {
        "<circle cx=\"\(format(cx))\" cy=\"\(format(cy))\" r=\"\(format(r))\" fill=\"\(color)\"/>\n"
    }

    static func text(
        _ x: Double,
        _ y: Double,
        _ content: String,
        anchor: String = "start",
        color: String = "black",
        bold: Bool = false
    ) -> String {
        "<text x=\"\(format(x))\" y=\"\(format(y))\" text-anchor=\"\(anchor)\" fill=\"\(color)\""
            + (bold ? " font-weight=\"bold\"" : "") + ">\(escape(content))</text>\n"
    }

    static func format(_ value: Double) -> String {
        value.isFinite ? String((value * 10).rounded() / 10) : "0"
    }

    /// Dollars with two decimals, or fewer significant ones for tiny amounts.
    static func money(_ value: Double) -> String {
        guard value.isFinite else { return "∞" }
        if value >= 100 { return formatNumber(value.rounded()) }
        if value >= 0.01 || value == 0 { return formatNumber((value * 100).rounded() / 100) }
        return formatNumber((value * 1e6).rounded() / 1e6)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
