import Foundation

/// How controller replicas elect their leader and where the state follows it (`controller.ha`).
public struct ControllerHAConfiguration: Sendable, Equatable {
    /// The store that holds the leader key: an etcd cluster or a Kubernetes Lease.
    public enum Election: Sendable, Equatable {
        case etcd(EtcdElection)
        case kubernetes(KubernetesLeaseElection)
    }

    /// Leader election on etcd's v3 JSON gateway: a lease with a TTL, a create-if-absent transaction on
    /// `<prefix>leader`, keep-alives, and a watch for the key's deletion.
    public struct EtcdElection: Sendable, Equatable {
        /// Client URLs of the etcd members, e.g. `https://etcd-0:2379`; tried in turn.
        public var endpoints: [String]
        /// Every key Zoneward writes starts with this; default `/zoneward/`.
        public var prefix: String = "/zoneward/"
        public var caFile: String?
        public var certFile: String?
        public var keyFile: String?
        /// The lease's time to live; default 5 s.
        public var ttl: Duration = .seconds(5)

        public init(endpoints: [String]) {
            self.endpoints = endpoints
        }
    }

    /// Leader election on a `coordination.k8s.io/v1` Lease, with client-go's timings by default.
    public struct KubernetesLeaseElection: Sendable, Equatable {
        /// Namespace of the Lease; default: the pod's own namespace (from the service account), else `default`.
        public var namespace: String?
        /// Name of the Lease; default `zoneward-controller`.
        public var lease: String = "zoneward-controller"
        /// How long a Lease not renewed stays its holder's; default 15 s.
        public var leaseDuration: Duration = .seconds(15)
        /// How long a leader keeps trying to renew before it stops acting; default 10 s.
        public var renewDeadline: Duration = .seconds(10)
        /// How often candidates try to acquire and the leader renews; default 2 s.
        public var retryPeriod: Duration = .seconds(2)
        /// A kubeconfig file; nil means in-cluster (service account).
        public var kubeconfig: String?

        public init() {}
    }

    public var election: Election
    /// The backup job whose targets and key hold the shipped state database.
    public var stateJob: String
    /// How many shipped copies of the state are kept on each target; default 20.
    public var keep: Int = 20
    /// How long before its lease can expire at the store a leader stops acting; default 1 s.
    public var safetyMargin: Duration = .seconds(1)

    public init(election: Election, stateJob: String) {
        self.election = election
        self.stateJob = stateJob
    }
}
