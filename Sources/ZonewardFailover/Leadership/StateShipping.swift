import Foundation
import Logging
import Synchronization
import ZonewardState

/// Ships the leader's state database after each committed change and lets API writes wait until a copy
/// that holds them is durable.
///
/// `durable()` registers a request and waits; the shipping loop takes every request registered before a
/// ship starts as answered by that ship (its copy is made after their commits). At most one ship runs at a
/// time; requests arriving meanwhile are answered by the next.
actor StateShipping {
    private var requested = 0
    private var shipped = 0
    private var waiters: [(generation: Int, continuation: CheckedContinuation<Void, any Error>)] = []
    private var wake: CheckedContinuation<Void, Never>?
    private var closedError: (any Error)?

    /// Returns once a copy holding every commit made before the call is durable; throws when the ship
    /// failed or this replica stopped leading.
    func durable() async throws {
        if let closedError { throw closedError }
        requested += 1
        let generation = requested
        wake?.resume()
        wake = nil
        try await withCheckedThrowingContinuation { continuation in
            waiters.append((generation, continuation))
        }
    }

    /// The generation a ship starting now answers, and whether anyone waits for it.
    func begin() -> (generation: Int, waited: Bool) {
        (requested, requested > shipped)
    }

    /// A ship of `generation` ended.
    func end(_ generation: Int, error: (any Error)?) {
        if error == nil { shipped = max(shipped, generation) }
        var pending: [(generation: Int, continuation: CheckedContinuation<Void, any Error>)] = []
        for waiter in waiters {
            if waiter.generation <= generation {
                if let error { waiter.continuation.resume(throwing: error) } else { waiter.continuation.resume() }
            } else {
                pending.append(waiter)
            }
        }
        waiters = pending
    }

    /// Waits until a request arrives or `timeout` passes.
    func waitForRequest(timeout: Duration) async {
        guard requested <= shipped else { return }
        let sleeper = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.poke()
        }
        await withCheckedContinuation { continuation in
            wake = continuation
        }
        sleeper.cancel()
    }

    private func poke() {
        wake?.resume()
        wake = nil
    }

    /// Fails every waiter and every later request with `error` (this replica no longer leads), or reopens
    /// with nil.
    func close(_ error: (any Error)?) {
        closedError = error
        if let error {
            for waiter in waiters { waiter.continuation.resume(throwing: error) }
            waiters = []
            shipped = requested
        }
        poke()
    }
}

/// Numbers the copies a leader ships in its term: 1, 2, 3, …
final class ShipSequence: Sendable {
    private let value = Mutex<Int64>(0)

    func next() -> Int64 {
        value.withLock { value in
            value += 1
            return value
        }
    }
}
