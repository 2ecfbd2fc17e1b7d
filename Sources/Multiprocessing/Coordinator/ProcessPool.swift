/// A pool of worker processes that run ``Job``s.
///
/// Workers are started with `posix_spawn` and talk to the pool over pipes. A job that crashes
/// its worker (a trap, `fatalError`, a signal) fails alone with
/// ``ProcessPoolError/Code/workerCrashed``; the worker is replaced and the pool goes on.
///
/// Prefer ``withProcessPool(workers:executable:arguments:isolation:_:)``, which always shuts
/// the pool down. A pool made with ``init(configuration:)`` must be shut down with
/// ``shutdown(cancellingPendingJobs:)``; if it is simply released, its workers are stopped.
public final class ProcessPool: Sendable {
    let core: PoolCore

    /// The configuration the pool was started with.
    public var configuration: ProcessPoolConfiguration { core.configuration }

    /// The process ids of the pool's live workers, at the moment of the call (workers are
    /// replaced when they crash, so the list changes).
    public var workerProcessIDs: [Int32] { core.state.withLock { $0.workerProcessIDs } }

    /// How many workers the pool keeps: ``ProcessPoolConfiguration/workerCount``, or fewer when a
    /// resource limit let it start only some of them (see ``capacityShortfall``).
    public var workerCapacity: Int {
        core.state.withLock { $0.capacityShortfall?.capacity } ?? max(1, configuration.workerCount)
    }

    /// Why the pool runs with fewer workers than ``ProcessPoolConfiguration/workerCount``, or nil
    /// when it started them all.
    ///
    /// A pool whose first workers' start runs into a limit of the machine — processes or
    /// threads per user (`RLIMIT_NPROC`), open descriptors, memory — after at least one has
    /// started does not fail: it runs on part of the workers it could start, ``workerCapacity``
    /// of them, and this is the error of the start that failed, naming the limit
    /// (``ProcessPoolError/resourceLimit``). It keeps a quarter of them under a process limit
    /// (each worker's threads, and the processes its jobs start, count against the same
    /// limit) and half under a descriptor or memory limit. A pool that cannot start even one
    /// worker throws.
    public var capacityShortfall: ProcessPoolError? { core.state.withLock { $0.capacityShortfall?.error } }

    /// Sends SIGKILL to every live worker's process group at once, from any thread: the last
    /// resort of a command line interrupted twice. The event loop then sees the exits as usual.
    package func killWorkersNow() {
        for pid in workerProcessIDs { ThisProcess.killProcessGroup(pid) }
    }

    /// An executor that runs tasks on the pool's I/O thread, for the lowest latency per job.
    ///
    /// A task that prefers it, with `withTaskExecutorPreference(pool.eventLoopExecutor) { … }`,
    /// submits each job on the thread that writes it to a worker, and is resumed on the thread
    /// that reads the result: a round trip then crosses two threads, the pool's and the
    /// worker's, instead of four (the caller's, the pool's, the worker's, and the one that
    /// resumes the caller). On a 2-core machine this takes one job's round trip (p50) from
    /// 13–15 µs to 6–8 µs.
    ///
    /// While such a task runs, the pool reads and writes nothing, so use it only for short,
    /// non-blocking code between jobs: no blocking calls, no long computations. (A `map` over
    /// many inputs from such a task encodes them on that thread too.) Code isolated
    /// to an actor (such as the main actor) runs on that actor instead, as usual. Tasks that
    /// still prefer it once the pool has stopped run on the global concurrent executor.
    public var eventLoopExecutor: any TaskExecutor { core.executor }

    /// The names of the jobs the pool's workers serve, from the first worker's handshake.
    ///
    /// - Returns: The names, in the order the worker registered them.
    /// - Throws: ``ProcessPoolError`` if no worker can be started, or the pool stops first.
    public func servedJobNames() async throws -> [String] {
        try await withCheckedThrowingContinuation { continuation in
            if case .resume(let answer) = core.state.withLock({ $0.waitForJobNames(continuation) }) {
                continuation.resume(with: answer)
            }
        }
    }

    /// Starts the pool's workers.
    ///
    /// Returns once every worker process has been spawned; workers finish starting (their
    /// handshake) in the background, and jobs wait for them.
    ///
    /// - Parameter configuration: How many workers, which executable, and the queue's limits.
    /// - Throws: ``ProcessPoolError`` with ``ProcessPoolError/Code/spawnFailed`` naming the
    ///   executable and the error number if a worker cannot be started.
    public init(configuration: ProcessPoolConfiguration) async throws {
        try configuration.validate()
        let core: PoolCore
        let loop: EventLoop
        do {
            core = try PoolCore(configuration: configuration)
            loop = try EventLoop(core: core)
        } catch {
            throw ProcessPoolError(systemCallFailure: error, "cannot set up the pool")
        }
        let failure: ProcessPoolError? = await withCheckedContinuation { continuation in
            loop.start { continuation.resume(returning: $0) }
        }
        if let failure { throw failure }
        self.core = core
    }

    deinit {
        // Released without shutdown: stop the workers rather than leave them running.
        if core.state.withLock({ $0.poolReleased() }) { core.waker.wake() }
    }

    /// Queues a job and returns a future for its output.
    ///
    /// The input is encoded here, so a value that cannot be encoded fails this call alone.
    /// When the queue is full (``ProcessPoolConfiguration/maximumQueuedJobs``), this suspends
    /// until there is room.
    ///
    /// - Parameters:
    ///   - job: The job type; workers must serve a job of the same ``Job/name``.
    ///   - input: The job's input.
    ///   - options: A timeout or retry count for this job, overriding the pool's.
    /// - Returns: A future for the job's output.
    /// - Throws: ``ProcessPoolError`` with ``ProcessPoolError/Code/encodingFailed`` or
    ///   ``ProcessPoolError/Code/poolShutDown``; `CancellationError` if cancelled while waiting
    ///   for room.
    public func submit<J: Job>(_ job: J.Type, _ input: J.Input, options: JobOptions = JobOptions()) async throws -> JobFuture<J.Output> {
        try await submit(job, input, options: options, onOutput: nil)
    }

    /// ``submit(_:_:options:)`` for a job that streams output while it runs (a
    /// ``CommandJob`` asked to): `onOutput` gets each piece (stream 0 stdout, 1 stderr) on the
    /// pool's I/O thread, so it must be quick.
    package func submit<J: Job>(
        _ job: J.Type, _ input: J.Input, options: JobOptions = JobOptions(),
        onOutput: (@Sendable (Int, [UInt8]) -> Void)?
    ) async throws -> JobFuture<J.Output> {
        var builder = ChunkBuilder(codec: .binary, maximumFrameSize: core.configuration.maximumFrameSize, expectedCount: 1)
        do {
            try builder.append(input)
        } catch {
            throw error.forJob(name: J.name, inputIndex: nil)
        }
        return try await submit(job, builder, options: options, onOutput: onOutput)
    }

    /// Queues the one job `builder` holds.
    private func submit<J: Job>(
        _ job: J.Type, _ builder: ChunkBuilder, options: JobOptions, onOutput: (@Sendable (Int, [UInt8]) -> Void)?
    ) async throws -> JobFuture<J.Output> {
        let id = core.reserveJobIDs(1)
        let sink = FutureSink<J.Output>(decode: { run in
            run.firstOutcome.decoded(J.Output.self, index: nil, jobID: run.firstJobID, jobName: run.jobName)
        }, onOutput: onOutput)
        let resolved = try ResolvedJobOptions(options, defaults: core.configuration)
        try await core.enqueue(builder.build(sink: sink, jobName: J.name, firstIndex: 0, firstJobID: id, options: resolved))
        return JobFuture(sink: sink, core: core, id: id)
    }

    /// ``submit(_:_:options:onOutput:)`` with the input already encoded in the binary codec,
    /// as `buffer[start...]`: the buffer becomes the payload without a copy (`pool run --pipe`
    /// reads each block into place after room for the rest of its input's encoding).
    package func submit<J: Job>(
        _ job: J.Type, encodedInput buffer: [UInt8], from start: Int, options: JobOptions = JobOptions(),
        onOutput: (@Sendable (Int, [UInt8]) -> Void)?
    ) async throws -> JobFuture<J.Output> {
        var builder = ChunkBuilder(codec: .binary, maximumFrameSize: core.configuration.maximumFrameSize, expectedCount: 1)
        do {
            try builder.adopt(buffer, from: start)
        } catch {
            throw error.forJob(name: J.name, inputIndex: nil)
        }
        return try await submit(job, builder, options: options, onOutput: onOutput)
    }

    /// Runs one job and returns its output: ``submit(_:_:)`` followed by awaiting the future.
    ///
    /// - Parameters:
    ///   - job: The job type.
    ///   - input: The job's input.
    ///   - options: A timeout or retry count for this job, overriding the pool's.
    /// - Returns: The job's output.
    /// - Throws: ``ProcessPoolError`` if the job fails; `CancellationError` if the task is
    ///   cancelled (the job is then cancelled too, and its worker stopped if it was running).
    public func run<J: Job>(_ job: J.Type, _ input: J.Input, options: JobOptions = JobOptions()) async throws -> J.Output {
        try await submit(job, input, options: options).value
    }

    /// Stops the pool and waits until every worker has exited.
    ///
    /// - Parameter cancellingPendingJobs: If false (the default), jobs already queued still
    ///   run; if true, they fail with ``ProcessPoolError/Code/poolShutDown`` and running jobs'
    ///   workers are terminated (``ProcessPoolConfiguration/terminationSignal``, then SIGKILL
    ///   after ``ProcessPoolConfiguration/terminationGracePeriod``).
    ///
    /// New work is refused from the moment this is called. Shutting down runs to the end even
    /// if the calling task is cancelled.
    public func shutdown(cancellingPendingJobs: Bool = false) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            switch core.state.withLock({ $0.shutdown(cancellingPendingJobs: cancellingPendingJobs, continuation) }) {
            case .resumeNow: continuation.resume()
            case .wakeLoop: core.waker.wake()
            }
        }
    }
}

/// Runs `body` with a pool of worker processes, and shuts the pool down when `body` ends.
///
/// ```swift
/// let counts = try await withProcessPool(workers: 4) { pool in
///     try await pool.map(CountPrimes.self, chunks)
/// }
/// ```
///
/// If `body` returns, queued jobs finish before the pool stops; if it throws (or its task is
/// cancelled), queued jobs are dropped and running ones stopped. Either way no worker process
/// outlives the call.
///
/// - Parameters:
///   - workers: How many worker processes; default: the number of active cores.
///   - executable: The worker binary, or nil (the default) to re-execute the running program,
///     which must call ``Worker/serveIfSpawned(jobs:)`` first thing in `main`.
///   - arguments: The worker's arguments; see ``ProcessPoolConfiguration/arguments``.
///   - isolation: The actor `body` runs on; inferred.
///   - body: The work to do with the pool.
/// - Returns: What `body` returns.
/// - Throws: ``ProcessPoolError`` if the workers cannot be started, or what `body` throws.
public func withProcessPool<Value>(
    workers: Int = ProcessPoolConfiguration.defaultWorkerCount,
    executable: String? = nil,
    arguments: [String]? = nil,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (ProcessPool) async throws -> Value
) async throws -> Value {
    let configuration = ProcessPoolConfiguration(workerCount: workers, executablePath: executable, arguments: arguments)
    return try await withProcessPool(configuration: configuration, isolation: isolation, body)
}

/// Runs `body` with a pool started from `configuration`, and shuts the pool down when `body`
/// ends; see ``withProcessPool(workers:executable:arguments:isolation:_:)``.
///
/// - Parameters:
///   - configuration: The pool's configuration.
///   - isolation: The actor `body` runs on; inferred.
///   - body: The work to do with the pool.
/// - Returns: What `body` returns.
/// - Throws: ``ProcessPoolError`` if the workers cannot be started, or what `body` throws.
public func withProcessPool<Value>(
    configuration: ProcessPoolConfiguration,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (ProcessPool) async throws -> Value
) async throws -> Value {
    let pool = try await ProcessPool(configuration: configuration)
    do {
        let value = try await body(pool)
        await pool.shutdown()
        return value
    } catch {
        await pool.shutdown(cancellingPendingJobs: true)
        throw error
    }
}
