import Foundation

/// A zone whose capacity is set to 0 for every service until it expires or is undrained (the answer of
/// `POST /v1/drains`).
public struct ZoneDrain: Codable, Sendable, Equatable {
    public var zone: String
    public var reason: String
    public var actor: String
    public var createdAt: Date
    public var expiresAt: Date

    public init(zone: String, reason: String, actor: String, createdAt: Date, expiresAt: Date) {
        self.zone = zone
        self.reason = reason
        self.actor = actor
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }

    public func isActive(at now: Date) -> Bool { expiresAt > now }
}
