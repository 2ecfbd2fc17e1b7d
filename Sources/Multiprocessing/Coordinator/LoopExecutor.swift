import Synchronization

/// Runs tasks on a pool's event-loop thread: ``ProcessPool/eventLoopExecutor``.
///
/// A task that prefers this executor submits its job on the thread that writes it to the
/// worker, and is resumed with the result on the thread that read it, so a round trip crosses
/// two threads (the loop's and the worker's) instead of four.
final class LoopExecutor: TaskExecutor {
    private struct Queue: ~Copyable {
        var jobs: [UnownedJob] = []
        /// Set once the loop has ended: jobs then go to the global executor.
        var closed = false
    }

    private let queue = Mutex(Queue())
    private let loopThread: LoopThread
    private let waker: Waker

    init(loopThread: LoopThread, waker: Waker) {
        self.loopThread = loopThread
        self.waker = waker
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let accepted = queue.withLock { queue -> Bool in
            guard !queue.closed else { return false }
            queue.jobs.append(job)
            return true
        }
        if !accepted {
            // The pool has stopped: its tasks still run, elsewhere.
            globalConcurrentExecutor.enqueue(ExecutorJob(job))
        } else if !loopThread.isCurrent {
            waker.wake()
        }
    }

    /// Whether jobs are waiting (on the loop's thread: then the loop must not sleep).
    var hasQueuedJobs: Bool { queue.withLock { !$0.jobs.isEmpty } }

    /// Runs the jobs queued when it is called, on the loop's thread. Jobs those queue (a task
    /// that yields, tasks that wake each other) wait for the next turn of the loop, so that
    /// such tasks cannot keep the loop from its pipes; the loop does not sleep while any wait.
    func runQueuedJobs() {
        let jobs = queue.withLock { queue -> [UnownedJob] in
            guard !queue.jobs.isEmpty else { return [] }
            defer { queue.jobs = [] }
            return queue.jobs
        }
        for job in jobs { job.runSynchronously(on: asUnownedTaskExecutor()) }
    }

    /// Sends every job, now and from now on, to the global executor: the loop is ending.
    func close() {
        let jobs = queue.withLock { queue -> [UnownedJob] in
            queue.closed = true
            defer { queue.jobs.removeAll() }
            return queue.jobs
        }
        for job in jobs { globalConcurrentExecutor.enqueue(ExecutorJob(job)) }
    }
}

/// Tells whether the calling thread is a given pool's event loop (by a thread-local mark the
/// loop sets on itself), so that work submitted on the loop's own thread does not wake it.
struct LoopThread: Sendable {
    private let address: UInt

    /// Identifies a loop by an object that lives as long as its pool and belongs to it alone.
    init(identifiedBy object: AnyObject) {
        address = UInt(bitPattern: Unmanaged.passUnretained(object).toOpaque())
    }

    /// Marks the calling thread as this pool's loop.
    func markCurrent() {
        ThisProcess.tagCurrentThread(address)
    }

    /// Whether the calling thread is this pool's loop.
    var isCurrent: Bool {
        ThisProcess.currentThreadTag == address
    }
}
