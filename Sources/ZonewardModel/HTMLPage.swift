import Foundation

/// The building blocks of the server-rendered status pages (the proxy admin listener's `/` and the
/// controller's `/`): escaping, the page frame with its inline style and self-refresh, tables, badges and an
/// SVG heat map. Plain HTML and SVG: no script, no external resource.
public enum HTMLPage {
    /// Escapes text for HTML content and attribute values (`&`, `<`, `>`, `"`, `'`).
    public static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    /// A whole page: `title` (text), `body` (HTML), reloading itself every `refreshSeconds`.
    public static func document(title: String, refreshSeconds: Int, body: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta http-equiv="refresh" content="\(max(1, refreshSeconds))">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(escape(title))</title>
        <style>\(style)</style>
        </head>
        <body>
        \(body)
        </body>
        </html>

        """
    }

    /// The style every page shares: readable on a laptop screen, tables and heat maps side by side.
    static let style = """

        body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24;
          margin: 0 auto; padding: 12px 20px 40px; max-width: 1240px; background: #fafbfc; }
        h1 { font-size: 20px; margin: 8px 0 4px; }
        h2 { font-size: 17px; margin: 26px 0 6px; padding-top: 10px; border-top: 1px solid #d0d7de; }
        h3 { font-size: 14px; margin: 14px 0 6px; color: #424a53; }
        p.meta { color: #57606a; margin: 2px 0 8px; }
        table { border-collapse: collapse; background: white; margin: 4px 0 8px; }
        th, td { border: 1px solid #d0d7de; padding: 3px 9px; text-align: left; vertical-align: top; }
        th { background: #f0f3f6; font-weight: 600; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; }
        tr.region th { background: #e6ecf2; text-align: left; }
        .badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; font-weight: 600; }
        .ok { background: #dafbe1; color: #116329; }
        .warn { background: #fff1c2; color: #7d4e00; }
        .bad { background: #ffe1e1; color: #a40e26; }
        .idle { background: #eaeef2; color: #424a53; }
        .maps { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
        .maps figure { margin: 0; }
        .maps .title { font-weight: 600; margin-bottom: 2px; }
        .maps figcaption { color: #57606a; font-size: 12px; max-width: 420px; }

        """

    /// A table: `headers` are text; each row's cells are HTML (escape text with `escape`). A cell whose
    /// HTML starts with `<td` or `<th` is used as is (for classes, spans); a row of one cell starting with `<tr`
    /// is a whole row (a group header).
    public static func table(_ headers: [String], _ rows: [[String]], id: String? = nil) -> String {
        var html = id.map { "<table id=\"\(escape($0))\">" } ?? "<table>"
        html += "<thead><tr>" + headers.map { "<th>\(escape($0))</th>" }.joined() + "</tr></thead>\n<tbody>\n"
        for row in rows {
            if row.count == 1, row[0].hasPrefix("<tr") {
                html += row[0] + "\n"
                continue
            }
            html += "<tr>" + row.map { $0.hasPrefix("<td") || $0.hasPrefix("<th") ? $0 : "<td>\($0)</td>" }.joined()
            html += "</tr>\n"
        }
        return html + "</tbody></table>\n"
    }

    /// A right-aligned numeric cell.
    public static func numberCell(_ text: String) -> String {
        "<td class=\"num\">\(escape(text))</td>"
    }

    /// How a badge looks.
    public enum Tone: String, Sendable {
        case ok, warn, bad, idle
    }

    /// A small coloured label.
    public static func badge(_ text: String, _ tone: Tone) -> String {
        "<span class=\"badge \(tone.rawValue)\">\(escape(text))</span>"
    }

    /// `value` with `places` decimals (`0.63`); `—` when not finite.
    public static func decimal(_ value: Double, places: Int = 2) -> String {
        guard value.isFinite else { return "—" }
        return String(format: "%.\(max(0, min(places, 9)))f", value)
    }

    /// A rate or a weight: whole numbers as such, others with three significant digits.
    public static func quantity(_ value: Double) -> String {
        guard value.isFinite else { return "—" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        if abs(value) >= 100, abs(value) < 1e15 { return String(Int64(value.rounded())) }
        return String(format: "%.3g", value)
    }

    /// A heat map of values in [0, 1]: one row per source, one column per destination, each cell coloured by
    /// its value with the value written in it (two decimals). A nil value is drawn grey with `—`.
    public struct HeatMap: Sendable {
        /// Names the cells: each cell is a `<g data-cell="ID SOURCE DESTINATION">`.
        public var id: String
        public var rows: [String]
        public var columns: [String]
        /// `values[row][column]`.
        public var values: [[Double?]]
        /// Hover text per cell (SVG `<title>`); default the row, column and value.
        public var tooltips: [[String]]?
        /// A row drawn with a bold label (the proxy's own zone).
        public var highlightRow: String?

        public init(
            id: String,
            rows: [String],
            columns: [String],
            values: [[Double?]],
            tooltips: [[String]]? = nil,
            highlightRow: String? = nil
        ) {
            self.id = id
            self.rows = rows
            self.columns = columns
            self.values = values
            self.tooltips = tooltips
            self.highlightRow = highlightRow
        }
    }

    /// The heat map as inline SVG.
    public static func svg(_ map: HeatMap) -> String {
        let cellWidth = 62.0
        let cellHeight = 30.0
        let longestRow = map.rows.map(\.count).max() ?? 0
        let longestColumn = map.columns.map(\.count).max() ?? 0
        let left = min(220, max(56, Double(longestRow) * 7.5 + 30))
        let top = min(90, max(40, Double(min(longestColumn, 14)) * 3.2 + 30))
        let width = left + cellWidth * Double(map.columns.count) + 8
        let height = top + cellHeight * Double(map.rows.count) + 8
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" role="img" width="\(Int(width))" height="\(Int(height))" \
            viewBox="0 0 \(Int(width)) \(Int(height))" font-family="system-ui, sans-serif" font-size="12">\n
            """
        svg += "<text x=\"4\" y=\"14\" fill=\"#57606a\" font-size=\"11\">from ↓ to →</text>\n"
        for (column, name) in map.columns.enumerated() {
            let x = left + cellWidth * (Double(column) + 0.5)
            svg += "<text x=\"\(format(x))\" y=\"\(format(top - 8))\" text-anchor=\"middle\">"
            svg += "\(escape(clipped(name, 14)))<title>\(escape(name))</title></text>\n"
        }
        for (row, source) in map.rows.enumerated() {
            let y = top + cellHeight * Double(row)
            let bold = source == map.highlightRow ? " font-weight=\"bold\"" : ""
            svg += "<text x=\"\(format(left - 8))\" y=\"\(format(y + cellHeight / 2 + 4))\" text-anchor=\"end\"\(bold)>"
            svg += "\(escape(clipped(source, 28)))<title>\(escape(source))</title></text>\n"
            for (column, destination) in map.columns.enumerated() {
                let x = left + cellWidth * Double(column)
                let value =
                    map.values.indices.contains(row) && map.values[row].indices.contains(column)
                    ? map.values[row][column].flatMap { $0.isFinite ? $0 : nil } : nil
                let label = value.map { decimal($0) } ?? "—"
                let tooltip =
                    map.tooltips.flatMap { tips in
                        tips.indices.contains(row) && tips[row].indices.contains(column) ? tips[row][column] : nil
                    } ?? "\(source) → \(destination): \(value.map { decimal($0, places: 4) } ?? "not measured")"
                let cell = "\(map.id) \(source) \(destination)"
                svg += "<g data-cell=\"\(escape(cell))\"><title>\(escape(tooltip))</title>"
                svg += "<rect x=\"\(format(x))\" y=\"\(format(y))\" width=\"\(format(cellWidth - 2))\" "
                svg += "height=\"\(format(cellHeight - 2))\" fill=\"\(value.map(color) ?? "#eaeef2")\"/>"
                svg += "<text x=\"\(format(x + cellWidth / 2 - 1))\" y=\"\(format(y + cellHeight / 2 + 3))\" "
                svg +=
                    "text-anchor=\"middle\" fill=\"\((value ?? 0) > 0.55 ? "white" : "#1b1f24")\">\(label)</text></g>\n"
            }
        }
        return svg + "</svg>\n"
    }

    /// White through blue: 0 is nearly white, 1 dark blue.
    static func color(_ value: Double) -> String {
        let t = max(0, min(1, value))
        let low = (247.0, 251.0, 255.0)
        let high = (8.0, 48.0, 107.0)
        func channel(_ a: Double, _ b: Double) -> Int { Int((a + (b - a) * t).rounded()) }
        let rgb = [channel(low.0, high.0), channel(low.1, high.1), channel(low.2, high.2)]
        return "#" + rgb.map { String(format: "%02x", $0) }.joined()
    }

    static func clipped(_ text: String, _ length: Int) -> String {
        text.count <= length ? text : String(text.prefix(length - 1)) + "…"
    }

    static func format(_ value: Double) -> String {
        value.isFinite ? String((value * 10).rounded() / 10) : "0"
    }
}
