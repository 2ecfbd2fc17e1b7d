import Synchronization
import Testing
@testable import Multiprocessing

/// A sink that records deliveries and can stop accepting, for the scheduler tests.
private final class RecordingSink: ResultSink {
    let accepting = Atomic<Bool>(true)
    var isAcceptingResults: Bool { accepting.load(ordering: .relaxed) }
    func deliver(_ run: ResultRun) {}
}

private func chunk(
    _ name: String = "job", count: Int, payloadSize: Int = 4, sink: any ResultSink = RecordingSink(), firstIndex: Int = 0,
    timeout: Duration? = nil
) -> JobChunk {
    var builder = ChunkBuilder(codec: .binary, maximumFrameSize: 1 << 20)
    for index in 0..<count {
        try! builder.append([UInt8](repeating: UInt8(truncatingIfNeeded: index), count: payloadSize))
    }
    return builder.build(sink: sink, jobName: name, firstIndex: firstIndex, firstJobID: 1, options: ResolvedJobOptions(timeout: timeout))
}

private func enqueue(_ chunk: JobChunk, into state: inout SchedulerState) {
    guard case .enqueued = state.enqueue(ChunkSlice(chunk: chunk, positions: 0..<chunk.count)) else {
        Issue.record("could not enqueue")
        return
    }
}

@Suite("Scheduler state, without processes")
struct SchedulerTests {
    @Test("a batch takes as many jobs as the limit allows, splitting a chunk")
    func batchRespectsJobLimit() {
        var state = SchedulerState(maximumQueuedJobs: 1000, maximumQueuedBytes: 1 << 30)
        enqueue(chunk(count: 100), into: &state)
        let batch = state.takeBatch(maximumBytes: 1 << 20) { _, _ in 30 }.batch
        #expect(batch.map(\.positions) == [0..<30])
        #expect(state.queuedJobs == 70)
        let next = state.takeBatch(maximumBytes: 1 << 20) { _, _ in 1000 }.batch
        #expect(next.map(\.positions) == [30..<100])
        #expect(state.queue.isEmpty)
    }

    @Test("a batch spans chunks up to its limit")
    func batchSpansChunks() {
        var state = SchedulerState(maximumQueuedJobs: 1000, maximumQueuedBytes: 1 << 30)
        enqueue(chunk("a", count: 5), into: &state)
        enqueue(chunk("b", count: 5), into: &state)
        let batch = state.takeBatch(maximumBytes: 1 << 20) { _, _ in 8 }.batch
        #expect(batch.map(\.chunk.jobName) == ["a", "b"])
        #expect(batch.map(\.count) == [5, 3])
    }

    @Test("the byte limit caps a batch, but one job always goes")
    func batchRespectsByteLimit() {
        var state = SchedulerState(maximumQueuedJobs: 1000, maximumQueuedBytes: 1 << 30)
        enqueue(chunk(count: 10, payloadSize: 1000), into: &state)
        let capped = state.takeBatch(maximumBytes: 3000) { _, _ in 10 }.batch
        #expect(capped.reduce(0) { $0 + $1.count } <= 3)
        #expect(capped.reduce(0) { $0 + $1.byteCount } <= 3000)
        let single = state.takeBatch(maximumBytes: 10) { _, _ in 10 }.batch
        #expect(single.reduce(0) { $0 + $1.count } == 1)
    }

    @Test("jobs of a call that stopped accepting results are dropped, not sent")
    func cancelledJobsAreDropped() {
        var state = SchedulerState(maximumQueuedJobs: 1000, maximumQueuedBytes: 1 << 30)
        let cancelled = RecordingSink()
        enqueue(chunk("gone", count: 10, sink: cancelled), into: &state)
        enqueue(chunk("kept", count: 3), into: &state)
        cancelled.accepting.store(false, ordering: .relaxed)
        let batch = state.takeBatch(maximumBytes: 1 << 20) { _, _ in 100 }.batch
        #expect(batch.map(\.chunk.jobName) == ["kept"])
        #expect(state.queuedJobs == 0)
        #expect(state.queuedBytes == 0)
    }

    @Test("suspects and jobs with a timeout travel in batches of their own kind")
    func exactReportingBatchesAreSeparate() {
        var state = SchedulerState(maximumQueuedJobs: 1000, maximumQueuedBytes: 1 << 30)
        let shared = chunk(count: 6)
        enqueue(chunk("before", count: 2), into: &state)
        _ = state.enqueue(ChunkSlice(chunk: shared, positions: 2..<4, isSuspect: true))
        enqueue(chunk("timed", count: 2, timeout: .seconds(1)), into: &state)
        _ = state.enqueue(ChunkSlice(chunk: shared, positions: 4..<6))
        let first = state.takeBatch(maximumBytes: 1 << 20) { _, _ in 100 }.batch
        #expect(first.map(\.chunk.jobName) == ["before"])
        let exact = state.takeBatch(maximumBytes: 1 << 20) { _, _ in 100 }.batch
        #expect(exact.map(\.positions) == [2..<4, 0..<2])
        #expect(exact.allSatisfy { $0.needsEachResult })
        let rest = state.takeBatch(maximumBytes: 1 << 20) { _, _ in 100 }.batch
        #expect(rest.map(\.positions) == [4..<6])
        #expect(rest.allSatisfy { !$0.needsEachResult })
    }

    @Test("work rescued from a dead worker goes back to the front of the queue")
    func requeueGoesFirst() {
        var state = SchedulerState(maximumQueuedJobs: 1000, maximumQueuedBytes: 1 << 30)
        enqueue(chunk("later", count: 4), into: &state)
        let rescued = chunk("rescued", count: 2)
        state.requeueAtFront([ChunkSlice(chunk: rescued, positions: 0..<2)])
        #expect(state.queuedJobs == 6)
        let batch = state.takeBatch(maximumBytes: 1 << 20) { _, _ in 100 }.batch
        #expect(batch.map(\.chunk.jobName) == ["rescued", "later"])
    }

    @Test("a full queue makes producers wait; a stopped pool refuses them")
    func backpressureAndRefusal() {
        var state = SchedulerState(maximumQueuedJobs: 10, maximumQueuedBytes: 1 << 30)
        enqueue(chunk(count: 10), into: &state)
        guard case .mustWait = state.enqueue(ChunkSlice(chunk: chunk(count: 1), positions: 0..<1)) else {
            Issue.record("a full queue accepted more work")
            return
        }
        _ = state.takeBatch(maximumBytes: 1 << 20) { _, _ in 5 }.batch
        guard case .enqueued = state.enqueue(ChunkSlice(chunk: chunk(count: 1), positions: 0..<1)) else {
            Issue.record("room was made but the work was not taken")
            return
        }
        let mustStop = state.poolReleased()
        #expect(mustStop, "a running pool released without shutdown must be stopped")
        guard case .refused(let error) = state.enqueue(ChunkSlice(chunk: chunk(count: 1), positions: 0..<1)) else {
            Issue.record("a cancelled pool accepted work")
            return
        }
        #expect(error.code == .poolShutDown)
    }

    @Test("the ordered sink assembles out-of-order runs into input order")
    func orderedSinkReorders() async throws {
        let sink = OrderedSink<Int> { run in
            .success(run.outcomes.indices.map { run.firstIndex + $0 })
        }
        // Runs of 2 inputs starting at these indices, delivered out of order.
        for start in [6, 2, 0, 8, 4] {
            sink.deliver(ResultRun(firstIndex: start, firstJobID: 1, jobName: "j", outcomes: Array(repeating: .failed(ProcessPoolError(.jobThrew, "unused")), count: 2)))
        }
        sink.finishSubmitting(total: 10)
        #expect(try await sink.results() == Array(0..<10))
    }

    @Test("the ordered sink fails the call on the first failing run")
    func orderedSinkFails() async throws {
        let sink = OrderedSink<Int> { run in
            run.firstIndex == 4 ? .failure(ProcessPoolError(.jobThrew, "run at 4")) : .success(Array(repeating: 0, count: run.outcomes.count))
        }
        sink.deliver(ResultRun(firstIndex: 0, firstJobID: 1, jobName: "j", outcomes: Array(repeating: .failed(ProcessPoolError(.jobThrew, "x")), count: 4)))
        #expect(sink.isAcceptingResults)
        sink.deliver(ResultRun(firstIndex: 4, firstJobID: 5, jobName: "j", outcomes: [.failed(ProcessPoolError(.jobThrew, "x"))]))
        #expect(!sink.isAcceptingResults)
        sink.finishSubmitting(total: 10)
        let error = try await #require(throws: ProcessPoolError.self) { try await sink.results() }
        #expect(error.message == "run at 4")
    }

    @Test("an unordered call's buffer stays bounded when its consumer never quite catches up")
    func unorderedBufferIsCompacted() async throws {
        let sink = UnorderedSink<Int>()
        var next = 0
        var largest = 0
        for round in 0..<5_000 {
            // Ten results arrive, the consumer takes nine: the buffer is never empty.
            var outcomes: [[UInt8]] = []
            for offset in 0..<10 { outcomes.append(try BinaryPayloadEncoder().encode(round * 10 + offset)) }
            sink.noteSubmitted(10)
            outcomes.withPayloads { sink.deliver(ResultRun(firstIndex: round * 10, firstJobID: 1, jobName: "j", outcomes: $0)) }
            for _ in 0..<9 {
                let element = try #require(try await sink.next())
                #expect(element.output == next)
                next += 1
            }
            largest = max(largest, sink.storedCount)
        }
        // Up to 5,000 results are waiting; the array may hold as many again of those already
        // taken before it drops them, but not all 45,000.
        #expect(largest <= 2 * 5_000 + 1_024 + 10)
    }

    @Test("work queued while the loop said it would look is not lost when it stops saying so")
    func saturationFlagDoesNotLoseWork() {
        var state = SchedulerState(maximumQueuedJobs: 100, maximumQueuedBytes: 1 << 20)
        let first = state.loopSaturated(true)
        #expect(!first)
        // Every worker busy: queuing needs no wake-up.
        guard case .enqueued(let wake) = state.enqueue(ChunkSlice(chunk: chunk(count: 1), positions: 0..<1)) else {
            Issue.record("the job was not queued")
            return
        }
        #expect(!wake)
        // The loop had taken from the queue before that job came, and now finds a worker idle:
        // it must be told to look again rather than sleep.
        let missed = state.loopSaturated(false)
        let missedAgain = state.loopSaturated(false)
        #expect(missed)
        #expect(!missedAgain, "once told, no second wake-up")
        _ = state.takeBatch(maximumBytes: 1 << 20) { _, _ in 10 }
        let busyAgain = state.loopSaturated(true)
        let idleWithEmptyQueue = state.loopSaturated(false)
        #expect(!busyAgain)
        #expect(!idleWithEmptyQueue, "nothing queued, nothing missed")
    }

    @Test("shutdown drains, refuses new work, and its caller is released when the pool finishes")
    func shutdownThenFinish() async {
        let state = Mutex(SchedulerState(maximumQueuedJobs: 100, maximumQueuedBytes: 1 << 20))
        state.withLock { enqueue(chunk(count: 3), into: &$0) }
        async let stopped: Void = withCheckedContinuation { continuation in
            switch state.withLock({ $0.shutdown(cancellingPendingJobs: false, continuation) }) {
            case .resumeNow: continuation.resume()
            case .wakeLoop: break
            }
        }
        // The shutdown's caller is kept until the pool finishes; then the queued jobs are handed
        // back to fail and the caller is released.
        var lifecycle = state.withLock { $0.lifecycle }
        while lifecycle == .running {
            await Task.yield()
            lifecycle = state.withLock { $0.lifecycle }
        }
        #expect(lifecycle == .draining)
        let refused: Bool
        if case .refused = state.withLock({ $0.enqueue(ChunkSlice(chunk: chunk(count: 1), positions: 0..<1)) }) { refused = true } else { refused = false }
        #expect(refused, "a draining pool takes no new work")
        let release = state.withLock { $0.finish() }
        #expect(release.queued.map(\.count) == [3])
        #expect(release.shutdownWaiters.count == 1)
        for waiter in release.shutdownWaiters { waiter.resume() }
        await stopped
        #expect(state.withLock { $0.lifecycle } == .stopped)
        // A later shutdown returns at once.
        await withCheckedContinuation { continuation in
            switch state.withLock({ $0.shutdown(cancellingPendingJobs: true, continuation) }) {
            case .resumeNow: continuation.resume()
            case .wakeLoop: Issue.record("a stopped pool made a shutdown wait")
            }
        }
    }

    @Test("callers waiting for the job names get the first hello's, or the error that broke the pool")
    func jobNamesAndBreaking() async throws {
        let state = Mutex(SchedulerState(maximumQueuedJobs: 100, maximumQueuedBytes: 1 << 20))
        async let names: [String] = withCheckedThrowingContinuation { continuation in
            if case .resume(let answer) = state.withLock({ $0.waitForJobNames(continuation) }) { continuation.resume(with: answer) }
        }
        var waiters: [CheckedContinuation<[String], any Error>] = []
        while waiters.isEmpty {
            await Task.yield()
            waiters = state.withLock { $0.workerSaidHello(jobNames: ["a", "b"]) }
        }
        for waiter in waiters { waiter.resume(returning: ["a", "b"]) }
        #expect(try await names == ["a", "b"])
        let laterWaiters = state.withLock { $0.workerSaidHello(jobNames: ["c"]) }
        #expect(laterWaiters.isEmpty)
        #expect(state.withLock { $0.servedJobNames } == ["a", "b"], "the first hello's names stay")

        // Breaking the pool hands back what is queued, refuses new work, and happens once.
        state.withLock { enqueue(chunk(count: 2), into: &$0) }
        let broken = ProcessPoolError(.spawnFailed, "no worker could be started")
        let release = state.withLock { $0.breakPool(with: broken) }
        #expect(release?.queued.map(\.count) == [2])
        let again = state.withLock { $0.breakPool(with: broken) }
        #expect(again == nil, "a pool breaks once")
        let refusedCode: ProcessPoolError.Code?
        if case .refused(let error) = state.withLock({ $0.enqueue(ChunkSlice(chunk: chunk(count: 1), positions: 0..<1)) }) {
            refusedCode = error.code
        } else {
            refusedCode = nil
        }
        #expect(refusedCode == .spawnFailed)
    }
}

extension Array where Element == [UInt8] {
    /// Calls `body` with each payload as a successful outcome (valid only during the call).
    fileprivate func withPayloads(_ body: ([JobOutcome]) -> Void, done: [JobOutcome] = []) {
        guard let first else { return body(done) }
        first.withUnsafeBytes { payload in
            Array(dropFirst()).withPayloads(body, done: done + [.succeeded(codec: .binary, payload: payload)])
        }
    }

}
