/// The few DNS messages Zoneward needs (RFC 1035): a recursive query for one name's A or AAAA records, and
/// the addresses and TTLs of the answer. The system resolver (getaddrinfo) cannot say how long an answer
/// may be kept, and no package on hand resolves with TTLs, hence this small codec.
public enum DNSMessage {
    public enum RecordType: UInt16, Sendable {
        case a = 1
        case aaaa = 28
    }

    /// An address record of an answer.
    public struct Answer: Sendable, Equatable {
        public var address: String
        public var ttl: UInt32
    }

    public enum Failure: Error, Sendable, Equatable {
        case invalidName(String)
        case malformed(String)
        /// The server answered with this RCODE (2 SERVFAIL, 3 NXDOMAIN, …).
        case responseCode(Int)
        case idMismatch
    }

    /// A query with recursion desired.
    public static func query(id: UInt16, name: String, type: RecordType) throws(Failure) -> [UInt8] {
        var bytes: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        let trimmed = name.hasSuffix(".") ? name.dropLast() : Substring(name)
        let labels = trimmed.split(separator: ".", omittingEmptySubsequences: false)
        guard !labels.isEmpty, name.utf8.count <= 253 else { throw .invalidName(name) }
        for label in labels {
            let utf8 = Array(label.utf8)
            guard (1...63).contains(utf8.count) else { throw .invalidName(name) }
            bytes.append(UInt8(utf8.count))
            bytes += utf8
        }
        bytes += [0, UInt8(type.rawValue >> 8), UInt8(type.rawValue & 0xFF), 0, 1]
        return bytes
    }

    /// The A or AAAA answers of a response to the query `id`; CNAMEs and other records are skipped (the
    /// recursive server has already followed the chain).
    public static func answers(_ bytes: [UInt8], id: UInt16, type: RecordType) throws(Failure) -> [Answer] {
        guard bytes.count >= 12 else { throw .malformed("shorter than a header") }
        guard UInt16(bytes[0]) << 8 | UInt16(bytes[1]) == id else { throw .idMismatch }
        guard bytes[2] & 0x80 != 0 else { throw .malformed("not a response") }
        let code = Int(bytes[3] & 0x0F)
        guard code == 0 else { throw .responseCode(code) }
        let questions = Int(UInt16(bytes[4]) << 8 | UInt16(bytes[5]))
        let answers = Int(UInt16(bytes[6]) << 8 | UInt16(bytes[7]))
        var offset = 12
        for _ in 0..<questions {
            offset = try skipName(bytes, offset)
            offset += 4
        }
        var result: [Answer] = []
        for _ in 0..<answers {
            offset = try skipName(bytes, offset)
            guard offset + 10 <= bytes.count else { throw .malformed("record header past the end") }
            let recordType = UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
            let ttl = bytes[offset + 4..<offset + 8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            let length = Int(UInt16(bytes[offset + 8]) << 8 | UInt16(bytes[offset + 9]))
            offset += 10
            guard offset + length <= bytes.count else { throw .malformed("record data past the end") }
            let data = bytes[offset..<offset + length]
            offset += length
            guard recordType == type.rawValue else { continue }
            switch type {
            case .a where length == 4:
                result.append(Answer(address: data.map(String.init).joined(separator: "."), ttl: ttl))
            case .aaaa where length == 16:
                let groups = stride(from: data.startIndex, to: data.endIndex, by: 2).map {
                    String(UInt16(data[$0]) << 8 | UInt16(data[$0 + 1]), radix: 16)
                }
                result.append(Answer(address: groups.joined(separator: ":"), ttl: ttl))
            default:
                throw .malformed("address record of \(length) bytes")
            }
        }
        return result
    }

    /// The offset after a (possibly compressed) name.
    private static func skipName(_ bytes: [UInt8], _ start: Int) throws(Failure) -> Int {
        var offset = start
        while true {
            guard offset < bytes.count else { throw .malformed("name past the end") }
            let length = Int(bytes[offset])
            if length == 0 { return offset + 1 }
            if length & 0xC0 == 0xC0 { return offset + 2 }  // a pointer ends the name
            guard length & 0xC0 == 0 else { throw .malformed("unknown label type") }
            offset += 1 + length
        }
    }
}
