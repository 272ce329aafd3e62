import NIOCore
import NIOHTTP1
import Testing

@testable import ZonewardAPI

@Suite struct ControllerClientURLTests {
    @Test func theLongPollNamesTheBootOfItsVersion() {
        #expect(
            ControllerClient.snapshotPath(after: 0, boot: nil, wait: .seconds(30)) == "/v1/snapshot?after=0&wait=30s"
        )
        #expect(
            ControllerClient.snapshotPath(after: 42, boot: "1b2c-3d", wait: .seconds(30))
                == "/v1/snapshot?after=42&boot=1b2c-3d&wait=30s"
        )
        #expect(ControllerClient.snapshotPath(after: 0, boot: nil, wait: .zero) == "/v1/snapshot?after=0")
        #expect(
            ControllerClient.snapshotPath(after: 1, boot: nil, wait: .milliseconds(1500))
                == "/v1/snapshot?after=1&wait=1500ms"
        )
    }

    @Test func aCommaSeparatedListGivesEveryController() throws {
        #expect(
            try ControllerClient.parse("http://a:9900/, https://b:9900 ,http://127.0.0.1:1")
                == ["http://a:9900", "https://b:9900", "http://127.0.0.1:1"]
        )
        for bad in ["", ",", "a:9900", "ftp://a", "http://a:1,", "http://", "http://a/?x=1"] {
            #expect(throws: ControllerClientError.self, "\(bad)") { try ControllerClient.parse(bad) }
        }
    }
}

@Suite struct RedirectTests {
    func answer(location: String?, from url: String = "http://a:9900/v1/drains") -> ControllerClient.Answer {
        var headers = HTTPHeaders()
        if let location { headers.add(name: "Location", value: location) }
        return ControllerClient.Answer(
            status: 307,
            headers: headers,
            body: ByteBuffer(),
            url: url,
            base: "http://a:9900"
        )
    }

    /// The leader's base URL is the Location without the request's path, whether absolute or relative.
    @Test func theLeaderIsTheLocationWithoutThePath() throws {
        let absolute = try ControllerClient.redirect(answer(location: "http://b:9900/v1/drains"), path: "/v1/drains")
        #expect(absolute.base == "http://b:9900")
        #expect(absolute.url == "http://b:9900/v1/drains")
        let prefixed = try ControllerClient.redirect(
            answer(location: "https://c/api/v1/backups/x/fail"),
            path: "/v1/backups/x/fail"
        )
        #expect(prefixed.base == "https://c/api")
        let relative = try ControllerClient.redirect(answer(location: "//d:1/v1/drains"), path: "/v1/drains")
        #expect(relative.url == "http://d:1/v1/drains")
        #expect(relative.base == "http://d:1")
        for bad in [nil, "ftp://e/v1/drains", "http://"] {
            #expect(throws: ControllerClientError.self, "\(bad ?? "none")") {
                try ControllerClient.redirect(answer(location: bad), path: "/v1/drains")
            }
        }
    }
}
