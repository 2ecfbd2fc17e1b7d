/// A worker's exit: taking in what it sent last, collecting its status, and rescuing its jobs
/// (``RescuePlan``).
extension EventLoop {
    func handleExit(of worker: PooledWorker) {
        // 1. Take in whatever it wrote before dying: results sent before a crash still count,
        //    and stderr holds the crash message.
        if !worker.outputEnded { readOutput(of: worker, untilDrained: true) }
        while !worker.errorOutputEnded, readChunkOfErrorOutput(worker) {}
        // 2. Collect its exit status; stop what it left running; release its connection.
        let status = worker.connection.finish()
        removeWorker(worker)
        // Everything it sent has been read and every whole frame handled: bytes left over are a
        // frame it never finished. Exiting in the middle of one breaks the protocol; dying of a
        // signal there is a crash like any other.
        if worker.violation == nil, case .exited = status, worker.reader.bufferedByteCount > 0 {
            worker.violation = "it exited in the middle of a frame (\(worker.reader.bufferedByteCount) bytes of it had arrived)"
        }

        let lifecycle = core.state.withLock { $0.lifecycle }
        // 3. Its jobs.
        // A worker that dies before its hello counts against the executable, unless something
        // outside killed it (SIGKILL: an operator, the OOM killer, a chaos test).
        // A worker lost with its host says nothing about the executable either.
        let killedFromOutside = status == .signaled(Signal.kill) && worker.violation == nil && worker.termination == nil
        if worker.jobNames.isEmpty && !killedFromOutside && worker.termination == nil && worker.connection.hostLoss == nil {
            var error = workerError(.protocolViolation, worker.violation.map { "the worker broke the protocol before its handshake: \($0)" }
                ?? "the worker exited before its handshake", worker)
            if worker.violation == nil, let fatal = worker.fatalMessage { error.message += ": \(fatal)" }
            error.terminationStatus = status
            error.standardErrorTail = worker.standardErrorTail()
            noteStartFailure(error)
        }
        rescueJobs(of: worker, status: status, lifecycle: lifecycle)

        // 4. Its replacement, if one is needed, is started by maintainWorkerCount.
    }

    /// Carries out the ``RescuePlan`` for the jobs `worker` held when it died.
    private func rescueJobs(of worker: PooledWorker, status: TerminationStatus, lifecycle: SchedulerState.Lifecycle) {
        guard let running = worker.inFlight.first else { return }
        let waiting = worker.inFlight.dropFirst().flatMap { $0.unresolvedSlices() }
        let unanswered = running.unresolvedSlices()
        worker.inFlight.removeAll()
        worker.runningSince = nil

        func failure(_ code: ProcessPoolError.Code, _ message: String) -> ProcessPoolError {
            var error = workerError(code, message, worker)
            error.terminationStatus = status
            error.standardErrorTail = worker.standardErrorTail()
            return error
        }
        let cause: RescuePlan.Cause
        if lifecycle == .cancelling {
            cause = .poolCancelled(failure(.poolShutDown, "the pool was shut down while the job ran"))
        } else if let loss = worker.connection.hostLoss, worker.termination == nil {
            // (A job over its timeout is blamed as such even if its host went with it.)
            let host = worker.connection.hostName ?? "?"
            cause = .hostLost(host: "\(host): \(loss)", error: failure(.hostLost, "host \(host) was lost while the job ran there: \(loss)"))
        } else {
            switch worker.termination {
            case .cancelled?:
                cause = .stoppedForCancelledJob
            case .timedOut(let ran, let limit)?:
                cause = .timedOut(failure(.timedOut, "the job ran for \(Self.format(ran)), over its timeout of \(Self.format(limit)); its worker was terminated"))
            case nil:
                if let violation = worker.violation {
                    cause = .died(failure(.protocolViolation, "the worker broke the protocol: \(violation)"))
                } else if let limit = core.configuration.memoryLimit, Self.looksLikeAllocationFailure(worker.standardErrorTail()) {
                    cause = .died(failure(.memoryLimitExceeded, "the job needed more memory than the worker's limit of \(limit) bytes (memoryLimit); its worker died"))
                } else {
                    var crash = failure(.workerCrashed, "the worker died while running the job")
                    if let fatal = worker.fatalMessage { crash.message += " (\(fatal))" }
                    cause = .died(crash)
                }
            }
        }
        let plan = RescuePlan(
            unanswered: unanswered, reportsEachResult: running.flags.contains(.reportEachResult), waiting: waiting, cause: cause)
        for (slice, error) in plan.failures { deliverFailure(error, to: slice) }
        if !plan.requeue.isEmpty { core.state.withLock { $0.requeueAtFront(plan.requeue) } }
    }

    /// What the Swift runtime, the C library and C++ print when an allocation fails.
    static func looksLikeAllocationFailure(_ standardError: String) -> Bool {
        ["failed to allocate", "Could not allocate memory", "Cannot allocate memory", "out of memory", "bad_alloc", "Out of memory"]
            .contains { standardError.contains($0) }
    }

    static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let milliseconds = Double(seconds) * 1000 + Double(attoseconds) / 1e15
        return milliseconds < 1000 ? "\(Int(milliseconds.rounded())) ms" : "\((milliseconds / 10).rounded() / 100) s"
    }
}
