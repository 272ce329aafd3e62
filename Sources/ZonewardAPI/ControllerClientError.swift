import Foundation

/// Why a call to the controller's API did not give an answer: the URL asked, the HTTP status when there
/// was one, and the server's `{"error": ...}` message (or what went wrong on the way).
public struct ControllerClientError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// A `--controller` value is not an `http://` or `https://` URL.
        case invalidURL
        /// No controller answered: refused connections, timeouts, 503 from every URL.
        case unreachable
        /// The controller answered with an error status (`status`), its message in `message`.
        case refused
        /// The controller answered, but not with what the API promises (undecodable body, bad redirect).
        case invalidAnswer
    }

    public var kind: Kind
    /// The URL asked (for `unreachable`, every URL tried, comma-separated).
    public var url: String
    /// The HTTP status, when the controller answered.
    public var status: Int?
    /// The server's `error` message, or what went wrong.
    public var message: String

    public init(_ kind: Kind, url: String, status: Int? = nil, message: String) {
        self.kind = kind
        self.url = url
        self.status = status
        self.message = message
    }

    public var description: String {
        switch kind {
        case .invalidURL: "--controller: \(message)"
        case .unreachable: "no controller answered (\(url)): \(message)"
        case .refused: "controller \(url) answered \(status ?? 0): \(message)"
        case .invalidAnswer: "controller \(url)\(status.map { " answered \($0), but" } ?? ""): \(message)"
        }
    }
}
