import CMultiprocessingShims
import Foundation
import Testing

@testable import Multiprocessing
@testable import fixture_worker

/// The name the kernel holds for the calling thread.
private func currentThreadName() -> String {
    var name = [CChar](repeating: 0, count: 32)
    mp_current_thread_name(&name, name.count)
    return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

@Suite("The pool's event-loop executor")
struct EventLoopExecutorTests {
    @Test("a task preferring it runs on the pool's I/O thread, and every way of running jobs works there")
    func runsOnTheLoopThread() async throws {
        try await withFixturePool { pool in
            try await withTaskExecutorPreference(pool.eventLoopExecutor) {
                #expect(currentThreadName() == "mp-pool-loop")
                #expect(try await pool.run(Square.self, 12) == 144)
                #expect(currentThreadName() == "mp-pool-loop")
                let future = try await pool.submit(Square.self, 5)
                #expect(try await future.value == 25)
                #expect(try await pool.map(Square.self, 0..<10_000) == (0..<10_000).map { $0 * $0 })
                var sum = 0
                for try await (_, output) in pool.mapUnordered(Square.self, Array(0..<1_000)) { sum += output }
                #expect(sum == (0..<1_000).reduce(0) { $0 + $1 * $1 })
                // Many jobs in flight at once, each awaited by a child task that inherits the
                // preference: the loop runs them all between its reads and writes.
                let total = try await withThrowingTaskGroup(of: Int.self) { group in
                    for n in 0..<200 { group.addTask { try await pool.run(Square.self, n) } }
                    return try await group.reduce(0, +)
                }
                #expect(total == (0..<200).reduce(0) { $0 + $1 * $1 })
                #expect(currentThreadName() == "mp-pool-loop")
            }
        }
    }

    @Test("cancelling a task on the loop executor cancels its job")
    func cancellation() async throws {
        try await withFixturePool(workers: 1) { pool in
            let task = Task(executorPreference: pool.eventLoopExecutor) {
                try await pool.run(SleepThenReportProcessID.self, 60_000)
            }
            let queued = try await pool.submit(Square.self, 3)
            task.cancel()
            await #expect(throws: CancellationError.self) { try await task.value }
            // With one worker, the job queued behind the minute-long one finishes only if
            // cancelling stopped (or never started) that one.
            #expect(try await queued.value == 9)
        }
    }

    @Test("a task that keeps yielding on it does not keep the pool from its pipes")
    func yieldingTask() async throws {
        try await withFixturePool(workers: 1) { pool in
            try await withTaskExecutorPreference(pool.eventLoopExecutor) {
                let future = try await pool.submit(Square.self, 7)
                // Polling by yielding: each yield queues the task again at once.
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(20)
                while future.result == nil && clock.now < deadline { await Task.yield() }
                #expect(try future.result?.get() == 49)
            }
        }
    }

    @Test("deadlines are kept while the loop spins on another worker's quick answers")
    func timeoutWhileSpinning() async throws {
        try await withFixturePool(workers: 2) { pool in
            try await withTaskExecutorPreference(pool.eventLoopExecutor) {
                let clock = ContinuousClock()
                let start = clock.now
                let slow = try await pool.submit(SleepThenReportProcessID.self, 60_000, options: JobOptions(timeout: .milliseconds(200)))
                // Tiny jobs one after another on the other worker: the loop spins on their
                // answers nearly all the time.
                var n = 0
                while slow.result == nil && clock.now - start < .seconds(10) {
                    #expect(try await pool.run(Square.self, n) == n * n)
                    n += 1
                }
                let error = await #expect(throws: ProcessPoolError.self) { try await slow.value }
                #expect(error?.code == .timedOut)
                // The 200 ms timeout, give or take a loaded machine: not the job's 60 s.
                #expect(clock.now - start < .seconds(10))
            }
        }
    }

    @Test("the pool's whole body may run on it, shutdown included, and its tasks outlive the pool")
    func outlivesThePool() async throws {
        let (squares, executor) = try await withFixturePool { pool in
            let squares = try await withTaskExecutorPreference(pool.eventLoopExecutor) {
                try await withFixturePool { inner in try await inner.map(Square.self, [1, 2, 3]) }
                    + pool.map(Square.self, [4, 5])
            }
            return (squares, pool.eventLoopExecutor)
        }
        #expect(squares == [1, 4, 9, 16, 25])
        // The loop has ended: a task preferring its executor still runs, elsewhere.
        let thread = await withTaskExecutorPreference(executor) {
            await Task.yield()
            return currentThreadName()
        }
        #expect(thread != "mp-pool-loop")
    }
}
