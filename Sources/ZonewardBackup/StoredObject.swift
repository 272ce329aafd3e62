import Foundation

/// Where one stored backup object lives: a local file or an S3 object. Its manifest sits beside it with the
/// object's `.zwb` extension replaced by `.json` — only the final extension, whatever the folders are named.
public enum StoredObject: Sendable, Hashable, CustomStringConvertible {
    case file(path: String)
    case s3(bucket: String, key: String)

    static let objectExtension = ".zwb"
    static let manifestExtension = ".json"

    /// Reads the form the catalog records: `s3://bucket/key` or a local path.
    public init(recorded text: String) {
        let scheme = "s3://"
        if text.hasPrefix(scheme), let slash = text.dropFirst(scheme.count).firstIndex(of: "/") {
            let rest = text.dropFirst(scheme.count)
            self = .s3(bucket: String(rest[..<slash]), key: String(rest[rest.index(after: slash)...]))
        } else {
            self = .file(path: text)
        }
    }

    /// The form the catalog records.
    public var description: String {
        switch self {
        case .file(let path): path
        case .s3(let bucket, let key): "s3://\(bucket)/\(key)"
        }
    }

    /// The manifest stored beside this object.
    public var manifest: StoredObject {
        switch self {
        case .file(let path): .file(path: Self.manifestName(path))
        case .s3(let bucket, let key): .s3(bucket: bucket, key: Self.manifestName(key))
        }
    }

    static func manifestName(_ name: String) -> String {
        let base = name.hasSuffix(objectExtension) ? String(name.dropLast(objectExtension.count)) : name
        return base + manifestExtension
    }
}
