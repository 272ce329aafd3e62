import Foundation

/// Parses and prints human durations such as `500ms`, `2s`, `30m`, `1h30m`, `7d`.
public enum TimeSpan {
    private static let units: [(suffix: String, seconds: Double)] = [
        ("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400),
    ]

    /// The longest duration accepted: 100 years (36500d), far beyond any timeout, drain or cooldown and far
    /// below what `Duration` can hold, so arithmetic on parsed durations cannot overflow.
    public static let maximum: Duration = .seconds(36_500 * 86_400)

    /// Why a text is not a duration.
    public enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        /// Not a sequence of `<number><unit>` parts.
        case malformed
        /// Longer than `TimeSpan.maximum`.
        case tooLong

        public var description: String {
            switch self {
            case .malformed: "expected a duration such as 500ms, 2s, 30m or 1h"
            case .tooLong: "must be at most \(TimeSpan.format(TimeSpan.maximum))"
            }
        }
    }

    /// Parses `text` into a duration, or returns nil when it is not a sequence of `<number><unit>` parts or
    /// is longer than `maximum`.
    public static func parse(_ text: String) -> Duration? {
        try? parseChecked(text)
    }

    /// Parses `text` into a duration, saying why it is refused: malformed, or longer than `maximum`.
    public static func parseChecked(_ text: String) throws(ParseError) -> Duration {
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        guard !rest.isEmpty else { throw .malformed }
        var total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { ("0"..."9").contains($0) || $0 == "." }
            guard !number.isEmpty, let value = Double(number) else { throw .malformed }
            rest = rest.dropFirst(number.count)
            let unitText = rest.prefix { $0.isLetter }
            // "ms" must win over "m": match the whole run of letters.
            guard let unit = units.first(where: { $0.suffix == unitText }) else { throw .malformed }
            rest = rest.dropFirst(unitText.count)
            total += value * unit.seconds
        }
        // Also refuses an infinite total (a number too long for a Double) before it reaches Int64.
        guard total.isFinite, total <= maximum.seconds else { throw .tooLong }
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
