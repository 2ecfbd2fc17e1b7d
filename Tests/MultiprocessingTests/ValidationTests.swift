import Testing
@testable import Multiprocessing
@testable import fixture_worker

@Suite("Every number a user sets is checked")
struct ValidationTests {
    /// One configuration field set out of range, and the field's name as the error gives it.
    static let badConfigurations: [(String, @Sendable (inout ProcessPoolConfiguration) -> Void)] = [
        ("workerCount", { $0.workerCount = 0 }),
        ("workerCount", { $0.workerCount = -4 }),
        ("workerCount", { $0.workerCount = Int.max }),
        ("maximumFrameSize", { $0.maximumFrameSize = 10 }),
        ("maximumFrameSize", { $0.maximumFrameSize = Int.max }),
        ("maximumQueuedJobs", { $0.maximumQueuedJobs = 0 }),
        ("maximumQueuedBytes", { $0.maximumQueuedBytes = -1 }),
        ("batchSize", { $0.batchSize = 0 }),
        ("targetBatchDuration", { $0.targetBatchDuration = .zero }),
        ("jobTimeout", { $0.jobTimeout = .seconds(-1) }),
        ("jobTimeout", { $0.jobTimeout = .seconds(Int64.max) }),
        ("maximumRetries", { $0.maximumRetries = -1 }),
        ("terminationSignal", { $0.terminationSignal = 0 }),
        ("terminationSignal", { $0.terminationSignal = 200 }),
        ("terminationGracePeriod", { $0.terminationGracePeriod = .seconds(-2) }),
        ("maximumJobsPerWorker", { $0.maximumJobsPerWorker = 0 }),
        ("maximumResidentMemory", { $0.maximumResidentMemory = -5 }),
        ("memoryLimit", { $0.memoryLimit = 0 }),
        ("minimumWorkerCount", { $0.minimumWorkerCount = 3 }),
        ("idleTimeout", { $0.idleTimeout = .zero }),
        ("handshakeTimeout", { $0.handshakeTimeout = .seconds(Int64.max / 2) }),
    ]

    @Test("a configuration out of range is a thrown error naming the field; no worker starts", arguments: 0..<badConfigurations.count)
    func badConfiguration(index: Int) async throws {
        let (field, change) = Self.badConfigurations[index]
        var configuration = ProcessPoolConfiguration(workerCount: 2, executablePath: Binaries.fixtureWorker)
        change(&configuration)
        let error = try await #require(throws: ProcessPoolError.self) { _ = try await ProcessPool(configuration: configuration) }
        #expect(error.code == .invalidConfiguration)
        #expect(error.message.hasPrefix(field + " must be"), "\(error.message)")
    }

    @Test("job options out of range fail the call that gives them, and the pool goes on")
    func badJobOptions() async throws {
        try await withFixturePool(workers: 1) { pool in
            let huge = JobOptions(timeout: .seconds(Int64.max))
            let submitted = try await #require(throws: ProcessPoolError.self) { _ = try await pool.submit(Square.self, 3, options: huge) }
            #expect(submitted.code == .invalidConfiguration)
            #expect(submitted.message.hasPrefix("JobOptions.timeout must be"))
            let mapped = try await #require(throws: ProcessPoolError.self) {
                _ = try await pool.map(Square.self, [1, 2], options: JobOptions(maximumRetries: -1))
            }
            #expect(mapped.message.hasPrefix("JobOptions.maximumRetries must be"))
            var unordered = pool.mapUnordered(Square.self, [1, 2], options: JobOptions(timeout: .zero)).makeAsyncIterator()
            let first = try await #require(throws: ProcessPoolError.self) { _ = try await unordered.next() }
            #expect(first.code == .invalidConfiguration)
            #expect(try await unordered.next() == nil, "the error is thrown once; the sequence then ends")
            #expect(try await pool.run(Square.self, 9) == 81)
        }
    }
}
