/// Starting, stopping and replacing workers: spawning, the termination sequence (signal,
/// grace period, SIGKILL), deadlines (timeouts, handshakes, idleness), respawning with backoff
/// (``RespawnSchedule``), and the pool's own shutdown.
extension EventLoop {
    // MARK: Starting

    /// The worker binary and its arguments: the configured ones, or this program again.
    static func workerProgram(_ configuration: ProcessPoolConfiguration) -> (executable: String, arguments: [String])? {
        if let path = configuration.executablePath {
            return (path, configuration.arguments ?? [])
        }
        guard let path = currentExecutablePath() else { return nil }
        return (path, configuration.arguments ?? Array(CommandLine.arguments.dropFirst()))
    }

    /// Spawns a worker on the host with the most free slots and sends it the coordinator's
    /// hello; nil when every host's slots are taken or its host is down.
    func spawnWorker() throws(ProcessPoolError) -> PooledWorker? {
        let configuration = core.configuration
        guard let host = hostWithFreeSlot() else { return nil }
        guard let (executable, arguments) = Self.workerProgram(configuration) else {
            throw ProcessPoolError(.spawnFailed, "cannot find the running program's path to re-execute it as a worker")
        }
        // The lowest slot no current worker holds: a replacement takes the one it replaces.
        let taken = Set(workers.map(\.slot))
        let slot = (1...(workers.count + 1)).first { !taken.contains($0) } ?? workers.count + 1
        let connection: any WorkerConnection
        do throws(SpawnFailure) {
            if let link = links[host] {
                if nextChannel == 0 { nextChannel = 1 }
                defer { nextChannel &+= 1 }
                connection = RelayedConnection(
                    link: link, channel: nextChannel, executablePath: hosts[host].workerPath ?? executable,
                    environment: protocolEnvironment(slot: slot))
            } else {
                connection = try LocalPipeConnection(executable: executable, arguments: arguments, environment: workerEnvironment(slot: slot))
            }
        } catch {
            var failure = ProcessPoolError(.spawnFailed, "cannot start the worker executable (\(error.call) failed)")
            failure.errno = error.errno
            failure.resourceLimit = ThisProcess.resourceLimitNote(call: error.call, errno: error.errno)
            failure.executablePath = executable
            throw failure
        }
        let worker = PooledWorker(connection: connection, maximumFrameSize: configuration.maximumFrameSize, spawnedAt: clock.now, slot: slot)
        worker.host = host
        worker.outgoing.frames.writePreamble()
        CoordinatorHello(maximumFrameSize: configuration.maximumFrameSize).write(to: &worker.outgoing.frames)
        _ = worker.flushOutgoing()
        return worker
    }

    /// The environment of the worker in `slot` on this machine: ours, with the configuration's
    /// additions and what the protocol tells a worker.
    private func workerEnvironment(slot: Int) -> [String] {
        let additions = protocolEnvironment(slot: slot)
        let keys = Set(additions.map { $0.prefix { $0 != "=" } })
        var environment = currentEnvironment().filter {
            !$0.hasPrefix("SWIFT_MULTIPROCESSING_") && !keys.contains($0.prefix { $0 != "=" })
        }
        environment += additions
        environment.append("\(WireProtocol.parentEnvironmentKey)=\(ThisProcess.id)")
        return environment
    }

    /// What a worker's environment gets on top of its host's: the configuration's additions
    /// and what the protocol tells a worker (an agent adds these to its own environment).
    func protocolEnvironment(slot: Int) -> [String] {
        let configuration = core.configuration
        var environment: [String] = []
        for (key, value) in configuration.environment {
            environment.append("\(key)=\(value)")
        }
        // A crashing worker's Swift backtrace is kept short, so the crash report's tail still
        // shows the fatal error message and the crashing frames, and the worker dies quickly.
        if configuration.environment["SWIFT_BACKTRACE"] == nil && WorkerProcess.environmentValue("SWIFT_BACKTRACE") == nil {
            environment.append("SWIFT_BACKTRACE=interactive=no,color=no,threads=crashed,registers=none,images=none,limit=12,top=4")
        }
        if let memoryLimit = configuration.memoryLimit {
            environment.append("\(WireProtocol.memoryLimitEnvironmentKey)=\(memoryLimit)")
        }
        environment.append("\(WireProtocol.slotEnvironmentKey)=\(slot)")
        environment.append("\(WireProtocol.workerEnvironmentKey)=\(WireProtocol.version)")
        return environment
    }

    /// Keeps the pool at `workerCount` live workers while there is work (starting them on
    /// demand after an idle shutdown), and at least `minimumWorkerCount` otherwise.
    func maintainWorkerCount() {
        let (lifecycle, queueIsEmpty, broken) = core.state.withLock { ($0.lifecycle, $0.queue.isEmpty, $0.brokenError != nil) }
        guard !broken, lifecycle == .running || (lifecycle == .draining && !queueIsEmpty) else { return }
        let configuration = core.configuration
        // Waiting jobs fail, but the pool stays: a host that answers again takes new work.
        if !queueIsEmpty, let error = noHostLeft() {
            failQueued(with: error)
            return
        }
        let live = workers.count { $0.state != .stopping } + respawns.pending
        let busy = !queueIsEmpty || workers.contains { !$0.inFlight.isEmpty }
        let minimum = min(capacity, configuration.minimumWorkerCount ?? capacity)
        // Slots on hosts that are down wait for their host.
        let target = min(busy ? capacity : max(minimum, 0), live + freeSlotsOnLiveHosts())
        guard live < target else { return }
        for _ in live..<target {
            scheduleReplacement()
            if core.state.withLock({ $0.brokenError != nil }) { return }
        }
    }

    /// Starts a replacement now, or after a backoff if workers have been failing to start.
    private func scheduleReplacement() {
        switch respawns.requestReplacement(now: clock.now, noWorkerLeft: workers.isEmpty) {
        case .startNow: startReplacement()
        case .deferred: break
        case .giveUp(let error): breakPool(with: error)
        }
    }

    /// Starts the workers whose backoff has passed.
    func spawnDueWorkers() {
        guard respawns.pending > 0 else { return }
        guard core.state.withLock({ $0.brokenError == nil }) else {
            respawns.cancelPending()
            return
        }
        if respawns.takeDueStart(now: clock.now) { startReplacement() }
    }

    private func startReplacement() {
        do {
            guard let worker = try spawnWorker() else { return }  // no host has room now
            addWorker(worker)
        } catch {
            noteStartFailure(error)
            scheduleReplacement()
        }
    }

    /// Counts a failed start, and gives up on the pool when ``RespawnSchedule`` says so.
    func noteStartFailure(_ error: ProcessPoolError) {
        let anyWorking = workers.contains { !$0.jobNames.isEmpty && $0.state != .stopping }
        if let fatal = respawns.noteStartFailure(error, anyWorkerWorking: anyWorking) { breakPool(with: fatal) }
    }

    /// No worker can run: fail what is queued and refuse new work, rather than spin.
    private func breakPool(with error: ProcessPoolError) {
        var failure = error
        failure.message = "no worker could be started: " + failure.message
        fail(with: failure)
    }

    /// Makes `error` the pool's refusal: queued jobs and callers waiting for a worker's hello
    /// fail with it, and new work is refused.
    private func fail(with error: ProcessPoolError) {
        guard let release = core.state.withLock({ $0.breakPool(with: error) }) else { return }
        carryOut(release, failingWith: error)
    }

    /// The loop cannot go on (it cannot wait for events): kills every worker, fails every job
    /// it held and every queued job with `error`, and refuses new work.
    func abandonWorkers(because error: ProcessPoolError) {
        fail(with: error)
        respawns.cancelPending()
        for worker in workers { worker.connection.signal(Signal.kill) }
        for worker in workers {
            _ = worker.connection.finish()
            for batch in worker.inFlight {
                for slice in batch.unresolvedSlices() { deliverFailure(error, to: slice) }
            }
            worker.inFlight.removeAll()
            removeWorker(worker)
        }
    }

    // MARK: Stopping

    /// Replaces a worker in good order: it takes no more jobs, finishes what it has, and exits
    /// when its input is closed; `maintainWorkerCount` starts its successor.
    func retire(_ worker: PooledWorker) {
        guard !worker.isRetiring else { return }
        worker.isRetiring = true
        worker.state = .stopping
    }

    /// Closes the worker's input: it finishes what it has and exits on end of stream, or is
    /// killed once the grace period is over.
    private func requestExit(of worker: PooledWorker) {
        worker.state = .stopping
        if worker.pendingOutgoingBytes == 0 { worker.closeInput() }
        worker.killDeadline = clock.now + core.configuration.terminationGracePeriod
    }

    /// Starts the termination sequence: the configured signal to the worker and what it
    /// started, then SIGKILL when the grace period is over.
    func terminate(_ worker: PooledWorker, because reason: PooledWorker.TerminationReason) {
        worker.termination = reason
        worker.state = .stopping
        worker.connection.signal(core.configuration.terminationSignal)
        worker.killDeadline = clock.now + core.configuration.terminationGracePeriod
    }

    func enforceKillDeadlines() {
        let now = clock.now
        for worker in workers {
            if let deadline = worker.killDeadline, deadline <= now {
                worker.connection.signal(Signal.kill)
                worker.killDeadline = nil
            }
        }
    }

    /// Moves the pool through draining or cancelling; returns true when the loop should end.
    func advanceLifecycle() -> Bool {
        let (lifecycle, queueIsEmpty) = core.state.withLock { ($0.lifecycle, $0.queue.isEmpty) }
        switch lifecycle {
        case .running:
            return false
        case .draining:
            if queueIsEmpty {
                respawns.cancelPending()
                for worker in workers where worker.isIdle && worker.state != .stopping {
                    requestExit(of: worker)
                }
            }
        case .cancelling:
            respawns.cancelPending()
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
        return workers.isEmpty && respawns.pending == 0
    }

    // MARK: Deadlines

    /// When the running job must end, for a worker running a job with a timeout.
    func jobDeadline(of worker: PooledWorker) -> ContinuousClock.Instant? {
        guard worker.termination == nil, let started = worker.runningSince, let batch = worker.inFlight.first,
              batch.flags.contains(.reportEachResult), batch.resolvedCount < batch.count,
              let timeout = batch.nextUnresolved().slice.chunk.timeout else { return nil }
        return started + timeout
    }

    /// When a worker whose output has ended must have exited.
    func exitDeadline(of worker: PooledWorker) -> ContinuousClock.Instant? {
        guard let ended = worker.outputEndedAt, worker.violation == nil, worker.killDeadline == nil else { return nil }
        return ended + core.configuration.terminationGracePeriod
    }

    /// When a starting worker must have sent its hello.
    func handshakeDeadline(of worker: PooledWorker) -> ContinuousClock.Instant? {
        guard worker.jobNames.isEmpty, worker.violation == nil, worker.termination == nil else { return nil }
        return worker.spawnedAt + core.configuration.handshakeTimeout
    }

    /// Terminates workers whose running job is over its time, or whose jobs nobody wants any
    /// more (a cancelled future, a failed or abandoned map), and workers that never said hello;
    /// retires workers idle for longer than `idleTimeout`.
    func enforceTimeoutsAndCancellations() {
        let now = clock.now
        for worker in workers {
            if let deadline = handshakeDeadline(of: worker), deadline <= now {
                protocolViolation(by: worker, "no hello within \(Self.format(core.configuration.handshakeTimeout)) of starting: is the executable a worker?")
            } else if let deadline = exitDeadline(of: worker), deadline <= now {
                protocolViolation(by: worker, "it closed its output but was still running \(Self.format(core.configuration.terminationGracePeriod)) later")
            }
        }
        if let idleTimeout = core.configuration.idleTimeout {
            let minimum = min(capacity, core.configuration.minimumWorkerCount ?? capacity)
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
}
