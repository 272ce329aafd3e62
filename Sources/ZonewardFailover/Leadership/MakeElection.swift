import Foundation
import Logging
import ZonewardDiscovery
import ZonewardModel

/// The election `controller.ha` asks for: etcd or a Kubernetes Lease. Errors name the configuration field.
public func makeElection(_ configuration: ControllerHAConfiguration, logger: Logger) throws -> any LeaderElection {
    guard configuration.safetyMargin >= .zero else {
        throw ElectionError.configuration("safetyMargin: must not be negative")
    }
    switch configuration.election {
    case .etcd(let etcd):
        return try EtcdElection(etcd, safetyMargin: configuration.safetyMargin, logger: logger)
    case .kubernetes(let kubernetes):
        let clientConfiguration: KubernetesClientConfiguration
        do {
            if let kubeconfig = kubernetes.kubeconfig {
                clientConfiguration = try KubernetesClientConfiguration.kubeconfig(path: kubeconfig)
            } else {
                clientConfiguration = try KubernetesClientConfiguration.inCluster()
            }
        } catch {
            let field = kubernetes.kubeconfig == nil ? "kubernetes (in-cluster)" : "kubernetes.kubeconfig"
            throw ElectionError.configuration("\(field): \(error)")
        }
        let client: KubernetesClient
        do {
            client = try KubernetesClient(sharingConnectionsWith: clientConfiguration)
        } catch {
            throw ElectionError.configuration("kubernetes.kubeconfig: \(error)")
        }
        return try KubernetesLeaseElection(kubernetes, client: client, logger: logger)
    }
}
