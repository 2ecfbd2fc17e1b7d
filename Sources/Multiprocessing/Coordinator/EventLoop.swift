#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The pool's I/O thread: one `poll` loop over every worker's pipes and exit descriptor.
///
/// Every blocking system call of the coordinator happens here, on a thread the pool owns; the
/// callers' tasks only take the scheduler lock and await continuations. Workers are spawned
/// from this thread too, because Linux delivers a worker's parent-death signal when the
/// *thread* that spawned it ends: this one lives exactly as long as the pool.
final class EventLoop: @unchecked Sendable {
    // @unchecked: after `start`, every stored property is touched only on the loop's thread.
    let core: PoolCore
    var workers: [WorkerConnection] = []
    private var pollSet = PollSet()
    private var nextBatchID: UInt64 = 1
    /// Measured nanoseconds per job, by job name (an exponentially weighted average).
    private var costPerJob: [String: Double] = [:]
    /// Where each result of the frame being delivered starts; kept to avoid an allocation per frame.
    var resultOffsets: [Int] = []
    /// The bytes of a job's result, on average, by job name: large outputs take time to send
    /// back, which a waiting batch can overlap.
    private var outputBytesPerJob: [String: Double] = [:]
    /// Workers that died before their hello, since the last one that completed it.
    private var consecutiveStartFailures = 0
    private var lastStartFailure: ProcessPoolError?
    /// Workers to start once `respawnAt` has passed (after start-up failures, with backoff).
    var pendingRespawns = 0
    var respawnAt: ContinuousClock.Instant?
    let clock = ContinuousClock()
    private var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    /// Copies workers' stderr to ours, off this thread; nil when not forwarding.
    let errorForwarder: ErrorStreamForwarder?

    /// A batch aims at this much work, so that per-batch costs (a write, a read, two wake-ups)
    /// vanish next to the jobs, while the last batches of a call still spread over all workers.
    let targetBatchNanoseconds: Double
    /// Batches in flight per worker: one running, one waiting in the pipe.
    static let pipelineDepth = 2
    /// How long the loop polls without sleeping when an answer is due (see `answerIsDueSoon`).
    static let spinDuration = Duration.microseconds(50)
    static let spinNanoseconds = 50_000.0
    /// Payloads at least this large are written from their chunk rather than copied.
    static let sharedPayloadThreshold = 64 * 1024
    /// A pessimistic pipe transfer rate (500 MB/s), to tell when sending a batch takes about
    /// as long as running it.
    static let nanosecondsPerByteSent = 2.0
    static let maximumBatchBytes = 4 << 20
    /// The most a job adds to a jobs frame besides its payload: index and length varints, codec.
    static let jobHeaderBytes = 16
    /// A batch must fit in one frame, whatever the configured frame limit.
    private var maximumBatchBytes: Int {
        min(Self.maximumBatchBytes, WireProtocol.maximumPayloadSize(inFramesOf: core.configuration.maximumFrameSize))
    }
    /// After this many workers in a row fail to start (no handshake, or no spawn) while no
    /// other worker runs, the pool gives up: queued jobs fail and new work is refused.
    static let startFailureLimit = 5
    /// The wait before the next start after `n` failures in a row: 10 ms, doubling, at most 2 s.
    static func respawnBackoff(afterFailures failures: Int) -> Duration {
        .milliseconds(min(2_000, 10 << min(failures - 1, 10)))
    }
    /// How long a worker may take to exit after its input is closed or it is sent SIGTERM.
    static let terminationGrace: Duration = .seconds(2)

    init(core: PoolCore) {
        self.core = core
        let (seconds, attoseconds) = core.configuration.targetBatchDuration.components
        targetBatchNanoseconds = max(1_000, Double(seconds) * 1e9 + Double(attoseconds) / 1e9)
        errorForwarder = core.configuration.forwardsWorkerStandardError ? ErrorStreamForwarder() : nil
    }

    /// Starts the loop's thread; `started` is called on it once the first workers are spawned
    /// (with the error if they could not be).
    func start(started: @escaping @Sendable (ProcessPoolError?) -> Void) {
        startOwnedThread(name: "mp-pool-loop") { [self] in
            // A worker that dies makes our next write to it raise SIGPIPE on this thread;
            // blocked here, the write just fails with EPIPE and the exit is handled as usual.
            blockBrokenPipeSignal()
            core.loopThread.markCurrent()
            let error = spawnInitialWorkers()
            started(error)
            if error == nil { runLoop() }
            finish()
            core.executor.close()
        }
    }

    private func spawnInitialWorkers() -> ProcessPoolError? {
        for _ in 0..<max(1, core.configuration.workerCount) {
            do {
                addWorker(try spawnWorker())
            } catch {
                for worker in workers { worker.process.signalGroup(SIGKILL) }
                for worker in workers {
                    _ = try? worker.process.reap()
                    worker.closeAll()
                }
                workers.removeAll()
                publishWorkerProcessIDs()
                core.state.withLock { $0.lifecycle = .stopped }
                return error
            }
        }
        return nil
    }

    func addWorker(_ worker: WorkerConnection) {
        workers.append(worker)
        publishWorkerProcessIDs()
    }

    func removeWorker(_ worker: WorkerConnection) {
        workers.removeAll { $0 === worker }
        publishWorkerProcessIDs()
    }

    private func publishWorkerProcessIDs() {
        let pids = workers.map(\.pid)
        core.state.withLock { $0.workerProcessIDs = pids }
    }

    // MARK: The loop

    private func runLoop() {
        while true {
            core.executor.runQueuedJobs()
            spawnDueWorkers()
            maintainWorkerCount()
            dispatchWork()
            if advanceLifecycle() { return }
            let timeout = core.executor.hasQueuedJobs ? 0 : pollTimeout()
            pollSet.removeAll()
            pollSet.add(core.waker.descriptor, .readable)
            var slots: [(worker: WorkerConnection, output: Int?, error: Int?, input: Int?, exit: Int?)] = []
            for worker in workers {
                let output = worker.outputEnded ? nil : pollSet.add(worker.output, .readable)
                let error = worker.errorOutputEnded ? nil : pollSet.add(worker.errorOutput, .readable)
                let input = (worker.pendingOutgoingBytes > 0 && !worker.inputClosed) ? pollSet.add(worker.input, .writable) : nil
                let exit = worker.process.exitDescriptor.map { pollSet.add($0, .readable) }
                slots.append((worker, output, error, input, exit))
            }
            do {
                // No spin when something is due now (queued tasks, a deadline).
                if timeout != 0, let due = workerWithAnswerDueSoon() {
                    switch try readWhileSpinning(from: due) {
                    case .readFromWorker, .eventsReady:
                        // Handled below like any wake-up, deadlines included: the clock's
                        // duties must not wait for a spin that keeps finding answers.
                        break
                    case .spinEnded:
                        try pollSet.wait(timeoutMilliseconds: timeout)
                    }
                } else {
                    try pollSet.wait(timeoutMilliseconds: timeout)
                }
            } catch {
                fatalError("multiprocessing: the pool's poll loop failed: \(error)")
            }
            if !pollSet.events(at: 0).isEmpty { core.waker.drain() }
            for slot in slots {
                let worker = slot.worker
                if let index = slot.output, !pollSet.events(at: index).isEmpty { readOutput(of: worker) }
                if let index = slot.error, !pollSet.events(at: index).isEmpty { readErrorOutput(of: worker) }
                if let index = slot.input, !pollSet.events(at: index).isEmpty, !worker.flushOutgoing() {
                    // Its stdin is broken: the worker is gone or going; its exit will be seen.
                    worker.inputBroke()
                }
                if worker.state == .stopping && worker.inFlight.isEmpty && worker.pendingOutgoingBytes == 0 && !worker.inputClosed {
                    // Retiring, or asked to exit while bytes were still unsent: it is idle now.
                    worker.closeInput()
                    if worker.killDeadline == nil { worker.killDeadline = clock.now + core.configuration.terminationGracePeriod }
                }
                let exited: Bool
                if let index = slot.exit {
                    exited = !pollSet.events(at: index).isEmpty
                } else {
                    exited = worker.outputEnded && worker.errorOutputEnded
                }
                if exited { handleExit(of: worker) }
            }
            enforceKillDeadlines()
            enforceTimeoutsAndCancellations()
        }
    }

    private func pollTimeout() -> Int32 {
        var deadlines = workers.compactMap(\.killDeadline) + workers.compactMap(jobDeadline(of:)) + workers.compactMap(handshakeDeadline(of:))
        if pendingRespawns > 0, let respawnAt { deadlines.append(respawnAt) }
        if let idleTimeout = core.configuration.idleTimeout {
            deadlines += workers.compactMap { $0.state == .ready ? $0.idleSince.map { $0 + idleTimeout } : nil }
        }
        guard let nearest = deadlines.min() else { return -1 }
        let remaining = nearest - clock.now
        if remaining <= .zero { return 0 }
        let (seconds, attoseconds) = remaining.components
        return Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
    }

    /// The running job and when it must end, for a worker running a job with a timeout.
    private func jobDeadline(of worker: WorkerConnection) -> ContinuousClock.Instant? {
        guard worker.termination == nil, let started = worker.runningSince, let batch = worker.inFlight.first,
              batch.flags.contains(.reportEachResult), batch.resolvedCount < batch.count,
              let timeout = batch.nextUnresolved().slice.chunk.timeout else { return nil }
        return started + timeout
    }

    /// When a starting worker must have sent its hello.
    private func handshakeDeadline(of worker: WorkerConnection) -> ContinuousClock.Instant? {
        guard worker.jobNames.isEmpty, worker.violation == nil, worker.termination == nil else { return nil }
        return worker.spawnedAt + core.configuration.handshakeTimeout
    }

    /// Terminates workers whose running job is over its time, or whose jobs nobody wants any
    /// more (a cancelled future, a failed or abandoned map), and workers that never said hello.
    private func enforceTimeoutsAndCancellations() {
        let now = clock.now
        for worker in workers {
            if let deadline = handshakeDeadline(of: worker), deadline <= now {
                protocolViolation(by: worker, "no hello within \(Self.format(core.configuration.handshakeTimeout)) of starting: is the executable a worker?")
            }
        }
        if let idleTimeout = core.configuration.idleTimeout {
            let minimum = core.configuration.minimumWorkerCount ?? core.configuration.workerCount
            var live = workers.count { $0.state != .stopping }
            for worker in workers where live > minimum && worker.state == .ready && worker.inFlight.isEmpty {
                if let idleSince = worker.idleSince, idleSince + idleTimeout <= now {
                    retire(worker)
                    live -= 1
                }
            }
        }
        for worker in workers where worker.termination == nil && worker.violation == nil {
            guard let batch = worker.inFlight.first, batch.resolvedCount < batch.count else { continue }
            if let deadline = jobDeadline(of: worker), deadline <= now, let started = worker.runningSince,
               let timeout = batch.nextUnresolved().slice.chunk.timeout {
                terminate(worker, because: .timedOut(ran: now - started, limit: timeout))
            } else if batch.hasUnwantedJob {
                terminate(worker, because: .cancelled)
            }
        }
    }

    /// Replaces a worker in good order: it takes no more jobs, finishes what it has, and exits
    /// when its input is closed; `maintainWorkerCount` starts its successor.
    func retire(_ worker: WorkerConnection) {
        guard !worker.isRetiring else { return }
        worker.isRetiring = true
        worker.state = .stopping
    }

    /// Keeps the pool at `workerCount` live workers while there is work (starting them on
    /// demand after an idle shutdown), and at least `minimumWorkerCount` otherwise.
    private func maintainWorkerCount() {
        let (lifecycle, queueIsEmpty, broken) = core.state.withLock { ($0.lifecycle, $0.queue.isEmpty, $0.brokenError != nil) }
        guard !broken, lifecycle == .running || (lifecycle == .draining && !queueIsEmpty) else { return }
        let configuration = core.configuration
        let live = workers.count { $0.state != .stopping } + pendingRespawns
        let busy = !queueIsEmpty || workers.contains { !$0.inFlight.isEmpty }
        let minimum = min(configuration.workerCount, configuration.minimumWorkerCount ?? configuration.workerCount)
        let target = busy ? max(1, configuration.workerCount) : max(minimum, 0)
        guard live < target else { return }
        for _ in live..<target {
            scheduleReplacement()
            if core.state.withLock({ $0.brokenError != nil }) { return }
        }
    }

    /// Starts the termination sequence: the configured signal to the worker's process group,
    /// then SIGKILL when the grace period is over.
    func terminate(_ worker: WorkerConnection, because reason: WorkerConnection.TerminationReason) {
        worker.termination = reason
        worker.state = .stopping
        worker.process.signalGroup(core.configuration.terminationSignal)
        worker.killDeadline = clock.now + core.configuration.terminationGracePeriod
    }

    private func enforceKillDeadlines() {
        let now = clock.now
        for worker in workers {
            if let deadline = worker.killDeadline, deadline <= now {
                worker.process.signalGroup(SIGKILL)
                worker.killDeadline = nil
            }
        }
    }

    /// Moves the pool through draining or cancelling; returns true when the loop should end.
    private func advanceLifecycle() -> Bool {
        let (lifecycle, queueIsEmpty) = core.state.withLock { ($0.lifecycle, $0.queue.isEmpty) }
        switch lifecycle {
        case .running:
            return false
        case .draining:
            if queueIsEmpty {
                pendingRespawns = 0
                for worker in workers where worker.isIdle && worker.state != .stopping {
                    requestExit(of: worker)
                }
            }
        case .cancelling:
            pendingRespawns = 0
            failQueued(with: ProcessPoolError(.poolShutDown, "the pool was shut down before the job ran"))
            for worker in workers where worker.state != .stopping {
                if worker.inFlight.isEmpty {
                    requestExit(of: worker)
                } else if worker.termination == nil {
                    terminate(worker, because: .cancelled)
                }
            }
        case .stopped:
            break
        }
        return workers.isEmpty && pendingRespawns == 0
    }

    /// Starts the workers whose backoff has passed.
    private func spawnDueWorkers() {
        guard pendingRespawns > 0, let due = respawnAt, due <= clock.now else { return }
        guard core.state.withLock({ $0.brokenError == nil }) else {
            pendingRespawns = 0
            return
        }
        pendingRespawns -= 1
        respawnAt = pendingRespawns > 0 ? clock.now : nil
        startReplacement()
    }

    /// Closes the worker's input: it finishes what it has and exits on end of stream.
    private func requestExit(of worker: WorkerConnection) {
        worker.state = .stopping
        if worker.pendingOutgoingBytes == 0 { worker.closeInput() }
        worker.killDeadline = clock.now + Self.terminationGrace
    }

    private func finish() {
        let waiters = core.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.lifecycle = .stopped
            defer { state.shutdownWaiters.removeAll() }
            return state.shutdownWaiters
        }
        // Anything still queued can no longer run.
        failQueued(with: ProcessPoolError(.poolShutDown, "the pool was shut down before the job ran"))
        // Every worker's descriptors are closed by now; close ours before anyone is told the
        // pool has stopped, so a caller counting descriptors sees none left.
        core.waker.close()
        errorForwarder?.stop()
        let nameWaiters = core.state.withLock { state in
            defer { state.jobNameWaiters.removeAll() }
            return state.jobNameWaiters
        }
        for waiter in nameWaiters { waiter.resume(throwing: ProcessPoolError(.poolShutDown, "the pool stopped before a worker said hello")) }
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Dispatch

    private func dispatchWork() {
        for worker in workers where worker.state == .ready {
            while worker.state == .ready && worker.inFlight.count < pipelineDepth(of: worker) && worker.pendingOutgoingBytes < Self.maximumBatchBytes {
                let workerCount = max(1, workers.count)
                let allowance = core.configuration.maximumJobsPerWorker.map { max(1, $0 - worker.jobsSent) } ?? Int.max
                let (slices, waiters) = core.state.withLock { state in
                    let batch = state.takeBatch(maximumBytes: maximumBatchBytes, overheadPerJob: Self.jobHeaderBytes) { jobName, queuedJobs in
                        min(allowance, self.batchLimit(jobName: jobName, queuedJobs: queuedJobs, workerCount: workerCount))
                    }
                    return (batch, state.takeSpaceWaitersIfReady())
                }
                for waiter in waiters { waiter.resume() }
                guard !slices.isEmpty else { break }
                send(slices, to: worker)
                if let limit = core.configuration.maximumJobsPerWorker, worker.jobsSent >= limit {
                    retire(worker)
                }
            }
            if worker.pendingOutgoingBytes > 0 && !worker.flushOutgoing() {
                worker.inputBroke()
            }
        }
        // Every worker (all of them started) holding all it may: the next report from one of
        // them brings the loop back here, so new jobs need not wake it.
        let saturated = !workers.isEmpty && workers.count >= core.configuration.workerCount
            && workers.allSatisfy { $0.state == .ready && $0.inFlight.count >= pipelineDepth(of: $0) }
        core.state.withLock { $0.loopWillCheckQueue = saturated }
    }

    /// A worker running a batch measured to take less than the spin, if there is one: then the
    /// loop looks for its answer before going to sleep.
    private func workerWithAnswerDueSoon() -> WorkerConnection? {
        workers.first { worker in
            guard let running = worker.inFlight.first, let cost = costPerJob[running.nextUnresolved().slice.chunk.jobName] else { return false }
            return cost * Double(running.count - running.resolvedCount) < Self.spinNanoseconds
        }
    }

    /// Spins for up to ``spinDuration`` waiting for `worker`'s answer: waking a sleeping thread
    /// costs tens of microseconds here, so when an answer is due within that time, looking for
    /// it is cheaper. Each try is the read itself, one system call that brings the bytes when
    /// they are there (polling would take a `poll` over every descriptor, then the read). Every
    /// eighth round it polls all descriptors, so nothing else waits on the spin, and yields the
    /// core in case the worker shares it.
    private func readWhileSpinning(from worker: WorkerConnection) throws(SystemCallError) -> SpinOutcome {
        let end = clock.now + Self.spinDuration
        var round = 0
        repeat {
            if !worker.outputEnded && worker.violation == nil && readOutput(of: worker) { return .readFromWorker }
            round &+= 1
            if round & 7 == 0 {
                if try pollSet.wait(timeoutMilliseconds: 0) > 0 { return .eventsReady }
                sched_yield()
            }
        } while clock.now < end
        return .spinEnded
    }

    private enum SpinOutcome {
        /// It read (and handled) what the worker sent; `pollSet` holds no events (its
        /// descriptors were added since its last wait, or that wait found none).
        case readFromWorker
        /// `pollSet` has events to handle.
        case eventsReady
        /// Nothing came; the caller waits on `pollSet`.
        case spinEnded
    }

    /// A second batch waits in the pipe only behind a batch known to be short: that hides the
    /// round trip between tiny batches, while long jobs (a command, a chunk of work) go to
    /// whichever worker is free first instead of queueing behind a busy one. Behind a batch
    /// whose inputs take about as long to send as to process (large payloads), the next one is
    /// sent too, so that the transfer overlaps the work.
    private func pipelineDepth(of worker: WorkerConnection) -> Int {
        guard let running = worker.inFlight.first else { return 1 }
        let jobName = running.nextUnresolved().slice.chunk.jobName
        guard let cost = costPerJob[jobName] else { return 1 }
        let work = cost * Double(running.count)
        let bytes = Double(running.byteCount) + Double(running.count) * (outputBytesPerJob[jobName] ?? 0)
        let transfer = bytes * Self.nanosecondsPerByteSent
        guard work < targetBatchNanoseconds * 2 || work < transfer else { return 1 }
        return Self.pipelineDepth
    }

    private func batchLimit(jobName: String, queuedJobs: Int, workerCount: Int) -> Int {
        if let fixed = core.configuration.batchSize { return max(1, fixed) }
        // Until a job of this kind has been timed, send one to time it.
        guard let cost = costPerJob[jobName] else { return 1 }
        let byCost = Int(targetBatchNanoseconds / max(cost, 1))
        // Leave work for every worker's pipeline, so the end of a call is not one long batch.
        let bySpread = (queuedJobs + Self.pipelineDepth * workerCount - 1) / (Self.pipelineDepth * workerCount)
        return max(1, min(byCost, bySpread, 1 << 16))
    }

    private func send(_ slices: [ChunkSlice], to worker: WorkerConnection) {
        // Jobs the worker does not serve fail here, without a round trip.
        var sendable: [ChunkSlice] = []
        var unknown: [ChunkSlice] = []
        for slice in slices {
            if worker.jobIndexByName[slice.chunk.jobName] != nil { sendable.append(slice) } else { unknown.append(slice) }
        }
        for slice in unknown {
            var error = ProcessPoolError(.unknownJob, "no worker serves a job named \"\(slice.chunk.jobName)\"")
            error.availableJobNames = worker.jobNames
            error.workerProcessID = worker.pid
            deliverFailure(error, to: slice)
        }
        guard !sendable.isEmpty else { return }
        let flags: BatchFlags = sendable[0].needsEachResult ? .reportEachResult : []
        let batch = InFlightBatch(id: nextBatchID, flags: flags, slices: sendable)
        nextBatchID += 1
        let frame = JobsFrameWriter(batchID: batch.id, flags: flags, count: batch.count, into: &worker.outgoing)
        var externalBytes = 0
        for slice in sendable {
            let jobIndex = worker.jobIndexByName[slice.chunk.jobName]!
            // Runs of small payloads are copied into the frame in one pass each; a large one
            // is sent from the chunk itself (writev), not copied into the buffer.
            var position = slice.positions.lowerBound
            while position < slice.positions.upperBound {
                position = slice.chunk.appendJobs(
                    position..<slice.positions.upperBound, jobIndex: jobIndex, largeThreshold: Self.sharedPayloadThreshold, to: frame, in: &worker.outgoing)
                guard position < slice.positions.upperBound else { break }
                let range = slice.chunk.payloadRange(at: position)
                frame.appendHeader(jobIndex: jobIndex, codec: slice.chunk.codec.rawValue, payloadSize: range.count, into: &worker.outgoing)
                worker.queueShared(slice.chunk, range)
                externalBytes += range.count
                position += 1
            }
        }
        do {
            try frame.end(into: &worker.outgoing, externalBytes: externalBytes, maximumFrameSize: core.configuration.maximumFrameSize)
        } catch {
            worker.dropShared(from: frame.start)
            // Cannot happen for one job (inputs are checked against the limit when encoded),
            // and batches stay far below it; fail the jobs rather than the pool.
            for slice in sendable { deliverFailure(ProcessPoolError(.encodingFailed, "\(error)"), to: slice) }
            return
        }
        if worker.inFlight.isEmpty { worker.runningSince = clock.now }
        worker.inFlight.append(batch)
        worker.jobsSent += batch.count
        worker.idleSince = nil
    }

    // MARK: Failing queued work

    func failQueued(with error: ProcessPoolError) {
        let (slices, waiters) = core.state.withLock { state in
            (state.removeAllQueued(), state.takeSpaceWaitersIfReady())
        }
        for waiter in waiters { waiter.resume() }
        for slice in slices { deliverFailure(error, to: slice) }
    }

    func deliverFailure(_ error: ProcessPoolError, to slice: ChunkSlice) {
        slice.chunk.sink.deliver(ResultRun(
            firstIndex: slice.inputIndex(at: slice.positions.lowerBound),
            firstJobID: slice.jobID(at: slice.positions.lowerBound),
            jobName: slice.chunk.jobName,
            outcomes: Array(repeating: .failed(error), count: slice.count)))
    }

    // MARK: Reading

    func readChunk(from descriptor: FileDescriptor) -> Int? {
        let result = readBuffer.withUnsafeMutableBytes { buffer in
            Result { () throws(SystemCallError) in try descriptor.read(into: buffer) }
        }
        switch result {
        case .success(.transferred(let count)): return count
        case .success(.wouldBlock): return nil
        case .failure: return 0  // treat a broken pipe like its end
        }
    }

    func withReadBuffer(_ body: (UnsafeRawBufferPointer) -> Void) {
        readBuffer.withUnsafeBytes(body)
    }

    /// Counts a failed start; after `startFailureLimit` in a row with no working worker left,
    /// gives up at once (rather than at the next respawn, which a pending one would skip).
    func noteStartFailure(_ error: ProcessPoolError) {
        consecutiveStartFailures += 1
        lastStartFailure = error
        let anyWorking = workers.contains { !$0.jobNames.isEmpty && $0.state != .stopping }
        if workersCannotStart && !anyWorking {
            pendingRespawns = 0
            respawnAt = nil
            breakPool(with: error)
        }
    }

    func noteStartSuccess() {
        consecutiveStartFailures = 0
    }

    var workersCannotStart: Bool { consecutiveStartFailures >= Self.startFailureLimit }
    var lastFailureCount: Int { consecutiveStartFailures }
    var lastStartFailureError: ProcessPoolError? { lastStartFailure }

    func recordCost(jobName: String, count: Int, elapsedNanoseconds: UInt64, resultBytes: Int) {
        guard count > 0 else { return }
        let sample = Double(elapsedNanoseconds) / Double(count)
        let bytes = Double(resultBytes) / Double(count)
        if let previous = costPerJob[jobName] {
            costPerJob[jobName] = previous * 0.7 + sample * 0.3
            outputBytesPerJob[jobName] = (outputBytesPerJob[jobName] ?? bytes) * 0.7 + bytes * 0.3
        } else {
            costPerJob[jobName] = sample
            outputBytesPerJob[jobName] = bytes
        }
    }
}
