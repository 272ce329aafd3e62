import Testing
import ZonewardAPI

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
