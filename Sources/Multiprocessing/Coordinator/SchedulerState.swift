/// The state shared between callers (who queue jobs) and the event loop (which sends them):
/// a plain struct kept in a `Mutex`. Its methods only change state and return what to do;
/// continuations are resumed by the caller, outside the lock.
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

    var lifecycle = Lifecycle.running
    var queue = SliceQueue()
    private(set) var queuedJobs = 0
    private(set) var queuedBytes = 0
    let maximumQueuedJobs: Int
    let maximumQueuedBytes: Int
    /// Set when workers cannot be started: new work fails at once with this error.
    var brokenError: ProcessPoolError?
    private var spaceWaiters: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
    var shutdownWaiters: [CheckedContinuation<Void, Never>] = []
    /// The pids of the live workers, kept by the event loop for ``ProcessPool/workerProcessIDs``.
    var workerProcessIDs: [Int32] = []
    /// The job names the first worker to say hello announced.
    var servedJobNames: [String]?
    var jobNameWaiters: [CheckedContinuation<[String], any Error>] = []
    /// Set by the event loop while every worker is busy with as much work as it may hold: the
    /// loop will look at the queue when one of them reports back, so queuing a job need not
    /// wake it. Saves a wake-up (and a system call) per job when jobs are submitted one by one.
    var loopWillCheckQueue = false

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

    mutating func addSpaceWaiter(id: UInt64, _ continuation: CheckedContinuation<Void, any Error>) {
        spaceWaiters.append((id, continuation))
    }

    mutating func removeSpaceWaiter(id: UInt64) -> CheckedContinuation<Void, any Error>? {
        guard let index = spaceWaiters.firstIndex(where: { $0.id == id }) else { return nil }
        return spaceWaiters.remove(at: index).continuation
    }

    /// The waiters to resume now that there is room (or the pool refuses work: they then see
    /// the refusal when they retry).
    mutating func takeSpaceWaitersIfReady() -> [CheckedContinuation<Void, any Error>] {
        guard !spaceWaiters.isEmpty, hasRoomForWaiters || refusal != nil else { return [] }
        defer { spaceWaiters.removeAll() }
        return spaceWaiters.map(\.continuation)
    }

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
    mutating func takeBatch(maximumBytes: Int, overheadPerJob: Int = 0, limit: (_ jobName: String, _ queuedJobs: Int) -> Int) -> [ChunkSlice] {
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
        return batch
    }

    /// Empties the queue, for cancellation or a broken pool.
    mutating func removeAllQueued() -> [ChunkSlice] {
        queuedJobs = 0
        queuedBytes = 0
        return queue.removeAll()
    }
}
