// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "zoneward",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "zoneward", targets: ["zoneward"]),
        .library(name: "ZonewardModel", targets: ["ZonewardModel"]),
        .library(name: "ZonePlanner", targets: ["ZonePlanner"]),
        .library(name: "ZonewardState", targets: ["ZonewardState"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.0.0"),
    ],
    targets: [
        .target(
            name: "ZonewardModel",
            dependencies: [.product(name: "Yams", package: "Yams")]
        ),
        .target(name: "ZonePlanner", dependencies: ["ZonewardModel"]),
        .target(
            name: "ZonewardState",
            dependencies: [
                "ZonewardModel",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .executableTarget(
            name: "zoneward",
            dependencies: [
                "ZonewardModel",
                "ZonePlanner",
                "ZonewardState",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "ZonewardModelTests", dependencies: ["ZonewardModel"]),
        .target(name: "ZonePlannerTesting", dependencies: ["ZonePlanner"]),
        .executableTarget(
            name: "PlannerBench",
            dependencies: ["ZonePlanner", "ZonePlannerTesting"],
            path: "bench/PlannerBench"
        ),
        .testTarget(name: "ZonePlannerTests", dependencies: ["ZonePlanner", "ZonePlannerTesting"]),
        .testTarget(
            name: "ZonewardStateTests",
            dependencies: ["ZonewardState", .product(name: "GRDB", package: "GRDB.swift")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
