import Foundation
import Testing

@testable import ZonewardBackup

/// The bounded pipeline of threads under the backup codecs: order, bounds, errors, early stops.
@Suite struct OrderedPipelineTests {
    /// Counts items between produced and consumed, and the most at once.
    final class InFlight: @unchecked Sendable {
        private let lock = NSLock()
        private var current = 0
        private(set) var most = 0

        func produced() {
            lock.withLock {
                current += 1
                most = max(most, current)
            }
        }

        func consumed() {
            lock.withLock { current -= 1 }
        }
    }

    @Test(arguments: [1, 2, 4])
    func resultsComeInOrderWithAtMostTheWindowInFlight(workers: Int) throws {
        let inFlight = InFlight()
        var seen: [Int] = []
        try OrderedPipeline<Int, Int>.run(
            workers: workers,
            window: 5,
            name: "test",
            produce: { emit in
                for value in 0..<300 {
                    inFlight.produced()
                    guard emit(value) else { return }
                }
            },
            makeWorker: {
                { _, value in
                    if value % 7 == 0 { Thread.sleep(forTimeInterval: 0.001) }
                    return value * 2
                }
            },
            consume: { index, doubled in
                #expect(doubled == index * 2)
                seen.append(doubled / 2)
                inFlight.consumed()
            }
        )
        #expect(seen == Array(0..<300))
        // One more than the window: the producer counts an item just before `emit` waits for room.
        #expect(inFlight.most <= 6)
    }

    struct Failure: Error, Equatable {
        var index: Int
    }

    @Test func theFirstFailingItemIsTheErrorWhateverTheSchedule() {
        for _ in 0..<20 {
            var consumed = 0
            #expect(throws: Failure(index: 10)) {
                try OrderedPipeline<Int, Int>.run(
                    workers: 4,
                    window: 16,
                    name: "test",
                    produce: { emit in
                        for value in 0..<100 { guard emit(value) else { return } }
                    },
                    makeWorker: {
                        { index, value in
                            // Later items fail first.
                            if index >= 10 {
                                Thread.sleep(forTimeInterval: index == 10 ? 0.005 : 0)
                                throw Failure(index: index)
                            }
                            return value
                        }
                    },
                    consume: { _, _ in consumed += 1 }
                )
            }
            #expect(consumed == 10)
        }
    }

    @Test func aProducerErrorComesAfterWhatItProduced() {
        var consumed: [Int] = []
        #expect(throws: Failure(index: -1)) {
            try OrderedPipeline<Int, Int>.run(
                workers: 2,
                window: 4,
                name: "test",
                produce: { emit in
                    for value in 0..<7 { _ = emit(value) }
                    throw Failure(index: -1)
                },
                makeWorker: { { _, value in value } },
                consume: { _, value in consumed.append(value) }
            )
        }
        #expect(consumed == Array(0..<7))
    }

    /// A consumer that fails (a full disk) stops the producer and the workers; every thread is joined.
    @Test func aConsumerErrorStopsEverything() {
        let produced = InFlight()
        #expect(throws: Failure(index: 3)) {
            try OrderedPipeline<Int, Int>.run(
                workers: 2,
                window: 4,
                name: "test",
                produce: { emit in
                    for value in 0..<1_000_000 {
                        produced.produced()
                        guard emit(value) else { return }
                    }
                },
                makeWorker: { { _, value in value } },
                consume: { index, _ in if index == 3 { throw Failure(index: 3) } }
            )
        }
        #expect(produced.most < 20)
    }
}
