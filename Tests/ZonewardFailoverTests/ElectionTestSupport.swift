import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import ZonewardModel

@testable import ZonewardFailover

#if canImport(Glibc)
import Glibc
#endif

/// A free TCP port on 127.0.0.1 (bound to port 0, read back, released).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestProcessError("socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw TestProcessError("bind() failed") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw TestProcessError("getsockname() failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}

struct TestProcessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A process a test started (and stops, by its pid), with its output in a file in `directory`.
final class TestProcess: @unchecked Sendable {
    let process = Process()
    let directory: URL
    let logFile: URL

    init(_ executable: String, _ arguments: [String], directory: URL, log: String) throws {
        self.directory = directory
        logFile = directory.appendingPathComponent(log)
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let output = try FileHandle(forWritingTo: logFile)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    /// SIGTERM, then SIGKILL after 3 s; waits for it to exit.
    func stop() {
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        for _ in 0..<300 where process.isRunning { usleep(10_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }

    var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }
}

func makeTemporaryDirectory(_ name: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("zoneward-\(name)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Waits until `condition` holds, polling every 10 ms; false after `timeout`.
func eventually(within timeout: Duration, _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return await condition()
}

/// An HTTP GET on loopback answering 2xx.
func httpOK(_ url: String, method: HTTPMethod = .GET, body: String? = nil) async -> Bool {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let body { request.body = .bytes(ByteBuffer(string: body)) }
    guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(2)) else { return false }
    _ = try? await response.body.collect(upTo: 1 << 20)
    return (200..<300).contains(response.status.code)
}

/// `NAME-cert.pem` and `NAME-key.pem` in `directory`: self-signed for 127.0.0.1, usable by a server and a client.
func makeSelfSignedCertificate(in directory: URL, name: String) throws -> (certificate: String, key: String) {
    let certificate = directory.appendingPathComponent("\(name)-cert.pem").path
    let key = directory.appendingPathComponent("\(name)-key.pem").path
    let openssl = Process()
    openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    openssl.arguments = [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=kubernetes",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-addext", "extendedKeyUsage=serverAuth,clientAuth",
        "-keyout", key, "-out", certificate,
    ]
    openssl.standardOutput = FileHandle.nullDevice
    openssl.standardError = FileHandle.nullDevice
    try openssl.run()
    openssl.waitUntilExit()
    guard openssl.terminationStatus == 0 else { throw TestProcessError("openssl could not make a certificate") }
    return (certificate, key)
}

/// A single-member etcd on loopback ports, with its data in a temporary directory.
final class EtcdServer: Sendable {
    static let binary = "/usr/bin/etcd"
    static var available: Bool { FileManager.default.isExecutableFile(atPath: binary) }

    let process: TestProcess
    let url: String
    let directory: URL

    /// With `tls`, clients must use https and present a certificate: `certificate`/`key` (self-signed, also
    /// the CA etcd trusts) serve both ends.
    let certificate: String?
    let key: String?

    init(tls: Bool = false) async throws {
        directory = try makeTemporaryDirectory("etcd")
        let client = try freeLoopbackPort()
        let peer = try freeLoopbackPort()
        url = "\(tls ? "https" : "http")://127.0.0.1:\(client)"
        var arguments = [
            "--name", "test", "--data-dir", directory.appendingPathComponent("data").path,
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", "http://127.0.0.1:\(peer)",
            "--initial-advertise-peer-urls", "http://127.0.0.1:\(peer)",
            "--initial-cluster", "test=http://127.0.0.1:\(peer)",
            // Short ticks: leases of 1 s are allowed (the minimum TTL is 1.5 election ticks' worth).
            "--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "warn",
        ]
        if tls {
            let (certificate, key) = try makeSelfSignedCertificate(in: directory, name: "etcd")
            self.certificate = certificate
            self.key = key
            arguments += [
                "--cert-file", certificate, "--key-file", key, "--client-cert-auth", "--trusted-ca-file", certificate,
            ]
        } else {
            certificate = nil
            key = nil
        }
        process = try TestProcess(Self.binary, arguments, directory: directory, log: "etcd.log")
        var configuration = ControllerHAConfiguration.EtcdElection(endpoints: [url])
        configuration.caFile = certificate
        configuration.certFile = certificate
        configuration.keyFile = key
        let gateway = EtcdGateway(endpoints: [url], tls: try EtcdElection.tls(configuration))
        let ready = await eventually(within: .seconds(15)) {
            (try? await gateway.range("x", timeout: .seconds(1))) != nil
        }
        guard ready else {
            let log = process.log
            stop()
            throw TestProcessError("etcd did not start: \(log.suffix(2000))")
        }
    }

    func stop() {
        process.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// integration/lib/k8s_api_double.py on loopback ports over TLS (a self-signed certificate made with
/// openssl), with a kubeconfig naming it, as integration/kubernetes-discovery.sh sets it up.
final class KubernetesAPIDouble: Sendable {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("integration/lib/k8s_api_double.py").path
    static var available: Bool {
        FileManager.default.fileExists(atPath: script)
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")
    }

    let process: TestProcess
    let directory: URL
    let kubeconfig: String
    let control: String

    init() async throws {
        directory = try makeTemporaryDirectory("k8s")
        let api = try freeLoopbackPort()
        let controlPort = try freeLoopbackPort()
        control = "http://127.0.0.1:\(controlPort)"
        _ = try makeSelfSignedCertificate(in: directory, name: "api")
        try "t1\n".write(to: directory.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        kubeconfig = directory.appendingPathComponent("kubeconfig").path
        try """
        apiVersion: v1
        kind: Config
        current-context: test
        contexts: [{name: test, context: {cluster: double, user: controller, namespace: zw}}]
        clusters: [{name: double, cluster: {server: "https://127.0.0.1:\(api)", certificate-authority: api-cert.pem}}]
        users: [{name: controller, user: {tokenFile: token}}]
        """.write(toFile: kubeconfig, atomically: true, encoding: .utf8)
        process = try TestProcess(
            "/usr/bin/env",
            [
                "python3", Self.script, "--port", String(api), "--control-port", String(controlPort),
                "--cert", directory.appendingPathComponent("api-cert.pem").path,
                "--key", directory.appendingPathComponent("api-key.pem").path, "--token", "t1",
            ],
            directory: directory,
            log: "double.log"
        )
        let control = control
        guard await eventually(within: .seconds(30), { await httpOK("\(control)/state") }) else {
            let log = process.log
            stop()
            throw TestProcessError("the API double did not start: \(log.suffix(2000))")
        }
    }

    /// Another writer replaces the Lease (a new resourceVersion).
    func overwriteLease(namespace: String, name: String, spec: String) async -> Bool {
        await httpOK(
            "\(control)/lease",
            method: .POST,
            body: #"{"namespace": "\#(namespace)", "name": "\#(name)", "spec": \#(spec)}"#
        )
    }

    func stop() {
        process.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}
