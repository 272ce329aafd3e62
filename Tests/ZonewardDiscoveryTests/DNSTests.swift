import Testing

@testable import ZonewardDiscovery

@Suite struct DNSMessageTests {
    @Test func encodesARecursiveQuery() throws {
        let query = try DNSMessage.query(id: 0x1234, name: "web.a.internal", type: .a)
        #expect(Array(query.prefix(12)) == [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])
        #expect(
            Array(query.dropFirst(12)) == [3] + Array("web".utf8) + [1] + Array("a".utf8) + [8] + Array("internal".utf8)
                + [0, 0, 1, 0, 1]
        )
        #expect(throws: DNSMessage.Failure.self) { try DNSMessage.query(id: 1, name: "a..b", type: .a) }
        #expect(throws: DNSMessage.Failure.self) {
            try DNSMessage.query(id: 1, name: String(repeating: "x", count: 64) + ".io", type: .a)
        }
    }

    /// A response as a recursive server sends it: the question, a CNAME, then A records whose names are
    /// compression pointers, with their TTLs.
    @Test func readsAddressesAndTTLsThroughCompressionAndCNAMEs() throws {
        let question = try DNSMessage.query(id: 7, name: "web.internal", type: .a)
        var response = Array(question)
        response[2] = 0x81  // response, recursion desired
        response[3] = 0x80  // recursion available, NOERROR
        response[7] = 3  // three answers
        // CNAME web.internal → (pointer to offset 12), 60 s.
        response += [0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xC0, 12]
        response += [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 127, 0, 0, 11]
        response += [0xC0, 12, 0, 1, 0, 1, 0, 0, 0x01, 0x2C, 0, 4, 10, 1, 2, 3]
        let answers = try DNSMessage.answers(response, id: 7, type: .a)
        #expect(answers == [.init(address: "127.0.0.11", ttl: 30), .init(address: "10.1.2.3", ttl: 300)])
    }

    @Test func readsAAAA() throws {
        var response = try DNSMessage.query(id: 9, name: "v6.internal", type: .aaaa)
        response[2] = 0x81
        response[7] = 1
        response += [0xC0, 12, 0, 28, 0, 1, 0, 0, 0, 5, 0, 16, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        #expect(try DNSMessage.answers(response, id: 9, type: .aaaa) == [.init(address: "fd00:0:0:0:0:0:0:1", ttl: 5)])
    }

    @Test func refusesErrorsAndGarbage() throws {
        var nxdomain = try DNSMessage.query(id: 3, name: "gone.internal", type: .a)
        nxdomain[2] = 0x81
        nxdomain[3] = 0x83
        #expect(throws: DNSMessage.Failure.responseCode(3)) { try DNSMessage.answers(nxdomain, id: 3, type: .a) }
        #expect(throws: DNSMessage.Failure.idMismatch) { try DNSMessage.answers(nxdomain, id: 4, type: .a) }
        #expect(throws: DNSMessage.Failure.self) { try DNSMessage.answers([0, 3, 0x81], id: 3, type: .a) }
        var truncated = try DNSMessage.query(id: 5, name: "t.internal", type: .a)
        truncated[2] = 0x81
        truncated[7] = 1
        truncated += [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 127]
        #expect(throws: DNSMessage.Failure.self) { try DNSMessage.answers(truncated, id: 5, type: .a) }
    }

    @Test func reResolvesAtTheShortestTTLWithinBounds() {
        #expect(DNSWatcher.interval(ttls: [30, 12]) == .seconds(12))
        #expect(DNSWatcher.interval(ttls: [0]) == .seconds(5))
        #expect(DNSWatcher.interval(ttls: [86_400]) == .seconds(300))
        #expect(DNSWatcher.interval(ttls: []) == .seconds(30))
    }
}
