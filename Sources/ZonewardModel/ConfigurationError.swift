/// One problem found while reading a configuration or topology file: where it is and what would be valid.
public struct ConfigurationProblem: Sendable, Hashable, CustomStringConvertible {
    /// The path of the offending field, e.g. `services[0].endpoints[2].zone`; empty for the whole document.
    public var path: String
    /// What is wrong and what would be valid.
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String {
        path.isEmpty ? message : "\(path): \(message)"
    }
}

/// The error thrown when a file is refused: every problem found, not just the first.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    /// The file the problems were found in, when known.
    public var file: String?
    /// Every problem, in document order.
    public var problems: [ConfigurationProblem]

    public init(file: String? = nil, problems: [ConfigurationProblem]) {
        self.file = file
        self.problems = problems
    }

    public var description: String {
        let prefix = file.map { "\($0): " } ?? ""
        return problems.map { prefix + $0.description }.joined(separator: "\n")
    }
}
