import Foundation

/// Extracting a directory backup's tar archive into a directory, refusing any entry that would land outside
/// it: absolute names, `..` components, and links whose target is absolute or climbs out with `..`.
public enum ArchiveExtraction {
    public struct Refused: Error, CustomStringConvertible {
        public var description: String
    }

    /// Checks every entry of `archive` (as `tar -tvf` lists it), then extracts it into `directory`, which must
    /// be absent or empty unless `force`. Nothing is extracted when one entry is refused.
    public static func extract(_ archive: String, into directory: String, force: Bool) throws {
        let fileManager = FileManager.default
        var isDirectory: ObjCBool = false
        if fileManager.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw Refused(description: "--to: \(directory) exists and is not a directory")
            }
            let contents = (try? fileManager.contentsOfDirectory(atPath: directory)) ?? []
            guard contents.isEmpty || force else {
                throw Refused(description: "--to: \(directory) is not empty; give --force to extract into it anyway")
            }
        }
        let names = try run(["tar", "-tf", archive]).split(separator: "\n").map(String.init)
        for name in names { try check(name, what: "entry") }
        // Long listing: links show as `name -> target` (symbolic) or `name link to target` (hard).
        for line in try run(["tar", "-tvf", archive]).split(separator: "\n") {
            guard let kind = line.first, kind == "l" || kind == "h" else { continue }
            let separator = kind == "l" ? " -> " : " link to "
            guard let range = line.range(of: separator) else { continue }
            let target = String(line[range.upperBound...])
            try check(target, what: kind == "l" ? "symbolic link target" : "hard link target")
        }
        try fileManager.createDirectory(atPath: directory, withIntermediateDirectories: true)
        _ = try run(["tar", "-xf", archive, "-C", directory, "--no-same-owner", "--no-overwrite-dir"])
    }

    /// Refuses a path that is absolute or has a `..` component.
    static func check(_ path: String, what: String) throws {
        if path.hasPrefix("/") {
            throw Refused(
                description:
                    "the archive's \(what) \"\(path.prefix(200))\" is absolute; nothing was extracted (--archive writes the tar file instead)"
            )
        }
        if path.split(separator: "/").contains("..") {
            throw Refused(
                description: "the archive's \(what) \"\(path.prefix(200))\" climbs out with ..; nothing was extracted "
                    + "(--archive writes the tar file instead)"
            )
        }
    }

    @discardableResult
    static func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Refused(
                description: "\(arguments.prefix(2).joined(separator: " ")) failed: "
                    + String(decoding: errorData.suffix(400), as: UTF8.self)
            )
        }
        return String(decoding: data, as: UTF8.self)
    }
}
