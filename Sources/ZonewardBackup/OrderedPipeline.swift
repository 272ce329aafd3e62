import Foundation

/// A bounded pipeline of threads: one thread produces items in order, `workers` threads transform them in
/// any order, and the calling thread consumes the results in the order produced. At most `window` items are
/// in flight between producing and consuming (queued, being transformed, or done and waiting for their
/// turn), so memory stays bounded whatever the input's size; each stage overlaps the others.
///
/// A transform's error is the result of its item: the consumer meets it in order, so the error reported is
/// the one of the first bad item, however the workers were scheduled. Nothing runs on the Swift concurrency
/// pool; every thread is joined before `run` returns or throws.
final class OrderedPipeline<Input: Sendable, Output: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var queued: [(index: Int, input: Input)] = []
    private var results: [Int: Result<Output, any Error>] = [:]
    private var produced = 0
    private var consumed = 0
    private var producerDone = false
    private var producerFailure: (any Error)?
    private var stopped = false
    private var running = 0
    private let window: Int

    private init(window: Int) {
        self.window = max(1, window)
    }

    /// Runs the pipeline. `produce` gets an `emit` function that waits while the window is full and returns
    /// false once the pipeline stopped (the producer should then return); `makeWorker` is called on each
    /// worker thread for its transform (so per-thread state, such as a compression context, is never shared).
    static func run(
        workers: Int,
        window: Int,
        name: String,
        produce: @escaping @Sendable (_ emit: (Input) -> Bool) throws -> Void,
        makeWorker: @escaping @Sendable () throws -> (Int, Input) throws -> Output,
        consume: (Int, Output) throws -> Void
    ) throws {
        let pipeline = OrderedPipeline(window: window)
        pipeline.start(name: "\(name)-read") {
            do {
                try produce { pipeline.emit($0) }
                pipeline.finishProducing(nil)
            } catch {
                pipeline.finishProducing(error)
            }
        }
        for number in 0..<max(1, workers) {
            pipeline.start(name: "\(name)-work-\(number)") {
                let transform: (Int, Input) throws -> Output
                do {
                    transform = try makeWorker()
                } catch {
                    pipeline.stop()
                    pipeline.failWorker(error)
                    return
                }
                while let (index, input) = pipeline.nextInput() {
                    pipeline.deliver(index, Result { try transform(index, input) })
                }
            }
        }
        defer { pipeline.stopAndJoin() }
        while let (index, result) = try pipeline.nextResult() {
            do {
                try consume(index, try result.get())
            } catch {
                pipeline.stop()
                throw error
            }
            pipeline.consumedOne()
        }
    }

    private func start(name: String, _ body: @escaping @Sendable () -> Void) {
        condition.lock()
        running += 1
        condition.unlock()
        let thread = Thread { [self] in
            body()
            condition.lock()
            running -= 1
            condition.broadcast()
            condition.unlock()
        }
        thread.name = name
        thread.start()
    }

    private func emit(_ input: Input) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while produced - consumed >= window && !stopped { condition.wait() }
        guard !stopped else { return false }
        queued.append((produced, input))
        produced += 1
        condition.broadcast()
        return true
    }

    private func finishProducing(_ error: (any Error)?) {
        condition.lock()
        producerDone = true
        producerFailure = error
        condition.broadcast()
        condition.unlock()
    }

    private var workerFailure: (any Error)?

    private func failWorker(_ error: any Error) {
        condition.lock()
        if workerFailure == nil { workerFailure = error }
        condition.broadcast()
        condition.unlock()
    }

    private func nextInput() -> (Int, Input)? {
        condition.lock()
        defer { condition.unlock() }
        while queued.isEmpty && !producerDone && !stopped { condition.wait() }
        guard !stopped, !queued.isEmpty else { return nil }
        // At most `window` items: removing the first is cheap, and a taken item's input is not kept.
        let item = queued.removeFirst()
        return item
    }

    private func deliver(_ index: Int, _ result: Result<Output, any Error>) {
        condition.lock()
        results[index] = result
        condition.broadcast()
        condition.unlock()
    }

    /// The next result in order; nil when everything produced was consumed; throws the producer's error
    /// after the items it produced before failing, or a worker's that could not start.
    private func nextResult() throws -> (Int, Result<Output, any Error>)? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let workerFailure { throw workerFailure }
            if let result = results.removeValue(forKey: consumed) { return (consumed, result) }
            if producerDone && consumed == produced {
                if let producerFailure { throw producerFailure }
                return nil
            }
            condition.wait()
        }
    }

    private func consumedOne() {
        condition.lock()
        consumed += 1
        condition.broadcast()
        condition.unlock()
    }

    private func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func stopAndJoin() {
        condition.lock()
        stopped = true
        condition.broadcast()
        while running > 0 { condition.wait() }
        queued.removeAll()
        results.removeAll()
        condition.unlock()
    }
}
