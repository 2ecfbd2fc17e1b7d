import Foundation
import Multiprocessing
import Testing
@testable import fixture_worker

@Suite("Recycling, memory limits and idle shutdown", .timeLimit(.minutes(2)))
struct RecyclingTests {
    @Test("maximumJobsPerWorker replaces a worker between batches, losing nothing")
    func recyclesAfterJobCount() async throws {
        let replies = try await withFixturePool(workers: 1, configure: { $0.maximumJobsPerWorker = 10 }) { pool async throws in
            try await pool.map(CountCalls.self, 0..<35)
        }
        let byWorker = Dictionary(grouping: replies, by: { $0[0] })
        #expect(byWorker.count == 4, "\(byWorker.mapValues(\.count))")
        for calls in byWorker.values {
            #expect(calls.count <= 10)
            #expect(calls.map { $0[1] } == (1...Int32(calls.count)).map { $0 })
        }
    }

    @Test("a worker over maximumResidentMemory is replaced after its job, and the job succeeds")
    func recyclesOnResidentMemory() async throws {
        try await withFixturePool(workers: 1, configure: { $0.maximumResidentMemory = 150 << 20 }) { pool async throws in
            var pids: Set<Int32> = []
            for _ in 0..<6 {
                pids.formUnion(pool.workerProcessIDs)
                // Each job leaks 60 MiB: the third one in a worker pushes it over the limit.
                #expect(try await pool.run(Misbehave.self, .leak(megabytes: 60)) >= 1)
            }
            pids.formUnion(pool.workerProcessIDs)
            #expect(pids.count >= 2, "the leaking worker was never replaced")
        }
    }

    @Test("a job over memoryLimit fails with memoryLimitExceeded; the pool goes on")
    func hardMemoryLimit() async throws {
        try await withFixturePool(workers: 1, configure: { $0.memoryLimit = 1 << 30 }) { pool async throws in
            #expect(try await pool.run(Misbehave.self, .allocate(megabytes: 16)) == 16)
            let error = try await #require(throws: ProcessPoolError.self) { try await pool.run(Misbehave.self, .allocate(megabytes: 2048)) }
            #expect(error.code == .memoryLimitExceeded, "\(error)")
            #expect(error.message.contains("\(1 << 30)"))
            #expect(try await pool.run(Misbehave.self, .allocate(megabytes: 16)) == 16)
        }
    }

    @Test("idle workers beyond the minimum exit, and come back when work arrives")
    func idleShutdown() async throws {
        try await withFixturePool(workers: 3, configure: {
            $0.minimumWorkerCount = 1
            $0.idleTimeout = .milliseconds(300)
        }) { pool async throws in
            // The pool starts three; with no work at all, all but the minimum exit once idle
            // for 300 ms (some may be gone already on a busy machine).
            let initial = pool.workerProcessIDs
            #expect((1...3).contains(initial.count))
            let exits = await withTaskGroup(of: Bool.self) { group in
                for pid in initial { group.addTask { await awaitExit(of: pid, timeout: .seconds(2)) } }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(exits == initial.count - 1)
            #expect(pool.workerProcessIDs.count == 1)
            // Work starts workers again: 30 jobs of 50 ms do not all fit on one worker.
            let pids = try await pool.map(SleepThenReportProcessID.self, Array(repeating: 50, count: 30))
            #expect(Set(pids).count >= 2)
        }
    }
}
