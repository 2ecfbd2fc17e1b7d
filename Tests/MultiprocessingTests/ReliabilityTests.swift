import Foundation
import Multiprocessing
import Testing
@testable import fixture_worker

@Suite("Reliability: timeouts, cancelling running jobs, retries", .timeLimit(.minutes(2)))
struct ReliabilityTests {
    @Test("a job over its timeout is stopped with SIGTERM and fails alone with timedOut")
    func timeoutKillsTheJob() async throws {
        try await withFixturePool(workers: 2) { pool async throws in
            let clock = ContinuousClock()
            let start = clock.now
            let slow = try await pool.submit(SleepThenReportProcessID.self, 30_000, options: JobOptions(timeout: .milliseconds(200)))
            let others = try await (0..<20).asyncMap { try await pool.submit(Square.self, $0) }
            let error = try await #require(throws: ProcessPoolError.self) { try await slow.value }
            #expect(error.code == .timedOut)
            #expect(error.terminationStatus == .signaled(SIGTERM))
            #expect(error.message.contains("timeout of 200 ms"), "\(error.message)")
            #expect(clock.now - start < .seconds(10))
            for (index, future) in others.enumerated() { #expect(try await future.value == index * index) }
            #expect(try await pool.map(Square.self, 0..<100) == (0..<100).map { $0 * $0 })
            #expect(pool.workerProcessIDs.count == 2)
        }
    }

    @Test("a job that ignores SIGTERM is killed with SIGKILL after the grace period")
    func gracePeriodEndsInSigkill() async throws {
        try await withFixturePool(workers: 1, configure: {
            $0.terminationGracePeriod = .milliseconds(300)
            $0.environment["FIXTURE_IGNORE_SIGTERM"] = "1"
        }) { pool async throws in
            let error = try await #require(throws: ProcessPoolError.self) {
                try await pool.run(Misbehave.self, .ignoreTerminationAndSleep(milliseconds: 30_000), options: JobOptions(timeout: .milliseconds(200)))
            }
            #expect(error.code == .timedOut)
            #expect(error.terminationStatus == .signaled(SIGKILL))
            #expect(try await pool.run(Square.self, 4) == 16)
        }
    }

    @Test("the pool's default timeout applies to map; the other inputs succeed")
    func defaultTimeoutInMap() async throws {
        // The timeout's clock starts when the job is sent to an idle worker; on a loaded machine
        // a 5 ms job may wait well over 300 ms for a core, so the limit leaves room for that.
        let results = try await withFixturePool(workers: 2, configure: { $0.jobTimeout = .seconds(3) }) { pool async throws in
            try await pool.mapResults(SleepThenReportProcessID.self, [5, 5, 60_000, 5, 5, 5])
        }
        for (index, result) in results.enumerated() {
            if index == 2 {
                #expect(throws: ProcessPoolError.self) { try result.get() }
                if case .failure(let error) = result {
                    #expect(error.code == .timedOut)
                    #expect(error.inputIndex == 2)
                }
            } else {
                #expect(try result.get() > 0)
            }
        }
    }

    @Test("cancelling a running job's future stops just that job's worker")
    func cancelRunningFuture() async throws {
        let started = try StartSignal()
        defer { started.remove() }
        try await withFixturePool(workers: 1) { pool async throws in
            let future = try await pool.submit(Misbehave.self, .signalThenSleep(fifo: started.path, milliseconds: 60_000))
            await started.wait()
            let before = pool.workerProcessIDs
            let clock = ContinuousClock()
            let start = clock.now
            future.cancel()
            await #expect(throws: CancellationError.self) { try await future.value }
            // The only worker was asleep for a minute: this can only run on its replacement.
            #expect(try await pool.run(Square.self, 9) == 81)
            #expect(clock.now - start < .seconds(10))
            #expect(pool.workerProcessIDs != before)
            #expect(!processExists(before[0]))
        }
    }

    @Test("cancelling the task that awaits a running job stops its worker")
    func cancelRunningTask() async throws {
        let started = try StartSignal()
        defer { started.remove() }
        try await withFixturePool(workers: 1) { pool async throws in
            let task = Task { try await pool.run(Misbehave.self, .signalThenSleep(fifo: started.path, milliseconds: 60_000)) }
            await started.wait()
            task.cancel()
            await #expect(throws: CancellationError.self) { try await task.value }
            let clock = ContinuousClock()
            let start = clock.now
            #expect(try await pool.run(Square.self, 3) == 9)
            #expect(clock.now - start < .seconds(10))
        }
    }

    @Test("a job that crashed once succeeds on retry")
    func retryAfterCrash() async throws {
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent("crash-once-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: marker) }
        try await withFixturePool(workers: 1) { pool async throws in
            #expect(try await pool.run(Misbehave.self, .crashOnce(marker: marker), options: JobOptions(maximumRetries: 1)) == 1)
        }
    }

    @Test("a job that keeps killing workers is given up on, with every attempt's error")
    func quarantine() async throws {
        try await withFixturePool(workers: 2, configure: { $0.maximumRetries = 2 }) { pool async throws in
            let error = try await #require(throws: ProcessPoolError.self) { try await pool.run(Misbehave.self, .abort) }
            #expect(error.code == .workerCrashed)
            #expect(error.attempts.count == 3)
            #expect(error.attempts.allSatisfy { $0.terminationStatus == .signaled(SIGABRT) })
            #expect(error.message.contains("3 attempts"))
            #expect(error.attempts.allSatisfy { $0.executablePath == Binaries.fixtureWorker }, "each names the worker's executable")
            #expect(error.description.contains("executable \(Binaries.fixtureWorker)"))
            #expect(try await pool.run(Square.self, 2) == 4)
        }
    }

    @Test("retries apply to timeouts too")
    func retryTimeouts() async throws {
        try await withFixturePool(workers: 1) { pool async throws in
            let error = try await #require(throws: ProcessPoolError.self) {
                try await pool.run(SleepThenReportProcessID.self, 20_000, options: JobOptions(timeout: .milliseconds(100), maximumRetries: 1))
            }
            #expect(error.code == .timedOut)
            #expect(error.attempts.map(\.code) == [.timedOut, .timedOut])
        }
    }

    @Test(
        "an executable that is not a worker fails pending jobs with a clear protocolViolation",
        arguments: [
            ("/bin/true", [String](), "exited before its handshake"),
            ("/bin/cat", [], "expected the worker's hello"),
            (Binaries.fixtureWorker, ["serve-broken", "wrong-version"], "protocol version 99"),
            (Binaries.fixtureWorker, ["serve-broken", "silent"], "no hello within"),
        ])
    func notAWorker(executable: String, arguments: [String], expectedMessage: String) async throws {
        var configuration = ProcessPoolConfiguration(workerCount: 2, executablePath: executable, arguments: arguments)
        configuration.forwardsWorkerStandardError = false
        // Short only where the missing hello is the point: a busy machine can take longer
        // than that just to start a debug build.
        configuration.handshakeTimeout = expectedMessage == "no hello within" ? .milliseconds(300) : .seconds(5)
        let clock = ContinuousClock()
        let start = clock.now
        try await withProcessPool(configuration: configuration) { pool async throws in
            let error = try await #require(throws: ProcessPoolError.self) { try await pool.run(Square.self, 3) }
            #expect(error.code == .protocolViolation, "\(error)")
            #expect(error.message.contains("no worker could be started"), "\(error)")
            #expect(error.message.contains(expectedMessage), "\(error)")
            #expect(error.workerProcessID != nil)
            #expect(error.executablePath == executable)
            // New work is refused at once with the same explanation.
            let refused = try await #require(throws: ProcessPoolError.self) { try await pool.submit(Square.self, 4) }
            #expect(refused.message.contains(expectedMessage))
        }
        // Five failed starts with backoff (10, 20, 40, 80 ms), not a spin and not forever.
        #expect(clock.now - start < .seconds(15))
    }
}
