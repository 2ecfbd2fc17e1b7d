/// The pool's I/O thread: one `poll` loop over every worker's connection.
///
/// Every blocking system call of the coordinator happens here, on a thread the pool owns; the
/// callers' tasks only take the scheduler lock and await continuations. Workers are spawned
/// from this thread too, because Linux delivers a worker's parent-death signal when the
/// *thread* that spawned it ends: this one lives exactly as long as the pool.
///
/// The loop's work is split by concern: this file runs the loop (poll, spin, wake-ups);
/// `EventLoop+Dispatch.swift` sends queued jobs (sized by ``BatchSizer``);
/// `EventLoop+Inbound.swift` turns what workers send into results for the callers' sinks;
/// `EventLoop+Exits.swift` deals with a worker's exit and its jobs (``RescuePlan``); and
/// `EventLoop+Supervision.swift` starts, stops and replaces workers (``RespawnSchedule``).
final class EventLoop: @unchecked Sendable {
    // @unchecked: after `start`, every stored property is touched only on the loop's thread.
    let core: PoolCore
    private(set) var workers: [PooledWorker] = []
    private var pollSet = PollSet()
    var nextBatchID: UInt64 = 1
    /// How big batches are, from measured job costs.
    var batchSizer: BatchSizer
    /// Where each result of the frame being delivered starts; kept to avoid an allocation per frame.
    var resultOffsets: [Int] = []
    /// Replacements for workers that failed to start, and when to try again.
    var respawns = RespawnSchedule()
    /// How many workers the pool keeps: the configured count, or fewer when a resource limit
    /// stopped the first start part of the way (see ``spawnInitialWorkers()``).
    private(set) var capacity: Int
    let clock = ContinuousClock()
    /// Scratch space for reads of diagnostics.
    var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    /// Copies workers' stderr to ours, off this thread; nil when not forwarding.
    let errorForwarder: ErrorStreamForwarder?

    /// How long the loop polls without sleeping when an answer is due (see
    /// ``BatchSizer/answerIsDueSoon(from:)``).
    static let spinDuration = Duration.microseconds(50)

    /// The machines workers run on: the configuration's hosts, or this machine alone.
    let hosts: [WorkerHost]
    /// Each host's connection, nil for this machine; started with the loop.
    let links: [HostLink?]
    /// The number the next remote worker's channel gets.
    var nextChannel: UInt32 = 1

    /// - Throws: ``SystemCallError`` if the thread that forwards workers' stderr cannot start.
    init(core: PoolCore) throws(SystemCallError) {
        self.core = core
        let configuration = core.configuration
        hosts = configuration.hosts.isEmpty ? [.local(slots: max(1, configuration.workerCount))] : configuration.hosts
        capacity = hosts.reduce(0) { $0 + $1.slots }
        let program = Self.workerProgram(configuration)
        let deploymentSource = program.map { DeploymentSource(path: $0.executable) }
        var links: [HostLink?] = []
        for host in hosts {
            guard !host.isLocal else {
                links.append(nil)
                continue
            }
            links.append(HostLink(
                name: host.description, slots: host.slots,
                makeCommand: { deployed in
                    host.agentCommand(executable: program?.executable ?? "", arguments: program?.arguments ?? [], deployed: deployed)
                },
                deploySource: host.workerCache == nil ? nil : deploymentSource,
                callbackPeer: host.callbackPeer,
                heartbeatTimeout: configuration.hostTimeout, connectTimeout: configuration.hostConnectTimeout,
                report: { [handler = configuration.hostEventHandler] status, retryIn in
                    switch status {
                    case .up: handler?(.up(host))
                    case .down(let reason, _): handler?(.down(host, reason: reason, retryIn: retryIn))
                    case .connecting, .stopped: break
                    }
                }))
        }
        self.links = links
        batchSizer = BatchSizer(
            targetBatchDuration: core.configuration.targetBatchDuration, fixedBatchSize: core.configuration.batchSize,
            spinDuration: Self.spinDuration)
        errorForwarder = core.configuration.forwardsWorkerStandardError ? try ErrorStreamForwarder() : nil
    }

    /// Starts the loop's thread; `started` is called on it once the first workers are spawned
    /// (with the error if they could not be), or here if the thread cannot be started.
    func start(started: @escaping @Sendable (ProcessPoolError?) -> Void) {
        do {
            try startOwnedThread(name: "mp-pool-loop") { [self] in
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
        } catch {
            errorForwarder?.stop()
            core.waker.close()
            core.executor.close()
            core.state.withLock { $0.startFailed() }
            started(ProcessPoolError(systemCallFailure: error, "cannot start the pool's I/O thread"))
        }
    }

    /// Starts the configured number of workers. If a resource limit (processes, descriptors,
    /// memory) stops it after at least one has started, the pool runs on those: a pool asked
    /// for more workers than the machine allows still does its work, and says so through
    /// ``ProcessPool/capacityShortfall``. Any other failure, or a first worker that cannot
    /// start, fails the pool.
    private func spawnInitialWorkers() -> ProcessPoolError? {
        if let error = connectHosts() {
            core.state.withLock { $0.startFailed() }
            return error
        }
        for _ in 0..<capacity {
            do {
                guard let worker = try spawnWorker() else { break }  // the other hosts are down
                addWorker(worker)
            } catch {
                if !workers.isEmpty, let errno = error.errno, errno.meansResourceLimit {
                    keepPartOfWorkers(errno == .wouldBlock ? workers.count / 4 : workers.count / 2, because: error)
                    return nil
                }
                for worker in workers { worker.connection.signal(Signal.kill) }
                for worker in workers { _ = worker.connection.finish() }
                workers.removeAll()
                publishWorkerProcessIDs()
                core.state.withLock { $0.startFailed() }
                return error
            }
        }
        return nil
    }

    /// Runs on `count` (at least one) of the workers started so far and stops the rest, after a
    /// start failed on a resource limit: what was left of the limit is kept for the workers'
    /// own threads and the processes their jobs start, and for the coordinator's descriptors.
    /// A worker counts a process and two threads against the per-user process limit
    /// (`EAGAIN`), and a command it runs one or two more, so a quarter of those that could be
    /// started leaves room for all of them; a descriptor limit keeps half.
    private func keepPartOfWorkers(_ count: Int, because error: ProcessPoolError) {
        capacity = max(1, count)
        let extra = workers[capacity...]
        for worker in extra { worker.connection.signal(Signal.kill) }
        for worker in extra { _ = worker.connection.finish() }
        workers.removeLast(extra.count)
        publishWorkerProcessIDs()
        core.state.withLock { $0.capacityReduced(to: capacity, because: error) }
    }

    func addWorker(_ worker: PooledWorker) {
        workers.append(worker)
        publishWorkerProcessIDs()
    }

    func removeWorker(_ worker: PooledWorker) {
        workers.removeAll { $0 === worker }
        publishWorkerProcessIDs()
    }

    private func publishWorkerProcessIDs() {
        // Only this machine's: the others' pids mean nothing here (and must never be signalled).
        let pids = workers.filter { $0.connection.hostName == nil }.map(\.pid)
        core.state.withLock { $0.workersChanged(processIDs: pids) }
    }

    // MARK: The loop

    private func runLoop() {
        var slots: [(worker: PooledWorker, slots: ConnectionSlots)] = []
        while true {
            core.executor.runQueuedJobs()
            spawnDueWorkers()
            maintainWorkerCount()
            dispatchWork()
            if advanceLifecycle() { return }
            // Remote hosts' timers first: a host found lost here has its workers' ends ready
            // for this round.
            for case let link? in links { link.prepare() }
            let timeout = core.executor.hasQueuedJobs || hasBufferedEvents ? 0 : pollTimeout()
            pollSet.removeAll()
            _ = core.waker.add(to: &pollSet)
            for case let link? in links { link.register(in: &pollSet) }
            slots.removeAll(keepingCapacity: true)
            for worker in workers {
                let wantsToWrite = worker.pendingOutgoingBytes > 0 && !worker.inputClosed
                slots.append((worker, worker.connection.register(in: &pollSet, wantsToWrite: wantsToWrite)))
            }
            do {
                // No spin when something is due now (queued tasks, a deadline).
                if timeout != 0, let due = workers.first(where: batchSizer.answerIsDueSoon(from:)) {
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
                // The loop cannot wait any more (the kernel is out of memory for poll): stop
                // every worker and fail every job rather than spin or trap.
                abandonWorkers(because: ProcessPoolError(systemCallFailure: error, "the pool stopped: its event loop cannot wait for its workers", code: .poolShutDown))
                return
            }
            if !pollSet.events(at: 0).isEmpty { core.waker.drain() }
            // What the agents sent goes to their workers' connections, read just below.
            for case let link? in links { link.handleEvents(in: pollSet) }
            for (worker, slot) in slots {
                let buffered = worker.connection.bufferedEvents
                if buffered.contains(.output) || slot.output.map({ !pollSet.events(at: $0).isEmpty }) == true { readOutput(of: worker) }
                if buffered.contains(.diagnostics) || slot.diagnostics.map({ !pollSet.events(at: $0).isEmpty }) == true { readErrorOutput(of: worker) }
                let writable = slot.input.map { !pollSet.events(at: $0).isEmpty } == true
                    || (buffered.contains(.writable) && worker.pendingOutgoingBytes > 0 && !worker.inputClosed)
                if writable, !worker.flushOutgoing() {
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

    /// Whether a remote worker's connection holds what the loop has not handled yet (bytes
    /// left after this round's reads, or room for its waiting input): the loop then does not
    /// sleep.
    private var hasBufferedEvents: Bool {
        workers.contains { worker in
            let events = worker.connection.bufferedEvents
            return events.contains(.output) || events.contains(.diagnostics)
                || (events.contains(.writable) && worker.pendingOutgoingBytes > 0 && !worker.inputClosed)
        }
    }

    /// Milliseconds until the nearest deadline (a kill, a job's timeout, a handshake, a
    /// respawn, an idle worker's retirement, a remote host's heartbeat), -1 for none.
    private func pollTimeout() -> Int32 {
        var nearest = respawns.dueAt
        func consider(_ deadline: ContinuousClock.Instant?) {
            guard let deadline else { return }
            if nearest == nil || deadline < nearest! { nearest = deadline }
        }
        for case let link? in links { consider(link.deadline) }
        let idleTimeout = core.configuration.idleTimeout
        for worker in workers {
            consider(worker.killDeadline)
            consider(jobDeadline(of: worker))
            consider(handshakeDeadline(of: worker))
            consider(exitDeadline(of: worker))
            if let idleTimeout, worker.state == .ready, let idleSince = worker.idleSince { consider(idleSince + idleTimeout) }
        }
        guard let nearest else { return -1 }
        return PollSet.timeoutMilliseconds(until: nearest, now: clock.now)
    }

    /// Spins for up to ``spinDuration`` waiting for `worker`'s answer: waking a sleeping thread
    /// costs tens of microseconds here, so when an answer is due within that time, looking for
    /// it is cheaper. Each try is the read itself, one system call that brings the bytes when
    /// they are there (polling would take a `poll` over every descriptor, then the read). Every
    /// eighth round it polls all descriptors, so nothing else waits on the spin, and yields the
    /// core in case the worker shares it.
    private func readWhileSpinning(from worker: PooledWorker) throws(SystemCallError) -> SpinOutcome {
        let end = clock.now + Self.spinDuration
        var round = 0
        repeat {
            if !worker.outputEnded && worker.violation == nil && readOutput(of: worker) { return .readFromWorker }
            round &+= 1
            if round & 7 == 0 {
                if try pollSet.wait(timeoutMilliseconds: 0) > 0 { return .eventsReady }
                ThisProcess.yieldProcessor()
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

    /// Ends the pool: every caller waiting on it is told, and the loop's own descriptors are
    /// closed. Every worker has exited by now.
    private func finish() {
        let release = core.state.withLock { $0.finish() }
        // No connection to another machine outlives the pool: each agent stops what is left
        // there when its connection ends.
        disconnectHosts()
        // Every worker's descriptors are closed by now; close ours before anyone is told the
        // pool has stopped, so a caller counting descriptors sees none left.
        core.waker.close()
        errorForwarder?.stop()
        // Anything still queued can no longer run.
        for slice in release.queued { deliverFailure(ProcessPoolError(.poolShutDown, "the pool was shut down before the job ran"), to: slice) }
        for waiter in release.spaceWaiters { waiter.resume() }
        for waiter in release.jobNameWaiters { waiter.resume(throwing: ProcessPoolError(.poolShutDown, "the pool stopped before a worker said hello")) }
        for waiter in release.shutdownWaiters { waiter.resume() }
    }
}
