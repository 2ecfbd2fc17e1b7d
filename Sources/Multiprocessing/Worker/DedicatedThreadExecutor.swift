/// A serial executor backed by one thread the worker owns.
///
/// The worker's serve loop is isolated to ``WorkerIsolation``, whose executor this is, so the
/// blocking reads and writes on the protocol pipes happen on this thread rather than on Swift's
/// cooperative pool, and a job's `run` is called without hopping between threads. Being the
/// loop's actor executor, not a task-executor preference, matters for tiny jobs: the runtime
/// takes a task's status lock on every executor check while a preference is set.
final class DedicatedThreadExecutor: SerialExecutor, @unchecked Sendable {
    // @unchecked: `pending` is only touched with `condition` locked.
    private let condition = ThreadCondition()
    private var pending: [UnownedJob] = []

    /// - Throws: ``SystemCallError`` if the thread cannot be started.
    init(name: String) throws(SystemCallError) {
        // Jobs may recurse deeply; the main thread has 8 MiB.
        try startOwnedThread(name: name, stackSize: 16 << 20) {
            // Jobs that start processes (CommandJob) start them from here: see the shim.
            ThisProcess.unblockChildSignalOnThisThread()
            self.runJobs()  // the thread keeps the executor alive for good
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        pending.append(job)
        condition.signal()
        condition.unlock()
    }

    private func runJobs() -> Never {
        var batch: [UnownedJob] = []
        while true {
            condition.lock()
            while pending.isEmpty { condition.wait() }
            swap(&batch, &pending)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedSerialExecutor()) }
            batch.removeAll(keepingCapacity: true)
        }
    }
}

/// The isolation of a worker's serve loop: an actor whose executor is the worker's own thread.
actor WorkerIsolation {
    private let executor: DedicatedThreadExecutor

    init(executor: DedicatedThreadExecutor) { self.executor = executor }

    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Runs `loop` on the worker's thread; it and the `nonisolated(nonsending)` jobs it calls
    /// inherit this isolation.
    func serve(_ loop: WorkerLoop) async {
        await loop.run()
    }
}
