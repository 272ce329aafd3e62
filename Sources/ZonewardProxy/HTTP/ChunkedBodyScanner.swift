/// Follows a chunked body byte by byte to find where it ends, without changing it: the proxy relays the
/// chunks as they are and only needs to know where the next message starts.
///
/// Strict like the head parser: chunk sizes are hex without overflow, followed only by whitespace before
/// a `;` extension or the line's end, every line ends in CRLF, and extensions and trailers hold only valid
/// field bytes.
public struct ChunkedBodyScanner: Sendable {
    enum State: Sendable, Equatable {
        case size(value: UInt64, digits: Int)
        /// Whitespace after the size: only more of it, an extension or the end of the line may follow.
        case sizeWhitespace(value: UInt64)
        case sizeExtension(value: UInt64)
        case sizeLineFeed(value: UInt64)
        case data(remaining: UInt64)
        case dataCarriageReturn
        case dataLineFeed
        case trailerLineStart
        case trailerLine
        case trailerLineFeed
        case finalLineFeed
        case done
    }

    private(set) var state: State = .size(value: 0, digits: 0)

    public init() {}

    public var isComplete: Bool { state == .done }

    /// Consumes bytes of the body; returns how many belong to it (fewer than given once the body ends).
    public mutating func scan(_ bytes: UnsafeRawBufferPointer) throws(HTTPFramingError) -> Int {
        try scan(bytes) { _, _ in }
    }

    /// What a range of the body's bytes is, to a reader that takes the body apart (the HTTP/2 bridge).
    enum Part {
        /// Chunk data: the body's content.
        case data
        /// Trailer field lines, each with its CRLF (not the empty line that ends the body).
        case trailers
    }

    /// As `scan(_:)`, telling `found` where the chunks' data and the trailer lines are among `bytes` (each
    /// range within what is consumed; a chunk or trailer line split across calls comes in pieces).
    @inline(__always)
    mutating func scan(
        _ bytes: UnsafeRawBufferPointer,
        found: (Range<Int>, Part) -> Void
    ) throws(HTTPFramingError) -> Int {
        var index = 0
        let count = bytes.count
        var trailerStart: Int?
        defer { if let start = trailerStart, start < index { found(start..<index, .trailers) } }
        while index < count {
            switch state {
            case .data(let remaining):
                let take = Int(min(remaining, UInt64(count - index)))
                if take > 0 { found(index..<(index + take), .data) }
                index += take
                state = remaining == UInt64(take) ? .dataCarriageReturn : .data(remaining: remaining - UInt64(take))
                continue
            case .done:
                return index
            default:
                break
            }
            let byte = bytes[index]
            index += 1
            switch state {
            case .size(let value, let digits):
                if let digit = Self.hexValue(byte) {
                    guard digits < 15 else { throw .invalidChunk }
                    state = .size(value: value << 4 | UInt64(digit), digits: digits + 1)
                } else if digits > 0 && byte == 13 {
                    state = .sizeLineFeed(value: value)
                } else if digits > 0 && byte == 59 {
                    state = .sizeExtension(value: value)
                } else if digits > 0 && (byte == 32 || byte == 9) {
                    state = .sizeWhitespace(value: value)
                } else {
                    throw .invalidChunk
                }
            case .sizeWhitespace(let value):
                // `5 5` is not a size of 5 with an extension: another parser could read 0x55.
                if byte == 13 {
                    state = .sizeLineFeed(value: value)
                } else if byte == 59 {
                    state = .sizeExtension(value: value)
                } else if byte != 32 && byte != 9 {
                    throw .invalidChunk
                }
            case .sizeExtension(let value):
                if byte == 13 {
                    state = .sizeLineFeed(value: value)
                } else if !HTTPHeadParser.isFieldValueByte(byte) {
                    throw .invalidChunk
                }
            case .sizeLineFeed(let value):
                guard byte == 10 else { throw .invalidChunk }
                state = value == 0 ? .trailerLineStart : .data(remaining: value)
            case .dataCarriageReturn:
                guard byte == 13 else { throw .invalidChunk }
                state = .dataLineFeed
            case .dataLineFeed:
                guard byte == 10 else { throw .invalidChunk }
                state = .size(value: 0, digits: 0)
            case .trailerLineStart:
                if byte == 13 {
                    if let start = trailerStart, start < index - 1 { found(start..<(index - 1), .trailers) }
                    trailerStart = nil
                    state = .finalLineFeed
                } else if HTTPHeadParser.isTokenCharacter(byte) {
                    if trailerStart == nil { trailerStart = index - 1 }
                    state = .trailerLine
                } else {
                    throw .invalidChunk
                }
            case .trailerLine:
                if trailerStart == nil { trailerStart = index - 1 }
                if byte == 13 {
                    state = .trailerLineFeed
                } else if !HTTPHeadParser.isFieldValueByte(byte) {
                    throw .invalidChunk
                }
            case .trailerLineFeed:
                if trailerStart == nil { trailerStart = index - 1 }
                guard byte == 10 else { throw .invalidChunk }
                state = .trailerLineStart
            case .finalLineFeed:
                guard byte == 10 else { throw .invalidChunk }
                state = .done
                return index
            case .data, .done:
                break
            }
        }
        return index
    }

    @inline(__always)
    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 48...57: return byte - 48
        case 65...70: return byte - 55
        case 97...102: return byte - 87
        default: return nil
        }
    }
}

/// Tracks where a message body ends, whatever its framing.
public struct BodyTracker: Sendable {
    private enum Mode: Sendable {
        case remaining(Int)
        case chunked(ChunkedBodyScanner)
        case untilClose
        case complete
    }

    private var mode: Mode

    public init(_ framing: BodyFraming) {
        switch framing {
        case .none: mode = .complete
        case .contentLength(let length): mode = length > 0 ? .remaining(length) : .complete
        case .chunked: mode = .chunked(ChunkedBodyScanner())
        case .untilClose: mode = .untilClose
        }
    }

    public var isComplete: Bool {
        if case .complete = mode { return true }
        return false
    }

    /// A response body that ends only when the connection closes.
    public var isUntilClose: Bool {
        if case .untilClose = mode { return true }
        return false
    }

    /// How many of `bytes` belong to the body; the rest is the next message.
    public mutating func consume(_ bytes: UnsafeRawBufferPointer) throws(HTTPFramingError) -> Int {
        switch mode {
        case .complete:
            return 0
        case .untilClose:
            return bytes.count
        case .remaining(let remaining):
            let take = min(remaining, bytes.count)
            mode = take == remaining ? .complete : .remaining(remaining - take)
            return take
        case .chunked(var scanner):
            let taken = try scanner.scan(bytes)
            mode = scanner.isComplete ? .complete : .chunked(scanner)
            return taken
        }
    }
}
