import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import ZonewardAPI
import ZonewardModel
import ZonewardState

@testable import ZonewardFailover

/// A controller over an in-memory database on 127.0.0.1, port 0: one failover service, two zones, one
/// backup job, the full token `secret` and a token per scope.
func makeLeader() throws -> ControllerService {
    var configuration = try ZonewardConfiguration.parse(
        yaml: """
            zones:
              - {name: za, region: ra}
              - {name: zb, region: rb}
            services:
              - name: orders
                listen: 127.0.0.1:1
                protocol: tcp
                routing: activeRegion
                regions: [ra, rb]
                endpoints:
                  - {address: 127.0.0.1:2, zone: za}
                  - {address: 127.0.0.1:3, zone: zb}
                failover: {mode: manual}
            """
    )
    configuration.backups = [
        BackupJobConfiguration(
            name: "state",
            source: .sqlite("/nonexistent/state.db"),
            schedule: "17 * * * *",
            targets: [.filesystem("/nonexistent/backups")],
            keyFile: "/nonexistent/key"
        )
    ]
    var settings = ControllerService.Settings(
        configuration: configuration,
        listen: HostPort(host: "127.0.0.1", port: 0),
        token: "secret"
    )
    settings.scopedTokens = [.read: "reader", .report: "proxy", .operate: "operator", .backup: "backup"]
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return ControllerService(
        settings: settings,
        store: try StateStore.inMemory(),
        group: MultiThreadedEventLoopGroup.singleton,
        logger: logger
    )
}

/// A URL on 127.0.0.1 where nothing listens: a port bound, then closed.
func deadURL() async throws -> String {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress!.port!
    try await channel.close()
    return "http://127.0.0.1:\(port)"
}

/// A stand-in follower: it redirects writes to `leader` (counting them), serves snapshots from a warm copy
/// 2.5 s old, and answers 503 for its status.
func makeFollower(
    leader: @escaping @Sendable () -> String,
    redirects: NIOLockedValueBox<Int>
) -> some ApplicationProtocol {
    let router = Router()
    for path in ["/v1/drains", "/v1/reports", "/v1/failover"] {
        router.post(RouterPath(stringLiteral: path)) { request, _ in
            _ = try await request.body.collect(upTo: 1 << 16)
            redirects.withLockedValue { $0 += 1 }
            return Response(status: .temporaryRedirect, headers: [.location: leader() + path])
        }
    }
    router.get("/v1/snapshot") { _, _ in
        Response(
            status: .ok,
            headers: [.contentType: "application/json", .init("X-Zoneward-State-Age")!: "2.5"],
            body: .init(
                byteBuffer: ByteBuffer(
                    string: #"{"version": 7, "boot": "warm", "services": {}, "drainedZones": ["zb"]}"#
                )
            )
        )
    }
    router.get("/v1/status") { _, _ in
        Response(
            status: .serviceUnavailable,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: #"{"error": "no warm copy yet"}"#))
        )
    }
    return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
}

@Suite struct ControllerClientTests {
    /// Reads move on to the next controller when one is down, and stay with the one that answered.
    @Test func readsFailOverToTheNextURL() async throws {
        let dead = try await deadURL()
        try await makeLeader().makeApplication().test(.live) { leaderClient in
            let leader = "http://127.0.0.1:\(leaderClient.port!)"
            let client = try ControllerClient(urls: [dead, leader], token: "reader", timeout: .seconds(10))
            let status = try await client.status()
            #expect(status.url == leader)
            #expect(status.value.services.map(\.name) == ["orders"])
            #expect(status.stateAge == nil)
            let snapshot = try await client.snapshot()
            #expect(snapshot.url == leader)
            #expect(try await client.operations().isEmpty)

            let nobody = try ControllerClient(urls: [dead, dead + "/"], token: "reader")
            await #expect {
                _ = try await nobody.status()
            } throws: { error in
                guard let error = error as? ControllerClientError else { return false }
                return error.kind == .unreachable && error.url == "\(dead),\(dead)"
                    && error.message.contains("\(dead)/v1/status")
            }
        }
    }

    /// A write sent to a follower follows its 307 to the leader with the same body, and the next write
    /// goes to the leader at once. Reads stay with the follower, whose state age they report, until it
    /// answers 503.
    @Test func writesFollowTheRedirectToTheLeader() async throws {
        let redirects = NIOLockedValueBox(0)
        let leaderURL = NIOLockedValueBox("")
        let controller = try makeLeader()
        try await controller.makeApplication().test(.live) { leaderClient in
            leaderURL.withLockedValue { $0 = "http://127.0.0.1:\(leaderClient.port!)" }
            let leader = leaderURL.withLockedValue { $0 }
            let follower = makeFollower(leader: { leaderURL.withLockedValue { $0 } }, redirects: redirects)
            try await follower.test(.live) { followerClient in
                let followerURL = "http://127.0.0.1:\(followerClient.port!)"
                let client = try ControllerClient(urls: [followerURL, leader], token: "operator")
                #expect(client.leader == nil)

                let snapshot = try await client.snapshot()
                #expect(snapshot.url == followerURL)
                #expect(snapshot.stateAge == 2.5)
                #expect(snapshot.value.version == 7)

                let drain = try await client.drain(
                    DrainRequest(zone: "za", duration: "10m", reason: "kept through the redirect", actor: "t")
                )
                #expect(drain.zone == "za")
                #expect(drain.reason == "kept through the redirect")
                #expect(drain.actor == "t")
                #expect(redirects.withLockedValue { $0 } == 1)
                #expect(client.leader == leader)

                _ = try await client.drain(DrainRequest(zone: "zb", duration: "5m", reason: "again"))
                #expect(redirects.withLockedValue { $0 } == 1, "the second write went to the leader directly")
                #expect(try controller.store.activeDrains(at: Date()).map(\.zone).sorted() == ["za", "zb"])

                // The follower's 503 sends the read on to the leader.
                let status = try await client.status()
                #expect(status.url == leader)
            }
        }
    }

    /// A follower that names itself as the leader is not followed forever.
    @Test func redirectsStopAfterThreeHops() async throws {
        let redirects = NIOLockedValueBox(0)
        let selfURL = NIOLockedValueBox("")
        let follower = makeFollower(leader: { selfURL.withLockedValue { $0 } }, redirects: redirects)
        try await follower.test(.live) { followerClient in
            selfURL.withLockedValue { $0 = "http://127.0.0.1:\(followerClient.port!)" }
            let client = try ControllerClient(urls: [selfURL.withLockedValue { $0 }], token: "operator")
            // A drain, whose requests have the default 30 s timeout: a report's 5 s could run out on a busy
            // 2-core pool over four hops and end in `unreachable` instead.
            await #expect {
                try await client.drain(DrainRequest(zone: "za", duration: "1h", reason: "test"))
            } throws: { error in
                guard let error = error as? ControllerClientError else { return false }
                return error.kind == .invalidAnswer && error.status == 307 && error.message.contains("redirects")
            }
            #expect(redirects.withLockedValue { $0 } == 4)
        }
    }

    /// Refusals carry the URL, the status and the server's message.
    @Test func refusalsSurfaceTheServersMessage() async throws {
        try await makeLeader().makeApplication().test(.live) { leaderClient in
            let leader = "http://127.0.0.1:\(leaderClient.port!)"

            let stranger = try ControllerClient(urls: [leader], token: "wrong")
            await #expect {
                _ = try await stranger.status()
            } throws: { error in
                guard let error = error as? ControllerClientError else { return false }
                return error.kind == .refused && error.status == 401 && error.url == "\(leader)/v1/status"
                    && error.message == "missing or wrong bearer token"
                    && error.description == "controller \(leader)/v1/status answered 401: missing or wrong bearer token"
            }

            let reader = try ControllerClient(urls: [leader], token: "reader")
            await #expect {
                _ = try await reader.drain(DrainRequest(zone: "za", duration: "1m", reason: "no"))
            } throws: { error in
                guard let error = error as? ControllerClientError else { return false }
                return error.kind == .refused && error.status == 403 && error.url == "\(leader)/v1/drains"
                    && error.message.contains("may not operate")
            }

            // A guard's refusal (409) is an answer: the plan says why.
            let operatorClient = try ControllerClient(urls: [leader], token: "operator")
            let plan = try await operatorClient.failover(
                FailoverRequest(service: "orders", to: "ra", force: false, dryRun: true, actor: "t", reason: nil)
            )
            #expect(plan.refused)
            #expect(plan.operation == nil)
            #expect(plan.guards.contains { !$0.passed })

            // A conflict without a plan is an error with the server's message.
            let backup = try ControllerClient(urls: [leader], token: "backup")
            _ = try await backup.beginBackup(BackupBegin(id: "state-1", job: "state"))
            await #expect {
                _ = try await backup.beginBackup(BackupBegin(id: "state-2", job: "state"))
            } throws: { error in
                guard let error = error as? ControllerClientError else { return false }
                return error.kind == .refused && error.status == 409 && error.message.contains("already running")
            }
            await #expect {
                _ = try await operatorClient.failover(
                    FailoverRequest(service: "nosuch", to: "rb", force: false, dryRun: true, actor: "t", reason: nil)
                )
            } throws: { error in
                guard let error = error as? ControllerClientError else { return false }
                return error.status == 400 && error.message.hasPrefix("service:")
            }
        }
    }

    /// A backup run's whole life through the client, with a backup token that cannot fail anything over.
    @Test func aBackupRunThroughTheClient() async throws {
        let controller = try makeLeader()
        try await controller.makeApplication().test(.live) { leaderClient in
            let client = try ControllerClient(
                urls: ["http://127.0.0.1:\(leaderClient.port!)"],
                token: "backup"
            )
            let started = try await client.beginBackup(BackupBegin(id: "state-20261129", job: "state"))
            #expect(started.backup.state == .running)
            try await client.heartbeatBackup("state-20261129")
            let completed = try await client.completeBackup(
                "state-20261129",
                BackupCompletion(
                    plainBytes: 100,
                    storedBytes: 80,
                    sha256: String(repeating: "0f", count: 32),
                    keyId: "k1",
                    objects: #"["/backups/state/state-20261129.zwb"]"#,
                    manifest: #"{"id": "state-20261129"}"#
                )
            )
            #expect(completed.state == .completed)
            #expect(completed.objectPaths == ["/backups/state/state-20261129.zwb"])
            let catalog = try await client.backups(job: "state")
            #expect(catalog.value.map(\.id) == ["state-20261129"])
            #expect(try await client.backup("state-20261129").storedBytes == 80)
            #expect(try controller.store.backup("state-20261129")?.state == .completed)

            _ = try await client.beginBackup(BackupBegin(id: "state-2", job: "state"))
            let failed = try await client.failBackup("state-2", error: "disk full")
            #expect(failed.state == .failed)
            #expect(failed.error == "disk full")

            await #expect {
                _ = try await client.failover(
                    FailoverRequest(service: "orders", to: "rb", force: false, dryRun: true, actor: "t", reason: nil)
                )
            } throws: { error in
                (error as? ControllerClientError)?.status == 403
            }
        }
    }
}

@Suite struct ConflictTests {
    /// A 409 that is not a guard's plan (another operation runs) is an error with the server's message.
    @Test func aConflictWithoutAPlanIsAnError() async throws {
        let router = Router()
        router.post("/v1/failover") { request, _ in
            _ = try await request.body.collect(upTo: 1 << 16)
            return Response(
                status: .conflict,
                headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: #"{"error": "operation 3 of orders is running"}"#))
            )
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { server in
            let client = try ControllerClient(urls: ["http://127.0.0.1:\(server.port!)"], token: "t")
            await #expect {
                _ = try await client.failover(
                    FailoverRequest(service: "orders", to: "rb", force: false, dryRun: false, actor: "t", reason: nil)
                )
            } throws: { error in
                guard let error = error as? ControllerClientError else { return false }
                return error.kind == .refused && error.status == 409
                    && error.message == "operation 3 of orders is running"
            }
        }
    }
}
