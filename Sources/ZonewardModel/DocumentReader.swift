import Foundation
import Yams

/// A value inside a YAML (or JSON) document together with its path, for error messages.
struct DocumentValue {
    let node: Node
    let path: String

    func child(_ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }
}

/// Walks a parsed YAML document, collecting every problem instead of stopping at the first.
///
/// Codable stops at the first error and words it for programmers; an operator wants every bad
/// field at once, each with its path and what would be valid.
final class DocumentReader {
    private(set) var problems: [ConfigurationProblem] = []

    /// Parses `text` as YAML (JSON is YAML too) and returns the root, or records why it can't.
    func parse(_ text: String) -> DocumentValue? {
        do {
            guard let node = try Yams.compose(yaml: text) else {
                report("", "the document is empty")
                return nil
            }
            return DocumentValue(node: node, path: "")
        } catch let error as YamlError {
            report("", "not valid YAML or JSON: \(error)")
        } catch {
            report("", "not valid YAML or JSON: \(error)")
        }
        return nil
    }

    func report(_ path: String, _ message: String) {
        problems.append(ConfigurationProblem(path: path, message: message))
    }

    /// The fields of a mapping; unknown keys are reported with the list of known ones.
    func mapping(_ value: DocumentValue, known: [String]) -> [String: DocumentValue]? {
        guard case .mapping(let mapping) = value.node else {
            report(
                value.path,
                "expected a mapping with fields \(known.joined(separator: ", ")), got \(describe(value.node))"
            )
            return nil
        }
        var fields: [String: DocumentValue] = [:]
        for (keyNode, valueNode) in mapping {
            guard let key = keyNode.string else {
                report(value.path, "field names must be strings")
                continue
            }
            guard known.contains(key) else {
                report(value.child(key), "unknown field (known: \(known.joined(separator: ", ")))")
                continue
            }
            fields[key] = DocumentValue(node: valueNode, path: value.child(key))
        }
        return fields
    }

    /// A mapping whose keys are free-form names, e.g. per-zone demand.
    func dictionary(_ value: DocumentValue) -> [(key: String, value: DocumentValue)]? {
        guard case .mapping(let mapping) = value.node else {
            report(value.path, "expected a mapping, got \(describe(value.node))")
            return nil
        }
        var entries: [(key: String, value: DocumentValue)] = []
        for (keyNode, valueNode) in mapping {
            guard let key = keyNode.string else {
                report(value.path, "keys must be strings")
                continue
            }
            entries.append((key, DocumentValue(node: valueNode, path: value.child(key))))
        }
        return entries
    }

    func sequence(_ value: DocumentValue) -> [DocumentValue]? {
        guard case .sequence(let sequence) = value.node else {
            report(value.path, "expected a list, got \(describe(value.node))")
            return nil
        }
        return sequence.enumerated().map { DocumentValue(node: $1, path: "\(value.path)[\($0)]") }
    }

    func string(_ value: DocumentValue) -> String? {
        guard case .scalar(let scalar) = value.node, value.node.null == nil else {
            report(value.path, "expected a string, got \(describe(value.node))")
            return nil
        }
        guard !scalar.string.isEmpty else {
            report(value.path, "must not be empty")
            return nil
        }
        return scalar.string
    }

    /// The largest number a field takes unless it says otherwise. Demands, capacities, weights and costs are
    /// ratios or rates; bounding them keeps every sum and product the planner forms finite.
    static let largestNumber = 1e12
    /// The largest whole number a field takes unless it says otherwise; thresholds and counts stay far below it.
    static let largestInteger = 1_000_000_000

    /// A finite number from `minimum` to `maximum`.
    func number(_ value: DocumentValue, minimum: Double = 0, maximum: Double = largestNumber) -> Double? {
        guard case .scalar = value.node, value.node.tag != .init(.str), let number = value.node.float else {
            report(value.path, "expected a number, got \(describe(value.node))")
            return nil
        }
        guard number.isFinite else {
            report(value.path, "must be a finite number, got \(number)")
            return nil
        }
        guard number >= minimum else {
            report(value.path, "must be ≥ \(formatNumber(minimum)), got \(formatNumber(number))")
            return nil
        }
        guard number <= maximum else {
            report(value.path, "must be ≤ \(formatNumber(maximum)), got \(formatNumber(number))")
            return nil
        }
        return number
    }

    /// A whole number from `minimum` to `maximum`.
    func integer(_ value: DocumentValue, minimum: Int = 0, maximum: Int = largestInteger) -> Int? {
        // YAML 1.1 sexagesimal integers (`1:30`) overflow-trap inside Yams when long; nobody means them here.
        guard case .scalar(let scalar) = value.node, value.node.tag != .init(.str), !scalar.string.contains(":"),
            let number = value.node.int
        else {
            report(value.path, "expected a whole number, got \(describe(value.node))")
            return nil
        }
        guard number >= minimum else {
            report(value.path, "must be ≥ \(minimum), got \(number)")
            return nil
        }
        guard number <= maximum else {
            report(value.path, "must be ≤ \(maximum), got \(number)")
            return nil
        }
        return number
    }

    func bool(_ value: DocumentValue) -> Bool? {
        guard case .scalar = value.node, let bool = value.node.bool else {
            report(value.path, "expected true or false, got \(describe(value.node))")
            return nil
        }
        return bool
    }

    func duration(_ value: DocumentValue, minimum: Duration = .zero) -> Duration? {
        guard let text = string(value) else { return nil }
        let duration: Duration
        do {
            duration = try TimeSpan.parseChecked(text)
        } catch {
            report(value.path, "\(error), got \"\(text)\"")
            return nil
        }
        guard duration >= minimum else {
            report(value.path, "must be at least \(TimeSpan.format(minimum)), got \(text)")
            return nil
        }
        return duration
    }

    /// One of a fixed set of words.
    func choice<T: RawRepresentable & CaseIterable>(_ value: DocumentValue, as type: T.Type) -> T?
    where T.RawValue == String {
        guard let text = string(value) else { return nil }
        guard let result = T(rawValue: text) else {
            let valid = T.allCases.map(\.rawValue).joined(separator: ", ")
            report(value.path, "unknown value \"\(text)\" (valid: \(valid))")
            return nil
        }
        return result
    }

    func required(_ fields: [String: DocumentValue], _ key: String, in parent: DocumentValue) -> DocumentValue? {
        guard let value = fields[key] else {
            report(parent.child(key), "missing required field")
            return nil
        }
        return value
    }

    private func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            if node.null != nil { return "nothing" }
            return "\"\(scalar.string)\""
        }
    }
}

/// Prints a number without a trailing `.0` when it is whole.
public func formatNumber(_ value: Double) -> String {
    if value.isFinite, value == value.rounded(), abs(value) < 1e15 {
        return String(Int64(value))
    }
    return String(value)
}
