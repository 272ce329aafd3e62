// swift-tools-version:6.0
import PackageDescription

// The libFuzzer targets over the HTTP/1.1 framer (head parser, chunked scanner, response framer) and over
// the HTTP/2 listener (NIOHTTP2 as the proxy configures it, with the proxy's header relaying).
//
// A package of its own so the sanitized build compiles only those files — symlinked from
// Sources/ZonewardProxy/HTTP and HTTP2, so the fuzzers always run the code the proxy runs — and NIO, not
// the whole proxy with its TLS, SQLite and metrics dependencies. Built and run by fuzz/run.sh.
let package = Package(
    name: "zoneward-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
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
        ),
        .executableTarget(
            name: "H2FramingFuzz",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ],
            path: "H2FramingFuzz"
        ),
    ],
    swiftLanguageModes: [.v6]
)
