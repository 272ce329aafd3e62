import Foundation
import Yams

/// How to reach a Kubernetes API server: in-cluster (the pod's service account) or from a kubeconfig file.
public struct KubernetesClientConfiguration: Sendable, Equatable {
    /// Where a bearer token comes from.
    public enum Token: Sendable, Equatable {
        case value(String)
        /// Re-read before every request, so a rotated service-account token is picked up.
        case file(String)
    }

    /// PEM bytes, given inline or as a file.
    public enum PEM: Sendable, Equatable {
        case file(String)
        case data([UInt8])
    }

    /// `https://host:port`.
    public var server: String
    public var token: Token?
    /// The CA that signs the API server's certificate; nil trusts the system's roots.
    public var certificateAuthority: PEM?
    public var clientCertificate: PEM?
    public var clientKey: PEM?
    public var insecureSkipTLSVerify = false
    /// The namespace of the pod (in-cluster) or of the kubeconfig context.
    public var namespace: String?

    public init(server: String, token: Token? = nil, certificateAuthority: PEM? = nil, namespace: String? = nil) {
        self.server = server
        self.token = token
        self.certificateAuthority = certificateAuthority
        self.namespace = namespace
    }

    /// The service-account folder every pod gets.
    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// In-cluster: `KUBERNETES_SERVICE_HOST` and `_PORT`, and the service account's token, CA and namespace.
    public static func inCluster(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        serviceAccountDirectory directory: String = serviceAccountDirectory
    ) throws(DiscoveryError) -> KubernetesClientConfiguration {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
            let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty
        else {
            throw .configuration(
                "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset); "
                    + "pass --kubeconfig FILE"
            )
        }
        let tokenPath = "\(directory)/token"
        guard FileManager.default.isReadableFile(atPath: tokenPath) else {
            throw .configuration("no service-account token at \(tokenPath) (is automountServiceAccountToken off?)")
        }
        let bracketed = host.contains(":") ? "[\(host)]" : host
        var configuration = KubernetesClientConfiguration(
            server: "https://\(bracketed):\(port)",
            token: .file(tokenPath),
            certificateAuthority: .file("\(directory)/ca.crt")
        )
        configuration.namespace = (try? String(contentsOfFile: "\(directory)/namespace", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return configuration
    }

    /// From a kubeconfig file: its current context's cluster, user (token, token file or client
    /// certificate) and namespace. Exec and auth-provider plugins are not supported.
    public static func kubeconfig(
        path: String,
        context wanted: String? = nil
    ) throws(DiscoveryError)
        -> KubernetesClientConfiguration
    {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw .configuration("cannot read the kubeconfig \(path)")
        }
        let root: [String: Any]
        do {
            guard let loaded = try Yams.load(yaml: text) as? [String: Any] else {
                throw DiscoveryError.configuration("kubeconfig \(path): not a YAML mapping")
            }
            root = loaded
        } catch let error as DiscoveryError {
            throw error
        } catch {
            throw .configuration("kubeconfig \(path): not valid YAML: \(error)")
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent().path
        func relative(_ file: String) -> String { file.hasPrefix("/") ? file : "\(base)/\(file)" }
        func named(_ list: String, _ name: String) -> [String: Any]? {
            (root[list] as? [[String: Any]])?.first { $0["name"] as? String == name }?[String(list.dropLast())]
                as? [String: Any]
        }
        guard let contextName = wanted ?? (root["current-context"] as? String) else {
            throw .configuration("kubeconfig \(path): no current-context; pass the context to use")
        }
        guard let context = named("contexts", contextName) else {
            throw .configuration("kubeconfig \(path): no context named \"\(contextName)\"")
        }
        guard let clusterName = context["cluster"] as? String, let cluster = named("clusters", clusterName),
            let server = cluster["server"] as? String
        else {
            throw .configuration("kubeconfig \(path): context \"\(contextName)\" names no cluster with a server")
        }
        var configuration = KubernetesClientConfiguration(server: server)
        configuration.namespace = context["namespace"] as? String
        configuration.insecureSkipTLSVerify = cluster["insecure-skip-tls-verify"] as? Bool ?? false
        if let data = cluster["certificate-authority-data"] as? String {
            configuration.certificateAuthority = try .data(decodeBase64(data, "certificate-authority-data", path))
        } else if let file = cluster["certificate-authority"] as? String {
            configuration.certificateAuthority = .file(relative(file))
        }
        if let userName = context["user"] as? String, let user = named("users", userName) {
            if user["exec"] != nil || user["auth-provider"] != nil {
                throw .configuration(
                    "kubeconfig \(path): user \"\(userName)\" uses an exec or auth-provider plugin, which Zoneward "
                        + "does not run; use a token or a client certificate"
                )
            }
            if let token = user["token"] as? String {
                configuration.token = .value(token)
            } else if let file = user["tokenFile"] as? String {
                configuration.token = .file(relative(file))
            }
            if let data = user["client-certificate-data"] as? String {
                configuration.clientCertificate = try .data(decodeBase64(data, "client-certificate-data", path))
            } else if let file = user["client-certificate"] as? String {
                configuration.clientCertificate = .file(relative(file))
            }
            if let data = user["client-key-data"] as? String {
                configuration.clientKey = try .data(decodeBase64(data, "client-key-data", path))
            } else if let file = user["client-key"] as? String {
                configuration.clientKey = .file(relative(file))
            }
        }
        return configuration
    }

    private static func decodeBase64(_ text: String, _ field: String, _ path: String) throws(DiscoveryError) -> [UInt8]
    {
        guard let data = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw .configuration("kubeconfig \(path): \(field) is not base64")
        }
        return Array(data)
    }

    /// The bearer token to send now (a file is read each time).
    func currentToken() throws(DiscoveryError) -> String? {
        switch token {
        case .value(let value): return value
        case .file(let path):
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw .configuration("cannot read the token file \(path)")
            }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        case nil: return nil
        }
    }
}

/// Why discovery could not do what it was asked.
public enum DiscoveryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The client cannot be set up (missing in-cluster files, a bad kubeconfig).
    case configuration(String)
    /// The API server answered with an error status (and its Status object, when it sent one).
    case status(code: Int, reason: String?, message: String?)
    /// The server could not be reached or the connection broke.
    case transport(String)
    /// A response could not be read.
    case decoding(String)

    public var description: String {
        switch self {
        case .configuration(let message): return message
        case .status(let code, let reason, let message):
            return "API server answered \(code)\(reason.map { " \($0)" } ?? "")\(message.map { ": \($0)" } ?? "")"
        case .transport(let message): return "API server unreachable: \(message)"
        case .decoding(let message): return "unreadable API response: \(message)"
        }
    }
}
