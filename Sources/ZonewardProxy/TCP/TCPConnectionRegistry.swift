import NIOCore
import Synchronization

/// Relayed TCP connections by service and the region of their endpoint, so that when a service's active
/// region changes, connections still open to the old primary are closed instead of writing to it.
final class TCPConnectionRegistry: Sendable {
    private struct Entry {
        var service: String
        var region: String
        var client: any Channel
        var upstream: any Channel
    }

    private let entries = Mutex<[ObjectIdentifier: Entry]>([:])

    func add(service: String, region: String, client: any Channel, upstream: any Channel) {
        let id = ObjectIdentifier(client)
        entries.withLock {
            $0[id] = Entry(service: service, region: region, client: client, upstream: upstream)
        }
        client.closeFuture.whenComplete { [self] _ in
            _ = entries.withLock { $0.removeValue(forKey: id) }
        }
    }

    /// Closes every connection of `service` to a region other than `activeRegion`; returns how many.
    @discardableResult
    func closeOutside(service: String, activeRegion: String) -> Int {
        let stale = entries.withLock { entries in
            entries.values.filter { $0.service == service && $0.region != activeRegion }
        }
        for entry in stale {
            entry.upstream.close(promise: nil)
            entry.client.close(promise: nil)
        }
        return stale.count
    }
}
