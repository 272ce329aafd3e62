import NIOCore
import NIOEmbedded
import Testing

@testable import ZonewardProxy

@Suite struct StreamSilenceWatchTests {
    final class Stream: SilenceWatched {
        var silenceSlot = -1
        var checks: [NIODeadline] = []
        var onCheck: (() -> Void)?
        func checkSilence(now: NIODeadline) {
            checks.append(now)
            onCheck?()
        }
    }

    @Test func streamsAreCheckedEveryPeriodAndTheTickerStopsWhenNoneIsLeft() {
        let loop = EmbeddedEventLoop()
        let watch = StreamSilenceWatch(eventLoop: loop, period: .milliseconds(100))
        let a = Stream()
        let b = Stream()
        watch.add(a)
        watch.add(b)
        watch.add(a)
        #expect(watch.count == 2)
        loop.advanceTime(by: .milliseconds(250))
        #expect(a.checks.count == 2)
        #expect(b.checks.count == 2)
        watch.remove(a)
        #expect(a.silenceSlot == -1)
        #expect(b.silenceSlot == 0)
        loop.advanceTime(by: .milliseconds(100))
        #expect(a.checks.count == 2)
        #expect(b.checks.count == 3)
        watch.remove(b)
        watch.remove(b)
        loop.advanceTime(by: .milliseconds(100))
        #expect(!watch.isTicking)
        watch.add(a)
        #expect(watch.isTicking)
        loop.advanceTime(by: .milliseconds(100))
        #expect(a.checks.count == 3)
    }

    /// A stream that ends while checked removes itself; every other stream is still checked once.
    @Test func aStreamRemovingItselfDuringATickSkipsNoOther() {
        let loop = EmbeddedEventLoop()
        let watch = StreamSilenceWatch(eventLoop: loop, period: .milliseconds(100))
        let streams = (0..<5).map { _ in Stream() }
        for stream in streams { watch.add(stream) }
        for index in [0, 2, 4] {
            let stream = streams[index]
            stream.onCheck = { [unowned watch, unowned stream] in watch.remove(stream) }
        }
        loop.advanceTime(by: .milliseconds(100))
        #expect(streams.allSatisfy { $0.checks.count == 1 })
        #expect(watch.count == 2)
        #expect(Set([streams[1].silenceSlot, streams[3].silenceSlot]) == [0, 1])
    }
}
