/// Why a message head or body was refused. Each case maps to the status the proxy answers with.
public enum HTTPFramingError: Error, Sendable, Equatable {
    case headTooLarge
    case tooManyHeaders
    case invalidRequestLine
    case invalidStatusLine
    case unsupportedVersion
    /// A CR not followed by LF, or an LF not preceded by CR.
    case bareLineEnding
    /// A header line that starts with whitespace (obsolete line folding).
    case obsoleteLineFolding
    case invalidHeaderName
    case invalidHeaderValue
    case invalidContentLength
    case conflictingContentLength
    /// Both Transfer-Encoding and Content-Length: the classic smuggling vector.
    case contentLengthWithTransferEncoding
    /// Transfer-Encoding other than a single, final `chunked`.
    case unsupportedTransferEncoding
    case missingHost
    case duplicateHost
    case invalidChunk

    /// The status the proxy answers a client with.
    public var status: Int {
        switch self {
        case .headTooLarge, .tooManyHeaders: return 431
        case .unsupportedVersion: return 505
        case .unsupportedTransferEncoding: return 501
        default: return 400
        }
    }
}
