import Synchronization

/// What a ``ProcessPool`` and its event loop share: the configuration, the scheduler state
/// behind its lock, and the waker that tells the loop to look again.
final class PoolCore: Sendable {
    let configuration: ProcessPoolConfiguration
    let state: Mutex<SchedulerState>
    let waker: Waker
    /// Which thread is the loop's.
    let loopThread: LoopThread
    /// Runs tasks on the loop's thread.
    let executor: LoopExecutor
    private let jobIDs = Atomic<UInt64>(1)
    private let waiterIDs = Atomic<UInt64>(1)

    init(configuration: ProcessPoolConfiguration) throws(SystemCallError) {
        self.configuration = configuration
        state = Mutex(SchedulerState(maximumQueuedJobs: configuration.maximumQueuedJobs, maximumQueuedBytes: configuration.maximumQueuedBytes))
        waker = try Waker()
        loopThread = LoopThread(identifiedBy: waker)
        executor = LoopExecutor(loopThread: loopThread, waker: waker)
    }

    /// Reserves `count` consecutive job ids.
    func reserveJobIDs(_ count: Int) -> UInt64 {
        jobIDs.add(UInt64(count), ordering: .relaxed).oldValue
    }

    /// Queues a chunk, suspending while the queue is full.
    ///
    /// - Throws: ``ProcessPoolError`` if the pool takes no new work; `CancellationError` if the
    ///   task is cancelled while waiting.
    func enqueue(_ chunk: JobChunk) async throws {
        let slice = ChunkSlice(chunk: chunk, positions: 0..<chunk.count)
        while true {
            switch state.withLock({ $0.enqueue(slice) }) {
            case .enqueued(let wakeLoop):
                // On the loop's own thread (a task preferring `executor`), the loop looks at
                // the queue before it next sleeps.
                if wakeLoop && !loopThread.isCurrent { waker.wake() }
                return
            case .refused(let error):
                throw error
            case .mustWait:
                try await waitForSpace()
            }
        }
    }

    private func waitForSpace() async throws {
        let id = waiterIDs.add(1, ordering: .relaxed).oldValue
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let waiting = state.withLock { $0.waitForSpace(id: id, isCancelled: Task.isCancelled, continuation) }
                if !waiting { continuation.resume() }
            }
            try Task.checkCancellation()
        } onCancel: {
            state.withLock { $0.cancelSpaceWaiter(id: id) }?.resume(throwing: CancellationError())
        }
    }

    /// Asks the event loop to drop jobs of calls that no longer want results.
    func noteCancellation() { waker.wake() }
}
