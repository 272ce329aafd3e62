import Testing

@testable import ZonewardModel

@Suite struct HTMLPageTests {
    @Test func escapesMarkupAndQuotes() {
        #expect(
            HTMLPage.escape("<a href=\"x\" title='y'>&</a>")
                == "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        )
        #expect(HTMLPage.escape("zone-a · ü") == "zone-a · ü")
    }

    @Test func theDocumentRefreshesItselfAndEscapesItsTitle() {
        let page = HTMLPage.document(title: "<x>", refreshSeconds: 0, body: "<p>b</p>")
        #expect(page.contains("<meta http-equiv=\"refresh\" content=\"1\">"))
        #expect(page.contains("<title>&lt;x&gt;</title>"))
        #expect(page.contains("<p>b</p>"))
    }

    @Test func theHeatMapWritesEachValueInItsCellAndGreysWhatIsMissing() {
        let svg = HTMLPage.svg(
            .init(id: "plan", rows: ["a", "<b>"], columns: ["a", "<b>"], values: [[0.125, 0.875], [nil, .nan]])
        )
        #expect(svg.contains("<g data-cell=\"plan a a\"><title>a → a: 0.1250</title>"))
        #expect(svg.contains("fill=\"#1b1f24\">0.12</text>"))
        #expect(svg.contains("fill=\"white\">0.88</text>"))
        #expect(svg.contains("<g data-cell=\"plan &lt;b&gt; a\"><title>&lt;b&gt; → a: not measured</title>"))
        #expect(svg.components(separatedBy: ">—</text>").count == 3)
        #expect(!svg.contains("<b>"))
    }

    @Test func colorsRunFromWhiteToDarkBlue() {
        #expect(HTMLPage.color(0) == "#f7fbff")
        #expect(HTMLPage.color(1) == "#08306b")
        #expect(HTMLPage.color(7) == "#08306b")
    }

    @Test func numbers() {
        #expect(HTMLPage.decimal(0.625) == "0.62")
        #expect(HTMLPage.decimal(.infinity) == "—")
        #expect(HTMLPage.quantity(6) == "6")
        #expect(HTMLPage.quantity(1234.6) == "1235")
        #expect(HTMLPage.quantity(0.12345) == "0.123")
        #expect(HTMLPage.quantity(1e300) == "1e+300")
    }
}
