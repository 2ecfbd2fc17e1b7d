/// The state shared between callers (who queue jobs, wait for room, shut the pool down) and the
/// event loop (which sends jobs, reports workers, breaks or finishes the pool): a plain struct
/// kept in a `Mutex`, a state machine whose state is private. Every transition is a mutating
/// method that changes state and returns what to do; continuations are resumed by the caller,
/// outside the lock.
struct SchedulerState {
    enum Lifecycle: Equatable {
        /// Accepting work.
        case running
        /// `shutdown()`: no new work; queued and running jobs finish, then workers exit.
        case draining
        /// `shutdown(cancellingPendingJobs:)`: queued jobs are dropped, running ones stopped.
        case cancelling
        /// Every worker has exited and the event loop has ended.
        case stopped
    }

    private(set) var lifecycle = Lifecycle.running
    private(set) var queue = SliceQueue()
    private(set) var queuedJobs = 0
    private(set) var queuedBytes = 0
    let maximumQueuedJobs: Int
    let maximumQueuedBytes: Int
    /// Set when the pool cannot go on (workers cannot be started, the loop cannot wait): new
    /// work fails at once with this error.
    private(set) var brokenError: ProcessPoolError?
    private var spaceWaiters: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
    private var shutdownWaiters: [CheckedContinuation<Void, Never>] = []
    /// The pids of the live workers, kept by the event loop for ``ProcessPool/workerProcessIDs``.
    private(set) var workerProcessIDs: [Int32] = []
    /// Why the pool keeps fewer workers than it was configured for, and how many: set once,
    /// when a resource limit stopped the first workers' start part of the way.
    private(set) var capacityShortfall: (capacity: Int, error: ProcessPoolError)?
    /// The job names the first worker to say hello announced.
    private(set) var servedJobNames: [String]?
    private var jobNameWaiters: [CheckedContinuation<[String], any Error>] = []
    /// Set by the event loop while every worker is busy with as much work as it may hold: the
    /// loop will look at the queue when one of them reports back, so queuing a job need not
    /// wake it. Saves a wake-up (and a system call) per job when jobs are submitted one by one.
    private(set) var loopWillCheckQueue = false

    init(maximumQueuedJobs: Int, maximumQueuedBytes: Int) {
        self.maximumQueuedJobs = max(1, maximumQueuedJobs)
        self.maximumQueuedBytes = max(1, maximumQueuedBytes)
    }

    var hasSpace: Bool { queuedJobs < maximumQueuedJobs && queuedBytes < maximumQueuedBytes }

    /// Whether callers waiting for room may go on: once the queue has drained to half its
    /// limits, so a producer that filled it goes on for many chunks, not one chunk per wake-up.
    var hasRoomForWaiters: Bool { queuedJobs <= maximumQueuedJobs / 2 && queuedBytes <= maximumQueuedBytes / 2 }

    /// Why new work is refused, if it is.
    var refusal: ProcessPoolError? {
        if let brokenError { return brokenError }
        guard lifecycle == .running else { return ProcessPoolError(.poolShutDown, "the pool is shut down and takes no new jobs") }
        return nil
    }

    enum EnqueueAction {
        /// Queued; `wakeLoop` says whether the event loop must be woken to send it.
        case enqueued(wakeLoop: Bool)
        case refused(ProcessPoolError)
        case mustWait
    }

    /// Queues `slice` if there is room (or if `force`, for work that must not wait).
    mutating func enqueue(_ slice: ChunkSlice, force: Bool = false) -> EnqueueAction {
        if let refusal { return .refused(refusal) }
        // Behind callers already waiting for room, a new one waits too, rather than take the
        // room they are waiting for.
        guard force || (hasSpace && !hasSpaceWaiters) else { return .mustWait }
        queue.append(slice)
        queuedJobs += slice.count
        queuedBytes += slice.byteCount
        return .enqueued(wakeLoop: !loopWillCheckQueue)
    }

    var hasSpaceWaiters: Bool { !spaceWaiters.isEmpty }

    // MARK: Callers waiting

    /// A caller that found the queue full waits for room, unless there is room now, the pool
    /// refuses work, or it was cancelled: then `false`, and it goes on at once.
    ///
    /// - Returns: Whether the continuation was kept, to be resumed by a later transition.
    mutating func waitForSpace(id: UInt64, isCancelled: Bool, _ continuation: CheckedContinuation<Void, any Error>) -> Bool {
        if (hasSpace && !hasSpaceWaiters) || refusal != nil || isCancelled { return false }
        spaceWaiters.append((id, continuation))
        return true
    }

    /// A waiting caller was cancelled: its continuation, if it still waits, to resume with
    /// the cancellation.
    mutating func cancelSpaceWaiter(id: UInt64) -> CheckedContinuation<Void, any Error>? {
        guard let index = spaceWaiters.firstIndex(where: { $0.id == id }) else { return nil }
        return spaceWaiters.remove(at: index).continuation
    }

    /// The waiters to resume now that there is room (or the pool refuses work: they then see
    /// the refusal when they retry).
    private mutating func takeSpaceWaitersIfReady() -> [CheckedContinuation<Void, any Error>] {
        guard !spaceWaiters.isEmpty, hasRoomForWaiters || refusal != nil else { return [] }
        defer { spaceWaiters.removeAll() }
        return spaceWaiters.map(\.continuation)
    }

    /// What to do about a caller asking for the served job names.
    enum JobNamesAction {
        /// Resume it now with this.
        case resume(Result<[String], any Error>)
        /// It waits for the first worker's hello.
        case wait
    }

    /// A caller asks for the job names the workers serve; it waits until a worker says hello
    /// (its continuation is kept when the answer is ``JobNamesAction/wait``).
    mutating func waitForJobNames(_ continuation: CheckedContinuation<[String], any Error>) -> JobNamesAction {
        if let servedJobNames { return .resume(.success(servedJobNames)) }
        if let brokenError { return .resume(.failure(brokenError)) }
        if lifecycle == .stopped { return .resume(.failure(ProcessPoolError(.poolShutDown, "the pool has stopped"))) }
        jobNameWaiters.append(continuation)
        return .wait
    }

    /// A worker said hello: the first one's job names answer every caller waiting for them.
    mutating func workerSaidHello(jobNames: [String]) -> [CheckedContinuation<[String], any Error>] {
        if servedJobNames == nil { servedJobNames = jobNames }
        defer { jobNameWaiters.removeAll() }
        return jobNameWaiters
    }

    // MARK: The pool's life

    /// What to do after a call to shut down.
    enum ShutdownAction {
        /// The pool has stopped already: resume the caller now.
        case resumeNow
        /// The caller waits for the pool to stop; wake the loop to get on with it.
        case wakeLoop
    }

    /// `shutdown()`: no new work; queued jobs still run, unless `cancellingPendingJobs`. The
    /// continuation is kept unless the answer is ``ShutdownAction/resumeNow``.
    mutating func shutdown(cancellingPendingJobs: Bool, _ continuation: CheckedContinuation<Void, Never>) -> ShutdownAction {
        if lifecycle == .stopped { return .resumeNow }
        if cancellingPendingJobs {
            lifecycle = .cancelling
        } else if lifecycle == .running {
            lifecycle = .draining
        }
        shutdownWaiters.append(continuation)
        return .wakeLoop
    }

    /// The pool object was released without a shutdown: its work is cancelled.
    ///
    /// - Returns: Whether the loop must be woken to stop the workers.
    mutating func poolReleased() -> Bool {
        guard lifecycle == .running || lifecycle == .draining else { return false }
        lifecycle = .cancelling
        return true
    }

    /// The pool never got going (its first workers or its thread could not be started).
    mutating func startFailed() {
        lifecycle = .stopped
    }

    /// What a transition that ends work gives back to its caller, to carry out outside the lock.
    struct Release {
        /// Queued jobs to fail.
        var queued: [ChunkSlice] = []
        /// Callers waiting for room, to resume (they retry and see the refusal).
        var spaceWaiters: [CheckedContinuation<Void, any Error>] = []
        /// Callers waiting for the served job names, to resume with the error.
        var jobNameWaiters: [CheckedContinuation<[String], any Error>] = []
        /// Callers waiting for the shutdown to end, to resume.
        var shutdownWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// The pool cannot go on: `error` becomes its answer to new work, and queued jobs and
    /// callers waiting for job names fail with it. Nil if it was broken already.
    mutating func breakPool(with error: ProcessPoolError) -> Release? {
        guard brokenError == nil else { return nil }
        brokenError = error
        var release = Release()
        release.jobNameWaiters = jobNameWaiters
        jobNameWaiters.removeAll()
        release.queued = removeAllQueued()
        release.spaceWaiters = takeSpaceWaitersIfReady()
        return release
    }

    /// Every worker has exited and the loop ends: everything still waiting is released.
    mutating func finish() -> Release {
        lifecycle = .stopped
        var release = Release()
        release.queued = removeAllQueued()
        release.spaceWaiters = takeSpaceWaitersIfReady()
        release.jobNameWaiters = jobNameWaiters
        jobNameWaiters.removeAll()
        release.shutdownWaiters = shutdownWaiters
        shutdownWaiters.removeAll()
        return release
    }

    /// The event loop's list of live workers changed.
    mutating func workersChanged(processIDs: [Int32]) {
        workerProcessIDs = processIDs
    }

    /// The event loop could start only `capacity` workers, because of `error`, and runs on them.
    mutating func capacityReduced(to capacity: Int, because error: ProcessPoolError) {
        capacityShortfall = (capacity, error)
    }

    /// The event loop says whether every worker holds all it may (see ``loopWillCheckQueue``).
    ///
    /// - Returns: Whether the loop must look at the queue again before it sleeps: the flag was
    ///   set until now, so a caller may have queued work after the loop last took from the
    ///   queue without waking it.
    mutating func loopSaturated(_ saturated: Bool) -> Bool {
        let mayHaveMissedWork = loopWillCheckQueue && !saturated && !queue.isEmpty
        loopWillCheckQueue = saturated
        return mayHaveMissedWork
    }

    // MARK: The queue

    /// Puts jobs rescued from a dead worker back at the front.
    mutating func requeueAtFront(_ slices: [ChunkSlice]) {
        guard !slices.isEmpty else { return }
        queue.prepend(slices)
        for slice in slices {
            queuedJobs += slice.count
            queuedBytes += slice.byteCount
        }
    }

    /// Takes the next batch: up to `maximumJobs` jobs (from `limit(jobName)`) and at most
    /// `maximumBytes` bytes counting `overheadPerJob` for each job, but at least one job if any
    /// is queued. Jobs of calls that no longer want results are dropped on the way. Jobs that
    /// need each result reported at once (suspects, jobs with a timeout) travel in batches of
    /// their own kind.
    ///
    /// - Returns: The batch, and the callers waiting for room to resume now that it was taken.
    mutating func takeBatch(
        maximumBytes: Int, overheadPerJob: Int = 0, limit: (_ jobName: String, _ queuedJobs: Int) -> Int
    ) -> (batch: [ChunkSlice], spaceWaiters: [CheckedContinuation<Void, any Error>]) {
        var batch: [ChunkSlice] = []
        var jobs = 0
        var bytes = 0
        var maximumJobs = 0
        while var slice = queue.first {
            guard slice.chunk.sink.isAcceptingResults else {
                _ = queue.removeFirst()
                queuedJobs -= slice.count
                queuedBytes -= slice.byteCount
                continue
            }
            if batch.isEmpty {
                maximumJobs = max(1, limit(slice.chunk.jobName, queuedJobs))
            } else if slice.needsEachResult != batch[0].needsEachResult || jobs >= maximumJobs || bytes >= maximumBytes {
                break
            }
            // Take as many of this slice's jobs as the limits allow (at least one).
            var take = min(slice.count, maximumJobs - jobs)
            func size(_ count: Int) -> Int { slice.chunk.byteCount(of: slice.positions.prefix(count)) + overheadPerJob * count }
            var takenBytes = size(take)
            while take > 1 && bytes + takenBytes > maximumBytes {
                take = max(1, take / 2)
                takenBytes = size(take)
            }
            if !batch.isEmpty && bytes + takenBytes > maximumBytes { break }
            var taken = slice
            taken.positions = slice.positions.prefix(take)
            batch.append(taken)
            jobs += take
            bytes += takenBytes
            queuedJobs -= take
            queuedBytes -= takenBytes - overheadPerJob * take
            if take == slice.count {
                _ = queue.removeFirst()
            } else {
                slice.positions = slice.positions.dropFirst(take)
                queue.replaceFirst(slice)
            }
        }
        return (batch, takeSpaceWaitersIfReady())
    }

    /// Empties the queue, for cancellation: the jobs to fail, and the callers waiting for room
    /// to resume.
    mutating func cancelQueued() -> (queued: [ChunkSlice], spaceWaiters: [CheckedContinuation<Void, any Error>]) {
        (removeAllQueued(), takeSpaceWaitersIfReady())
    }

    private mutating func removeAllQueued() -> [ChunkSlice] {
        queuedJobs = 0
        queuedBytes = 0
        return queue.removeAll()
    }
}
