import Foundation
import Multiprocessing
import Synchronization
import Testing
@testable import fixture_worker

@Suite("Lifetime: cancellation, shutdown, orphans and descriptors", .timeLimit(.minutes(2)))
struct LifecycleTests {
    @Test("cancelling a queued job's future drops it; the running job is unaffected")
    func cancelQueuedFuture() async throws {
        try await withFixturePool(workers: 1) { pool in
            let running = try await pool.submit(SleepThenReportProcessID.self, 300)
            let queued = try await pool.submit(SleepThenReportProcessID.self, 300)
            queued.cancel()
            await #expect(throws: CancellationError.self) { try await queued.value }
            #expect(try await running.value > 0)
        }
    }

    @Test("cancelling the task that awaits a map cancels its jobs")
    func cancelMapTask() async throws {
        try await withFixturePool(workers: 2) { pool in
            let task = Task {
                try await pool.map(SleepThenReportProcessID.self, Array(repeating: 100, count: 1000))
            }
            // Let the map start for real before cancelling it.
            _ = try await pool.run(SleepThenReportProcessID.self, 0)
            task.cancel()
            let clock = ContinuousClock()
            let start = clock.now
            await #expect(throws: CancellationError.self) { try await task.value }
            // 1000 jobs of 100 ms on 2 workers would take 50 s; cancelled, it ends at once.
            #expect(clock.now - start < .seconds(5))
            #expect(try await pool.run(Square.self, 5) == 25)
        }
    }

    @Test("mapUnordered reads its inputs lazily: stopping early leaves most unread")
    func mapUnorderedIsLazy() async throws {
        let pulled = Atomic<Int>(0)
        let inputs = (0..<1_000_000).lazy.map { value -> Int in
            pulled.add(1, ordering: .relaxed)
            return value
        }
        try await withFixturePool(configure: { $0.maximumQueuedJobs = 2000 }) { pool in
            var taken = 0
            for try await _ in pool.mapUnordered(Square.self, inputs) {
                taken += 1
                if taken == 10 { break }
            }
        }
        #expect(pulled.load(ordering: .relaxed) <= 4000)
    }

    @Test("after shutdown no worker process remains")
    func noWorkerOutlivesThePool() async throws {
        var pids: [Int32] = []
        try await withFixturePool(workers: 3) { pool in
            _ = try await pool.map(Square.self, 0..<10_000)
            pids = pool.workerProcessIDs
        }
        #expect(pids.count == 3)
        for pid in pids {
            #expect(!processExists(pid), "worker \(pid) is still there (a zombie counts)")
        }
    }

    @Test("a pool that is shut down refuses new work with poolShutDown")
    func shutDownPoolRefusesWork() async throws {
        var configuration = ProcessPoolConfiguration(workerCount: 1, executablePath: Binaries.fixtureWorker)
        configuration.forwardsWorkerStandardError = false
        let pool = try await ProcessPool(configuration: configuration)
        #expect(try await pool.run(Square.self, 3) == 9)
        await pool.shutdown()
        let error = try await #require(throws: ProcessPoolError.self) { try await pool.run(Square.self, 3) }
        #expect(error.code == .poolShutDown)
    }

    @Test("shutdown(cancellingPendingJobs:) fails queued jobs and stops running ones")
    func cancellingShutdown() async throws {
        var configuration = ProcessPoolConfiguration(workerCount: 1, executablePath: Binaries.fixtureWorker)
        configuration.forwardsWorkerStandardError = false
        let pool = try await ProcessPool(configuration: configuration)
        let futures = try await (0..<5).asyncMap { _ in try await pool.submit(SleepThenReportProcessID.self, 60_000) }
        let clock = ContinuousClock()
        let start = clock.now
        await pool.shutdown(cancellingPendingJobs: true)
        #expect(clock.now - start < .seconds(10))
        for future in futures {
            let error = try await #require(throws: ProcessPoolError.self) { try await future.value }
            #expect(error.code == .poolShutDown)
        }
    }

    @Test("a coordinator's descriptors and children are back to where they started after a run with a crash")
    func coordinatorLeaksNothing() async throws {
        let (status, output) = try await runFixtureProcess(["lifecycle-report"])
        #expect(status == 0)
        let fields = output.split(separator: " ").map(String.init)
        func value(_ key: String) -> String? { fields.firstIndex(of: key).map { fields[$0 + 1] } }
        #expect(value("descriptors-before") != nil)
        #expect(value("descriptors-before") == value("descriptors-after"), "\(output)")
        #expect(value("no-children") == "true", "\(output)")
        #expect(value("workers-gone") == "true", "\(output)")
        #expect(value("workers") == "2")
    }

    @Test("a pool that runs out of descriptors while starting its workers runs its jobs on part of them and says why")
    func partialStart() async throws {
        let (status, output) = try await runFixtureProcess(["capacity-report"])
        #expect(status == 0, "\(output)")
        let lines = output.split(separator: "\n").map(String.init)
        let fields = lines.first?.split(separator: " ").map(String.init) ?? []
        #expect(fields.count == 4 && fields[0] == "capacity" && fields[2] == "sum", "\(output)")
        let capacity = fields.count == 4 ? Int(fields[1]) ?? 0 : 0
        #expect((1..<200).contains(capacity), "\(output)")
        #expect(fields.last == String((0..<100).reduce(0) { $0 + $1 * $1 }), "\(output)")
        #expect(lines.last?.hasPrefix("spawnFailed") == true, "\(output)")
        #expect(lines.last?.contains("EMFILE") == true, "\(output)")
        #expect(lines.last?.contains("RLIMIT_NOFILE (open descriptors per process) is 64") == true, "\(output)")
    }

    @Test("a coordinator killed with SIGKILL in the middle of a busy map leaves no worker alive one second later")
    func coordinatorKilled() async throws {
        let pids = try await onDedicatedThread { () throws -> [Int32] in
            let coordinator = Process()
            coordinator.executableURL = URL(fileURLWithPath: Binaries.fixtureWorker)
            coordinator.arguments = ["coordinate-and-wait"]
            let pipe = Pipe()
            coordinator.standardOutput = pipe
            coordinator.standardError = FileHandle.nullDevice
            try coordinator.run()
            // Blocks until the coordinator prints its workers' pids: they are busy then.
            let line = readLine(from: pipe.fileHandleForReading) ?? ""
            kill(coordinator.processIdentifier, SIGKILL)
            coordinator.waitUntilExit()
            return line.split(separator: " ").dropFirst().compactMap { Int32($0) }
        }
        #expect(pids.count == 2)
        for pid in pids {
            #expect(await awaitExit(of: pid, timeout: .seconds(1)), "worker \(pid) outlived its coordinator")
        }
    }
}

private func readLine(from handle: FileHandle) -> String? {
    var bytes: [UInt8] = []
    while true {
        let data = handle.readData(ofLength: 1)
        guard let byte = data.first else { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
        if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
        bytes.append(byte)
    }
}
