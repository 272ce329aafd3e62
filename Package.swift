// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "zoneward",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "zoneward", targets: ["zoneward"]),
        .library(name: "ZonewardModel", targets: ["ZonewardModel"]),
        .library(name: "ZonePlanner", targets: ["ZonePlanner"]),
        .library(name: "ZonewardAPI", targets: ["ZonewardAPI"]),
        .library(name: "ZonewardState", targets: ["ZonewardState"]),
        .library(name: "ZonewardDiscovery", targets: ["ZonewardDiscovery"]),
        .library(name: "ZonewardProxy", targets: ["ZonewardProxy"]),
        .library(name: "ZonewardFailover", targets: ["ZonewardFailover"]),
        .library(name: "ZonewardBackup", targets: ["ZonewardBackup"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.30.0"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0"),
    ],
    targets: [
        .target(
            name: "ZonewardModel",
            dependencies: [.product(name: "Yams", package: "Yams")]
        ),
        .target(name: "ZonePlanner", dependencies: ["ZonewardModel"]),
        .target(
            name: "ZonewardAPI",
            dependencies: [
                "ZonewardModel",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(
            name: "ZonewardState",
            dependencies: [
                "ZonewardAPI",
                "ZonewardModel",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .target(
            name: "ZonewardDiscovery",
            dependencies: [
                "ZonewardModel",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .target(
            name: "ZonewardProxy",
            dependencies: [
                "ZonewardAPI",
                "ZonewardModel",
                "ZonewardDiscovery",
                "ZonePlanner",
                "ZonewardState",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: [
                // The data plane's classes are confined to their event loop. Release builds skip the runtime
                // exclusivity checks on their stored properties (swift_beginAccess and the access set:
                // measured by bench/callgrind-proxy.sh at about 2,400 of 34,800 instructions per proxied request);
                // debug builds, which every test runs, keep them.
                .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))
            ]
        ),
        .target(
            name: "ZonewardFailover",
            dependencies: [
                "ZonewardAPI",
                "ZonewardModel",
                "ZonewardState",
                "ZonewardDiscovery",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .target(
            name: "ZonewardBackup",
            dependencies: [
                "CZlib",
                "CZstd",
                "ZonewardAPI",
                "ZonewardModel",
                "ZonewardState",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "zoneward",
            dependencies: [
                "ZonewardAPI",
                "ZonewardModel",
                "ZonePlanner",
                "ZonewardState",
                "ZonewardProxy",
                "ZonewardFailover",
                "ZonewardBackup",
                "ZonewardDiscovery",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "ZonewardModelTests", dependencies: ["ZonewardModel"]),
        .testTarget(
            name: "ZonewardDiscoveryTests",
            dependencies: ["ZonewardDiscovery", "ZonewardModel"],
            resources: [.copy("Fixtures")]
        ),
        .target(name: "ZonePlannerTesting", dependencies: ["ZonePlanner"]),
        .executableTarget(
            name: "PlannerBench",
            dependencies: ["ZonePlanner", "ZonePlannerTesting"],
            path: "bench/PlannerBench"
        ),
        .testTarget(name: "ZonePlannerTests", dependencies: ["ZonePlanner", "ZonePlannerTesting"]),
        .testTarget(
            name: "ZonewardProxyTests",
            dependencies: [
                "ZonePlannerTesting",
                "ZonewardAPI",
                "ZonewardProxy",
                "ZonewardState",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "ZonewardFailoverTests",
            dependencies: [
                "ZonewardAPI", "ZonewardFailover", "ZonewardState", "ZonewardModel", "ZonewardDiscovery",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
        .testTarget(
            name: "ZonewardBackupTests",
            dependencies: [
                "ZonewardAPI", "ZonewardBackup", "ZonewardState", "ZonewardModel",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "ZonewardStateTests",
            dependencies: ["ZonewardAPI", "ZonewardState", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .testTarget(
            name: "ZonewardAPITests",
            dependencies: [
                "ZonewardAPI", "ZonewardFailover", "ZonewardState", "ZonewardModel",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
