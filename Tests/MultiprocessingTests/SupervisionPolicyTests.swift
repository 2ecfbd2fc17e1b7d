import Testing
@testable import Multiprocessing

/// A sink that accepts everything and keeps nothing: the policies below never deliver.
private final class NullSink: ResultSink {
    var isAcceptingResults: Bool { true }
    func deliver(_ run: ResultRun) {}
}

private func slice(_ name: String = "job", count: Int, retries: Int = 0) -> ChunkSlice {
    var builder = ChunkBuilder(codec: .binary, maximumFrameSize: 1 << 20)
    for index in 0..<count { try! builder.append(index) }
    let chunk = builder.build(
        sink: NullSink(), jobName: name, firstIndex: 0, firstJobID: 1, options: ResolvedJobOptions(timeout: nil, maximumRetries: retries))
    return ChunkSlice(chunk: chunk, positions: 0..<count)
}

private let crash = ProcessPoolError(.workerCrashed, "the worker died while running the job")

@Suite("What happens to a dead worker's jobs, without processes")
struct RescuePlanTests {
    @Test("a death in a batch that reported each result fails the running job and reruns the rest")
    func culpritIsTheRunningJob() {
        let plan = RescuePlan(unanswered: [slice(count: 3)], reportsEachResult: true, waiting: [slice("later", count: 2)], cause: .died(crash))
        #expect(plan.failures.map(\.slice.positions) == [0..<1])
        #expect(plan.failures.first?.error.code == .workerCrashed)
        #expect(plan.requeue.map(\.positions) == [1..<3, 0..<2])
        #expect(plan.requeue.map(\.chunk.jobName) == ["job", "later"])
        #expect(plan.requeue.allSatisfy { !$0.isSuspect })
    }

    @Test("a death in a batch that did not report each result makes every unanswered job a suspect")
    func unreportedBatchMakesSuspects() {
        let plan = RescuePlan(unanswered: [slice(count: 4)], reportsEachResult: false, waiting: [slice("later", count: 1)], cause: .died(crash))
        #expect(plan.failures.isEmpty)
        #expect(plan.requeue.map(\.positions) == [0..<4, 0..<1])
        #expect(plan.requeue.map(\.isSuspect) == [true, false])
    }

    @Test("a lone unanswered job is the culprit even in a batch that did not report each result")
    func loneJobIsTheCulprit() {
        let plan = RescuePlan(unanswered: [slice(count: 1)], reportsEachResult: false, waiting: [], cause: .died(crash))
        #expect(plan.failures.count == 1)
        #expect(plan.requeue.isEmpty)
    }

    @Test("a job with retries left is rerun as a suspect, with its failure in its history")
    func retryKeepsHistory() {
        let plan = RescuePlan(unanswered: [slice(count: 2, retries: 1)], reportsEachResult: true, waiting: [], cause: .died(crash))
        #expect(plan.failures.isEmpty)
        #expect(plan.requeue.map(\.positions) == [0..<1, 1..<2])
        #expect(plan.requeue[0].isSuspect)
        #expect(plan.requeue[0].history.map(\.code) == [.workerCrashed])

        // Its second death uses up its retries: it fails with both attempts.
        let second = RescuePlan(unanswered: [plan.requeue[0]], reportsEachResult: true, waiting: [], cause: .died(crash))
        #expect(second.requeue.isEmpty)
        #expect(second.failures.first?.error.attempts.count == 2)
        #expect(second.failures.first?.error.message.hasSuffix("given up after 2 attempts") == true)
    }

    @Test("a timeout blames the running job; a cancellation blames no one")
    func timeoutAndCancellation() {
        let timeout = ProcessPoolError(.timedOut, "over its timeout")
        let timedOut = RescuePlan(unanswered: [slice(count: 2)], reportsEachResult: true, waiting: [], cause: .timedOut(timeout))
        #expect(timedOut.failures.map(\.error.code) == [.timedOut])
        #expect(timedOut.requeue.map(\.positions) == [1..<2])

        let cancelled = RescuePlan(unanswered: [slice(count: 2)], reportsEachResult: true, waiting: [slice(count: 1)], cause: .stoppedForCancelledJob)
        #expect(cancelled.failures.isEmpty)
        #expect(cancelled.requeue.map(\.count) == [2, 1])
    }

    @Test("a lost host uses no retry; the job running on three lost hosts fails naming them")
    func hostLoss() {
        func lost(_ host: String) -> RescuePlan.Cause {
            .hostLost(host: "\(host): the connection ended", error: ProcessPoolError(.hostLost, "host \(host) was lost"))
        }
        var running = slice(count: 3)
        for (round, host) in ["a", "b"].enumerated() {
            let plan = RescuePlan(unanswered: [running], reportsEachResult: false, waiting: [slice("later", count: 2)], cause: lost(host))
            #expect(plan.failures.isEmpty)
            // The running job alone carries the loss; the jobs behind it had not started.
            #expect(plan.requeue.map(\.positions) == [0..<1, 1..<3, 0..<2])
            #expect(plan.requeue[0].lostHosts.count == round + 1)
            #expect(plan.requeue[1].lostHosts.count == round)
            #expect(plan.requeue[2].lostHosts.isEmpty)
            #expect(plan.requeue.allSatisfy { $0.history.isEmpty && !$0.isSuspect })
            running = plan.requeue[0]
            running.positions = 0..<3
        }
        let third = RescuePlan(unanswered: [running], reportsEachResult: true, waiting: [], cause: lost("c"))
        #expect(third.failures.map(\.slice.positions) == [0..<1])
        #expect(third.requeue.map(\.positions) == [1..<3])
        let error = third.failures.first?.error
        #expect(error?.code == .hostLost)
        #expect(error?.message == "the job was on 3 hosts that were lost under it: a: the connection ended; b: the connection ended; c: the connection ended")
    }

    @Test("while the pool cancels its work, nothing is rerun")
    func poolCancelling() {
        let shutDown = ProcessPoolError(.poolShutDown, "the pool was shut down while the job ran")
        let plan = RescuePlan(unanswered: [slice(count: 2)], reportsEachResult: false, waiting: [slice(count: 3)], cause: .poolCancelled(shutDown))
        #expect(plan.requeue.isEmpty)
        #expect(plan.failures.map(\.slice.count) == [2, 3])
        let idle = RescuePlan(unanswered: [], reportsEachResult: false, waiting: [slice(count: 3)], cause: .poolCancelled(shutDown))
        #expect(idle.failures.map(\.slice.count) == [3])
    }
}

@Suite("When workers are started again, without processes")
struct RespawnScheduleTests {
    let clock = ContinuousClock()
    let startFailure = ProcessPoolError(.protocolViolation, "the worker exited before its handshake")

    @Test("with no failed start, a replacement starts at once")
    func startsAtOnce() {
        var schedule = RespawnSchedule()
        guard case .startNow = schedule.requestReplacement(now: clock.now, noWorkerLeft: true) else {
            Issue.record("a replacement waited with no failure behind it")
            return
        }
        #expect(schedule.pending == 0)
    }

    @Test("after failed starts, replacements wait a doubling backoff, then start one by one")
    func backoff() {
        var schedule = RespawnSchedule()
        let now = clock.now
        #expect(schedule.noteStartFailure(startFailure, anyWorkerWorking: true) == nil)
        #expect(schedule.noteStartFailure(startFailure, anyWorkerWorking: true) == nil)
        guard case .deferred = schedule.requestReplacement(now: now, noWorkerLeft: false) else {
            Issue.record("a replacement after failures did not wait")
            return
        }
        _ = schedule.requestReplacement(now: now, noWorkerLeft: false)
        #expect(schedule.pending == 2)
        #expect(schedule.dueAt == now + .milliseconds(20))
        let early = schedule.takeDueStart(now: now + .milliseconds(19))
        let due = schedule.takeDueStart(now: now + .milliseconds(20))
        let next = schedule.takeDueStart(now: now + .milliseconds(20))
        #expect(!early)
        #expect(due)
        #expect(next, "the next waiting one is due at once")
        #expect(schedule.pending == 0 && schedule.dueAt == nil)
        #expect(RespawnSchedule.backoff(afterFailures: 1) == .milliseconds(10))
        #expect(RespawnSchedule.backoff(afterFailures: 40) == .seconds(2))
    }

    @Test("the limit of failed starts with no working worker gives up; a success resets the count")
    func givesUp() {
        var schedule = RespawnSchedule()
        for _ in 1..<RespawnSchedule.startFailureLimit {
            #expect(schedule.noteStartFailure(startFailure, anyWorkerWorking: false) == nil)
        }
        // A working worker keeps the pool going.
        #expect(schedule.noteStartFailure(startFailure, anyWorkerWorking: true) == nil)
        guard case .giveUp(let error) = schedule.requestReplacement(now: clock.now, noWorkerLeft: true) else {
            Issue.record("no give-up with no worker left")
            return
        }
        #expect(error.code == .protocolViolation)
        #expect(schedule.noteStartFailure(startFailure, anyWorkerWorking: false)?.code == .protocolViolation)
        schedule.noteStartSuccess()
        #expect(!schedule.workersCannotStart)
    }
}

@Suite("How big batches are, without processes")
struct BatchSizerTests {
    @Test("an untimed job goes alone; a timed one fills the target, spread over the workers")
    func batchLimit() {
        var sizer = BatchSizer(targetBatchDuration: .milliseconds(2), fixedBatchSize: nil, spinDuration: .microseconds(50))
        #expect(sizer.batchLimit(jobName: "tiny", queuedJobs: 1_000_000, workerCount: 2) == 1)
        sizer.record(jobName: "tiny", count: 100, elapsedNanoseconds: 100_000, resultBytes: 800)
        // 1 µs a job: 2,000 jobs make 2 ms.
        #expect(sizer.batchLimit(jobName: "tiny", queuedJobs: 1_000_000, workerCount: 2) == 2_000)
        // 100 jobs left for 2 workers with 2 batches each: 25 a batch.
        #expect(sizer.batchLimit(jobName: "tiny", queuedJobs: 100, workerCount: 2) == 25)
        // A job measured at zero cost, or an enormous queue, cannot overflow.
        sizer.record(jobName: "free", count: 1, elapsedNanoseconds: 0, resultBytes: 0)
        #expect(sizer.batchLimit(jobName: "free", queuedJobs: Int.max, workerCount: 2) == 1 << 16)
        #expect(sizer.batchLimit(jobName: "free", queuedJobs: Int.max, workerCount: Int.max) == 1)
    }

    @Test("a fixed batch size overrides the measurements")
    func fixedSize() {
        let sizer = BatchSizer(targetBatchDuration: .milliseconds(2), fixedBatchSize: 7, spinDuration: .microseconds(50))
        #expect(sizer.batchLimit(jobName: "any", queuedJobs: 1000, workerCount: 4) == 7)
    }

    @Test("a second batch is sent behind a short one, not behind a long one")
    func pipelineDepth() {
        var sizer = BatchSizer(targetBatchDuration: .milliseconds(2), fixedBatchSize: nil, spinDuration: .microseconds(50))
        #expect(sizer.pipelineDepth(behind: nil) == 1)
        sizer.record(jobName: "short", count: 1, elapsedNanoseconds: 1_000, resultBytes: 8)
        sizer.record(jobName: "long", count: 1, elapsedNanoseconds: 1_000_000_000, resultBytes: 8)
        let short = InFlightBatch(id: 1, flags: [], slices: [slice("short", count: 10)])
        let long = InFlightBatch(id: 2, flags: [], slices: [slice("long", count: 1)])
        #expect(sizer.pipelineDepth(behind: short) == BatchSizer.pipelineDepth)
        #expect(sizer.pipelineDepth(behind: long) == 1)
    }
}
