import NIOHTTP2

/// The open streams of one connection by ID, for the relay's handlers. A connection's new streams take
/// ever larger IDs (RFC 9113 §5.1.1), so the table is two arrays in ID order: a lookup is a binary search
/// over the few streams open at once, an insert an append, a removal a short move. (A `Dictionary` hashed
/// each `HTTP2StreamID` with SipHash on every frame and event: about 1,500 instructions per proxied stream,
/// both connections together, in `PROTO=h2 bench/callgrind-proxy.sh`.)
struct H2StreamTable<Stream: AnyObject> {
    private var ids: [HTTP2StreamID] = []
    private var streams: [Stream] = []

    var isEmpty: Bool { ids.isEmpty }
    var count: Int { ids.count }
    /// The streams, in ID order: a copy, so the caller may end them while it iterates.
    var values: [Stream] { streams }

    /// The stream with `id`; setting nil removes it, setting a stream adds (or replaces) it.
    subscript(id: HTTP2StreamID) -> Stream? {
        get {
            guard let index = index(of: id) else { return nil }
            return streams[index]
        }
        set {
            if let stream = newValue {
                insert(stream, for: id)
            } else if let index = index(of: id) {
                ids.remove(at: index)
                streams.remove(at: index)
            }
        }
    }

    private mutating func insert(_ stream: Stream, for id: HTTP2StreamID) {
        // The usual case: a new stream, above every open one.
        if let last = ids.last, id <= last {
            let index = firstIndex(notBelow: id)
            if ids[index] == id {
                streams[index] = stream
            } else {
                ids.insert(id, at: index)
                streams.insert(stream, at: index)
            }
        } else {
            ids.append(id)
            streams.append(stream)
        }
    }

    private func index(of id: HTTP2StreamID) -> Int? {
        let index = firstIndex(notBelow: id)
        return index < ids.count && ids[index] == id ? index : nil
    }

    /// The index of the first ID not below `id` (`ids.count` when all are).
    private func firstIndex(notBelow id: HTTP2StreamID) -> Int {
        var low = 0
        var high = ids.count
        while low < high {
            let middle = (low + high) / 2
            if ids[middle] < id {
                low = middle + 1
            } else {
                high = middle
            }
        }
        return low
    }
}
