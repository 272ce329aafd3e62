/// The Kubernetes API objects Zoneward reads, with only the fields it uses. Unknown fields are ignored,
/// as every Kubernetes client must, so newer API servers keep working.
public enum Kubernetes {
    /// `metadata` of an object.
    public struct ObjectMeta: Codable, Sendable, Equatable {
        public var name: String?
        public var namespace: String?
        public var resourceVersion: String?
        public var labels: [String: String]?

        public init(
            name: String? = nil,
            namespace: String? = nil,
            resourceVersion: String? = nil,
            labels: [String: String]? = nil
        ) {
            self.name = name
            self.namespace = namespace
            self.resourceVersion = resourceVersion
            self.labels = labels
        }
    }

    /// `metadata` of a list: where a watch starts.
    public struct ListMeta: Codable, Sendable, Equatable {
        public var resourceVersion: String?
        public var `continue`: String?
    }

    /// A list response (`…List` kinds).
    public struct ObjectList<Item: Codable & Sendable>: Codable, Sendable {
        public var metadata: ListMeta
        public var items: [Item]
    }

    /// `discovery.k8s.io/v1` EndpointSlice.
    public struct EndpointSlice: Codable, Sendable, Equatable {
        public struct Conditions: Codable, Sendable, Equatable {
            /// Nil means unknown, which clients must read as ready (the API's own rule).
            public var ready: Bool?
            /// Nil means the same as `ready`.
            public var serving: Bool?
            /// Nil means not terminating.
            public var terminating: Bool?

            public init(ready: Bool? = nil, serving: Bool? = nil, terminating: Bool? = nil) {
                self.ready = ready
                self.serving = serving
                self.terminating = terminating
            }
        }

        public struct Endpoint: Codable, Sendable, Equatable {
            public var addresses: [String]
            public var conditions: Conditions?
            public var nodeName: String?
            public var zone: String?

            public init(
                addresses: [String],
                conditions: Conditions? = nil,
                nodeName: String? = nil,
                zone: String? = nil
            ) {
                self.addresses = addresses
                self.conditions = conditions
                self.nodeName = nodeName
                self.zone = zone
            }
        }

        public struct Port: Codable, Sendable, Equatable {
            public var name: String?
            public var port: Int?
            public var `protocol`: String?

            public init(name: String? = nil, port: Int? = nil, protocol: String? = nil) {
                self.name = name
                self.port = port
                self.protocol = `protocol`
            }
        }

        public var metadata: ObjectMeta
        /// `IPv4`, `IPv6` or `FQDN`. Optional here only because a BOOKMARK event carries a bare object.
        public var addressType: String?
        public var endpoints: [Endpoint]?
        public var ports: [Port]?

        public init(metadata: ObjectMeta, addressType: String?, endpoints: [Endpoint]?, ports: [Port]?) {
            self.metadata = metadata
            self.addressType = addressType
            self.endpoints = endpoints
            self.ports = ports
        }
    }

    /// A Node: only its labels (for the zone of an endpoint that names its node but not its zone).
    public struct Node: Codable, Sendable, Equatable {
        public var metadata: ObjectMeta
    }

    /// The API's error object (`kind: Status`).
    public struct Status: Codable, Sendable, Equatable, Error {
        public var code: Int?
        public var reason: String?
        public var message: String?
    }

    /// One line of a watch stream.
    public enum WatchEvent<Object: Codable & Sendable>: Sendable {
        case added(Object)
        case modified(Object)
        case deleted(Object)
        /// Progress: nothing changed up to this resource version.
        case bookmark(resourceVersion: String)
        /// The server ended the watch with a Status (410 Gone when the version is too old).
        case error(Status)
    }

    /// The zone label Kubernetes puts on nodes.
    public static let zoneLabel = "topology.kubernetes.io/zone"
    /// The label that ties an EndpointSlice to its Service.
    public static let serviceNameLabel = "kubernetes.io/service-name"
}

extension Kubernetes.WatchEvent: Decodable {
    private enum CodingKeys: String, CodingKey {
        case type, object
    }

    private struct Bookmark: Decodable {
        var metadata: Kubernetes.ObjectMeta
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let type = try container.decode(String.self, forKey: .type)
        switch type {
        case "ADDED": self = .added(try container.decode(Object.self, forKey: .object))
        case "MODIFIED": self = .modified(try container.decode(Object.self, forKey: .object))
        case "DELETED": self = .deleted(try container.decode(Object.self, forKey: .object))
        case "BOOKMARK":
            let bookmark = try container.decode(Bookmark.self, forKey: .object)
            self = .bookmark(resourceVersion: bookmark.metadata.resourceVersion ?? "")
        case "ERROR": self = .error(try container.decode(Kubernetes.Status.self, forKey: .object))
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .type,
                in: container,
                debugDescription: "unknown watch event type \"\(type)\""
            )
        }
    }
}
