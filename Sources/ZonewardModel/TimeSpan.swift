import Foundation

/// Parses and prints human durations such as `500ms`, `2s`, `30m`, `1h30m`, `7d`.
public enum TimeSpan {
    private static let units: [(suffix: String, seconds: Double)] = [
        ("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400),
    ]

    /// Parses `text` into a duration, or returns nil when it is not a sequence of `<number><unit>` parts.
    public static func parse(_ text: String) -> Duration? {
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        guard !rest.isEmpty else { return nil }
        var total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            let unitText = rest.prefix { $0.isLetter }
            // "ms" must win over "m": match the whole run of letters.
            guard let unit = units.first(where: { $0.suffix == unitText }) else { return nil }
            rest = rest.dropFirst(unitText.count)
            total += value * unit.seconds
        }
        guard total.isFinite else { return nil }
        return .milliseconds(Int64((total * 1000).rounded()))
    }

    /// Formats a duration the way `parse` reads it, e.g. `1h30m`, `2s`, `250ms`.
    public static func format(_ duration: Duration) -> String {
        var ms = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        if ms == 0 { return "0s" }
        var text = ms < 0 ? "-" : ""
        ms = abs(ms)
        for (suffix, factor) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
            let count = ms / Int64(factor)
            if count > 0 {
                text += "\(count)\(suffix)"
                ms -= count * Int64(factor)
            }
        }
        return text
    }
}

extension Duration {
    /// The duration in seconds as a floating-point number.
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
