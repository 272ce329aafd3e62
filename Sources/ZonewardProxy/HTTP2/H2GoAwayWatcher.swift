import NIOCore

/// Finds GOAWAY frames in the bytes an HTTP/2 endpoint writes, however they are split into writes. Pure.
///
/// Reads each frame's 9-byte header (in place when the write holds all of it, byte by byte across writes
/// otherwise), then skips its payload, but for a GOAWAY's first 8 payload bytes, whose last 4 are the error
/// code.
struct H2OutboundFrameScanner {
    /// Bytes of the current frame header read so far; 9 while in its payload.
    private var headerCount = 0
    private var length = 0
    private var type: UInt8 = 0
    /// Bytes of the current frame's payload still to come.
    private var payloadLeft = 0
    /// The current frame is a GOAWAY: how many of its first 8 payload bytes (last stream ID, error code)
    /// were read; nil for other frames.
    private var goAwaySeen: Int?
    private var code: UInt32 = 0

    /// Takes the next bytes written; returns the error code of each GOAWAY whose code they complete.
    mutating func scan(_ buffer: ByteBuffer) -> [UInt32] {
        buffer.withUnsafeReadableBytes { scan($0) }
    }

    mutating func scan(_ bytes: UnsafeRawBufferPointer) -> [UInt32] {
        var codes: [UInt32] = []
        var index = 0
        let count = bytes.count
        while index < count {
            if headerCount < 9 {
                if headerCount == 0, count - index >= 9 {
                    length = Int(bytes[index]) << 16 | Int(bytes[index + 1]) << 8 | Int(bytes[index + 2])
                    type = bytes[index + 3]
                    index += 9
                    headerCount = 9
                } else {
                    let byte = bytes[index]
                    switch headerCount {
                    case 0: length = Int(byte) << 16
                    case 1: length |= Int(byte) << 8
                    case 2: length |= Int(byte)
                    case 3: type = byte
                    default: break
                    }
                    headerCount += 1
                    index += 1
                    guard headerCount == 9 else { continue }
                }
                payloadLeft = length
                goAwaySeen = type == 0x7 ? 0 : nil
                code = 0
                if payloadLeft == 0 { headerCount = 0 }
                continue
            }
            let take = min(payloadLeft, count - index)
            if var seen = goAwaySeen, seen < 8 {
                var at = index
                while seen < 8, at < index + take {
                    if seen >= 4 { code = code << 8 | UInt32(bytes[at]) }
                    seen += 1
                    at += 1
                }
                goAwaySeen = seen
                if seen == 8 { codes.append(code) }
            }
            payloadLeft -= take
            index += take
            if payloadLeft == 0 { headerCount = 0 }
        }
        return codes
    }

    /// Bytes written that are not inspected (a file region): skipped as payload.
    mutating func skip(_ count: Int) {
        guard headerCount == 9 else { return }
        payloadLeft = max(0, payloadLeft - count)
        if payloadLeft == 0 { headerCount = 0 }
    }
}
