// swift-tools-version:6.0
import PackageDescription

// The libFuzzer target over the HTTP/1.1 framer (head parser, chunked scanner, response framer).
//
// A package of its own so the sanitized build compiles only the framer's files — symlinked from
// Sources/ZonewardProxy/HTTP, so the fuzzer always runs the code the proxy runs — and NIOCore, not the
// whole proxy with its TLS, SQLite and metrics dependencies. Built and run by fuzz/run.sh.
let package = Package(
    name: "zoneward-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0")
    ],
    targets: [
        .executableTarget(
            name: "HTTPFramingFuzz",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                // llhttp, as the upstream's parser in the smuggling check.
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            path: "HTTPFramingFuzz"
        )
    ],
    swiftLanguageModes: [.v6]
)
