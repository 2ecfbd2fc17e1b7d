import CMultiprocessingShims

/// A task executor backed by one thread the worker owns.
///
/// The worker's serve loop runs with this executor as its preference, so the blocking reads and
/// writes on the protocol pipes happen on this thread rather than on Swift's cooperative pool,
/// and a job's `run` is called without hopping between threads.
final class DedicatedThreadExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: `pending` is only touched with `condition` locked.
    private let condition = ThreadCondition()
    private var pending: [UnownedJob] = []

    init(name: String) {
        // Jobs may recurse deeply; the main thread has 8 MiB.
        startOwnedThread(name: name, stackSize: 16 << 20) {
            // Jobs that start processes (CommandJob) start them from here: see the shim.
            mp_unblock_sigchld_on_this_thread()
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
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
            batch.removeAll(keepingCapacity: true)
        }
    }
}
