import Foundation
import Testing
import ZonewardModel

@testable import ZonewardDiscovery

typealias Slice = Kubernetes.EndpointSlice

func fixture(_ name: String) throws -> Data {
    let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil))
    return try Data(contentsOf: url)
}

func slice(
    _ name: String,
    _ endpoints: [Slice.Endpoint],
    ports: [Slice.Port] = [.init(name: "http", port: 8080)],
    addressType: String = "IPv4"
) -> Slice {
    Slice(
        metadata: .init(name: name, namespace: "shop", resourceVersion: "1"),
        addressType: addressType,
        endpoints: endpoints,
        ports: ports
    )
}

@Suite struct EndpointSliceCacheTests {
    let zones: Set<String> = ["a", "b", "us-west2-a"]

    /// The API's own round-trip fixture decodes; its generated address type and port are refused with reasons.
    @Test func theAPITestDataDecodesAndIsRefusedWithReasons() throws {
        let object = try JSONDecoder().decode(
            Slice.self,
            from: try fixture("kubernetes-api-testdata-EndpointSlice.json")
        )
        #expect(object.ports?.first?.port == -591_435_092)
        #expect(object.endpoints?.first?.zone == "31")
        var cache = EndpointSliceCache()
        cache.replaceAll([object])
        let (endpoints, problems) = cache.endpoints(port: nil, knownZones: zones)
        #expect(endpoints.isEmpty)
        #expect(problems.count == 1)
        #expect(problems.first?.contains("unsupported addressType") == true)
    }

    @Test func theDocumentedExampleIsOneReadyEndpoint() throws {
        let object = try JSONDecoder().decode(Slice.self, from: try fixture("kubernetes-docs-EndpointSlice.json"))
        var cache = EndpointSliceCache()
        cache.replaceAll([object])
        let (endpoints, problems) = cache.endpoints(port: .name("http"), knownZones: zones)
        #expect(problems.isEmpty)
        #expect(endpoints == [DiscoveredEndpoint(address: HostPort(host: "10.1.2.3", port: 80), zone: "us-west2-a")])
    }

    /// Conditions as Kubernetes defines them: unknown ready is ready; terminating takes no new requests,
    /// unless nothing else is left, when serving terminating endpoints still get traffic.
    @Test func conditionsFollowTheAPIsRules() {
        var cache = EndpointSliceCache()
        cache.replaceAll([
            slice(
                "s1",
                [
                    .init(addresses: ["10.0.0.1"], conditions: nil, zone: "a"),
                    .init(
                        addresses: ["10.0.0.2"],
                        conditions: .init(ready: false, serving: true, terminating: true),
                        zone: "a"
                    ),
                    .init(addresses: ["10.0.0.3"], conditions: .init(ready: false), zone: "b"),
                ]
            )
        ])
        let endpoints = cache.endpoints(port: .name("http"), knownZones: zones).endpoints
        #expect(endpoints.count == 3)
        #expect(endpoints.routable.map(\.address.host) == ["10.0.0.1"])
        cache.replaceAll([
            slice(
                "s1",
                [
                    .init(
                        addresses: ["10.0.0.2"],
                        conditions: .init(ready: false, serving: true, terminating: true),
                        zone: "a"
                    )
                ]
            )
        ])
        #expect(
            cache.endpoints(port: .name("http"), knownZones: zones).endpoints.routable.map(\.address.host) == [
                "10.0.0.2"
            ]
        )
    }

    /// Several slices make one set; an endpoint moving between slices appears once, ready; deletes remove.
    @Test func slicesAddUpAndMovesAreSeamless() {
        var cache = EndpointSliceCache()
        cache.replaceAll([
            slice("s1", [.init(addresses: ["10.0.0.1"], zone: "a"), .init(addresses: ["10.0.0.2"], zone: "a")]),
            slice("s2", [.init(addresses: ["fd00::1"], zone: "b")], addressType: "IPv6"),
        ])
        #expect(cache.endpoints(port: .name("http"), knownZones: zones).endpoints.count == 3)
        // 10.0.0.2 moves to s2: for a moment in both, not ready in the old one.
        let addedToS2 = cache.apply(
            .modified(
                slice("s2", [.init(addresses: ["fd00::1"], zone: "b"), .init(addresses: ["10.0.0.2"], zone: "a")])
            )
        )
        #expect(addedToS2)
        let leavingS1 = cache.apply(
            .modified(
                slice(
                    "s1",
                    [
                        .init(addresses: ["10.0.0.1"], zone: "a"),
                        .init(addresses: ["10.0.0.2"], conditions: .init(ready: false), zone: "a"),
                    ]
                )
            )
        )
        #expect(leavingS1)
        let moved = cache.endpoints(port: .name("http"), knownZones: zones).endpoints
        #expect(moved.count == 3)
        #expect(moved.allSatisfy { $0.ready })
        let bookmark = cache.apply(.bookmark(resourceVersion: "9"))
        #expect(!bookmark)
        let deleted = cache.apply(.deleted(slice("s2", [])))
        #expect(deleted)
        #expect(
            cache.endpoints(port: .name("http"), knownZones: zones).endpoints.map(\.address.host) == [
                "10.0.0.1", "10.0.0.2",
            ]
        )
    }

    @Test func portsByNameNumberOrTheOnlyOne() {
        var cache = EndpointSliceCache()
        let ports: [Slice.Port] = [.init(name: "http", port: 8080), .init(name: "metrics", port: 9090)]
        cache.replaceAll([slice("s1", [.init(addresses: ["10.0.0.1"], zone: "a")], ports: ports)])
        #expect(cache.endpoints(port: .name("metrics"), knownZones: zones).endpoints.first?.address.port == 9090)
        #expect(cache.endpoints(port: .number(8080), knownZones: zones).endpoints.first?.address.port == 8080)
        let ambiguous = cache.endpoints(port: nil, knownZones: zones)
        #expect(ambiguous.endpoints.isEmpty)
        #expect(ambiguous.problems.first?.contains("name one") == true)
    }

    /// No zone on the endpoint: its node's zone label; an unknown zone is left out, said why.
    @Test func zonesFromNodesAndUnknownZones() {
        var cache = EndpointSliceCache()
        cache.replaceAll([
            slice(
                "s1",
                [
                    .init(addresses: ["10.0.0.1"], nodeName: "node-1"),
                    .init(addresses: ["10.0.0.2"], nodeName: "node-2"),
                    .init(addresses: ["10.0.0.3"], zone: "mars-1a"),
                ]
            )
        ])
        #expect(cache.nodesWithoutZone == ["node-1", "node-2"])
        let (endpoints, problems) = cache.endpoints(port: .name("http"), nodeZones: ["node-1": "b"], knownZones: zones)
        #expect(endpoints.map(\.zone) == ["b"])
        #expect(problems.count == 2)
    }
}

@Suite struct WatchEventTests {
    @Test func decodesEveryEventType() throws {
        let decoder = JSONDecoder()
        let sliceJSON = String(decoding: try fixture("kubernetes-docs-EndpointSlice.json"), as: UTF8.self)
        for type in ["ADDED", "MODIFIED", "DELETED"] {
            let event = try decoder.decode(
                Kubernetes.WatchEvent<Slice>.self,
                from: Data("{\"type\":\"\(type)\",\"object\":\(sliceJSON)}".utf8)
            )
            switch event {
            case .added(let object), .modified(let object), .deleted(let object):
                #expect(object.metadata.name == "example-abc")
            default: Issue.record("\(type) decoded as \(event)")
            }
        }
        let bookmark = try decoder.decode(
            Kubernetes.WatchEvent<Slice>.self,
            from: Data(
                #"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"12746"}}}"#
                    .utf8
            )
        )
        guard case .bookmark(let version) = bookmark else {
            Issue.record("not a bookmark")
            return
        }
        #expect(version == "12746")
        let gone = try decoder.decode(
            Kubernetes.WatchEvent<Slice>.self,
            from: Data(
                #"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (1201)","reason":"Expired","code":410}}"#
                    .utf8
            )
        )
        guard case .error(let status) = gone else {
            Issue.record("not an error")
            return
        }
        #expect(status.code == 410)
        #expect(status.reason == "Expired")
    }
}

@Suite struct WatchStateMachineTests {
    @Test func listThenWatchThenResumeFromTheLastVersion() {
        var machine = WatchStateMachine()
        var actions = [machine.start(), machine.listed(resourceVersion: "100")]
        machine.received(resourceVersion: "105")
        machine.received(resourceVersion: "110")  // a bookmark
        actions.append(machine.watchEnded())
        #expect(actions == [.list, .watch(from: "100"), .watch(from: "110")])
    }

    @Test func goneRelistsAtOnce() {
        var machine = WatchStateMachine()
        _ = machine.start()
        _ = machine.listed(resourceVersion: "100")
        let action = machine.gone()
        #expect(action == .list)
        #expect(machine.resourceVersion == nil)
    }

    /// Failures back off exponentially with full jitter, capped; a success resets; the watch resumes.
    @Test func failuresBackOffAndResume() {
        var machine = WatchStateMachine(initialBackoff: .milliseconds(500), maximumBackoff: .seconds(30))
        _ = machine.start()
        var actions = [machine.failed(random: 0.999_999), machine.backoffElapsed(), machine.failed(random: 0.5)]
        #expect(actions == [.wait(.milliseconds(500) * 0.999_999), .list, .wait(.milliseconds(500))])
        for _ in 0..<10 { _ = machine.failed(random: 1) }
        let capped = machine.failed(random: 1)
        #expect(capped == .wait(.seconds(30)))
        _ = machine.listed(resourceVersion: "7")
        #expect(machine.failures == 0)
        actions = [machine.failed(random: 1), machine.backoffElapsed()]
        #expect(actions == [.wait(.milliseconds(500)), .watch(from: "7")])
    }
}

@Suite struct KubernetesClientConfigurationTests {
    func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "zw-k8s-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func inClusterReadsTheServiceAccount() throws {
        let directory = try temporaryDirectory()
        try "token-1\n".write(toFile: "\(directory)/token", atomically: true, encoding: .utf8)
        try "shop\n".write(toFile: "\(directory)/namespace", atomically: true, encoding: .utf8)
        let configuration = try KubernetesClientConfiguration.inCluster(
            environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"],
            serviceAccountDirectory: directory
        )
        #expect(configuration.server == "https://10.96.0.1:443")
        #expect(configuration.namespace == "shop")
        #expect(try configuration.currentToken() == "token-1")
        // A rotated token is read at the next request.
        try "token-2\n".write(toFile: "\(directory)/token", atomically: true, encoding: .utf8)
        #expect(try configuration.currentToken() == "token-2")
        #expect(throws: DiscoveryError.self) { try KubernetesClientConfiguration.inCluster(environment: [:]) }
    }

    @Test func kubeconfigWithATokenOrACertificate() throws {
        let directory = try temporaryDirectory()
        let path = "\(directory)/config"
        try """
        apiVersion: v1
        kind: Config
        current-context: dev
        contexts:
          - name: dev
            context: {cluster: local, user: alice, namespace: shop}
          - name: cert
            context: {cluster: local, user: bob}
          - name: plugin
            context: {cluster: local, user: carol}
        clusters:
          - name: local
            cluster: {server: "https://127.0.0.1:6443", certificate-authority: ca.pem}
        users:
          - name: alice
            user: {token: abc}
          - name: bob
            user: {client-certificate-data: LS0t, client-key: key.pem}
          - name: carol
            user: {exec: {command: aws}}
        """.write(toFile: path, atomically: true, encoding: .utf8)
        let dev = try KubernetesClientConfiguration.kubeconfig(path: path)
        #expect(dev.server == "https://127.0.0.1:6443")
        #expect(dev.token == .value("abc"))
        #expect(dev.namespace == "shop")
        #expect(dev.certificateAuthority == .file("\(directory)/ca.pem"))
        let cert = try KubernetesClientConfiguration.kubeconfig(path: path, context: "cert")
        #expect(cert.clientCertificate == .data(Array("---".utf8)))
        #expect(cert.clientKey == .file("\(directory)/key.pem"))
        #expect(throws: DiscoveryError.self) {
            try KubernetesClientConfiguration.kubeconfig(path: path, context: "plugin")
        }
        #expect(throws: DiscoveryError.self) {
            try KubernetesClientConfiguration.kubeconfig(path: path, context: "nope")
        }
    }
}
