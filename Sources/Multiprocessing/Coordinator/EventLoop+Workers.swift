#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Starting workers, reading what they send, and dealing with their deaths.
extension EventLoop {
    // MARK: Spawning

    func spawnWorker() throws(ProcessPoolError) -> WorkerConnection {
        let configuration = core.configuration
        let executable: String
        let arguments: [String]
        if let path = configuration.executablePath {
            executable = path
            arguments = configuration.arguments ?? []
        } else {
            guard let path = currentExecutablePath() else {
                throw ProcessPoolError(.spawnFailed, "cannot find the running program's path to re-execute it as a worker")
            }
            executable = path
            arguments = configuration.arguments ?? Array(CommandLine.arguments.dropFirst())
        }
        var environment = currentEnvironment().filter {
            !$0.hasPrefix("SWIFT_MULTIPROCESSING_")
        }
        for (key, value) in configuration.environment {
            environment.removeAll { $0.hasPrefix(key + "=") }
            environment.append("\(key)=\(value)")
        }
        // A crashing worker's Swift backtrace is kept short, so the crash report's tail still
        // shows the fatal error message and the crashing frames, and the worker dies quickly.
        if !environment.contains(where: { $0.hasPrefix("SWIFT_BACKTRACE=") }) {
            environment.append("SWIFT_BACKTRACE=interactive=no,color=no,threads=crashed,registers=none,images=none,limit=12,top=4")
        }
        if let memoryLimit = configuration.memoryLimit {
            environment.append("\(WireProtocol.memoryLimitEnvironmentKey)=\(memoryLimit)")
        }
        // The lowest slot no current worker holds: a replacement takes the one it replaces.
        let taken = Set(workers.map(\.slot))
        let slot = (1...(workers.count + 1)).first { !taken.contains($0) } ?? workers.count + 1
        environment.append("\(WireProtocol.slotEnvironmentKey)=\(slot)")
        environment.append("\(WireProtocol.workerEnvironmentKey)=\(WireProtocol.version)")
        environment.append("\(WireProtocol.parentEnvironmentKey)=\(getpid())")

        var created: [FileDescriptor] = []
        func fail(_ message: String, _ error: SystemCallError) -> ProcessPoolError {
            for descriptor in created { descriptor.close() }
            var failure = ProcessPoolError(.spawnFailed, "\(message): \(error.call) failed")
            failure.errno = error.errno
            failure.executablePath = executable
            return failure
        }
        let stdinPipe, stdoutPipe, stderrPipe: (readEnd: FileDescriptor, writeEnd: FileDescriptor)
        do {
            stdinPipe = try FileDescriptor.pipe()
            created += [stdinPipe.readEnd, stdinPipe.writeEnd]
            stdoutPipe = try FileDescriptor.pipe()
            created += [stdoutPipe.readEnd, stdoutPipe.writeEnd]
            stderrPipe = try FileDescriptor.pipe()
            created += [stderrPipe.readEnd, stderrPipe.writeEnd]
            // Only our ends are non-blocking; the worker's stay blocking, as a program expects.
            try stdinPipe.writeEnd.setNonBlocking()
            try stdoutPipe.readEnd.setNonBlocking()
            try stderrPipe.readEnd.setNonBlocking()
        } catch {
            throw fail("cannot create the worker's pipes", error)
        }
        // Larger pipes mean fewer wake-ups for big batches; the default still works.
        stdinPipe.writeEnd.trySetPipeBufferSize(1 << 20)
        stdoutPipe.writeEnd.trySetPipeBufferSize(1 << 20)

        let process: ChildProcess
        let environmentBlock = CStringArray(environment)
        defer { environmentBlock.deallocate() }
        do {
            process = try spawnProcess(
                executable: executable, arguments: arguments, environment: environmentBlock,
                standardInput: stdinPipe.readEnd, standardOutput: stdoutPipe.writeEnd, standardError: stderrPipe.writeEnd)
        } catch {
            for descriptor in created { descriptor.close() }
            var failure = ProcessPoolError(.spawnFailed, "cannot start the worker executable (\(error.call) failed)")
            failure.errno = error.errno
            failure.executablePath = executable
            throw failure
        }
        // The child has its copies; keeping ours would hide its exit (no end of file).
        stdinPipe.readEnd.close()
        stdoutPipe.writeEnd.close()
        stderrPipe.writeEnd.close()

        let worker = WorkerConnection(
            process: process, input: stdinPipe.writeEnd, output: stdoutPipe.readEnd, errorOutput: stderrPipe.readEnd,
            maximumFrameSize: configuration.maximumFrameSize, spawnedAt: clock.now, executablePath: executable, slot: slot)
        worker.outgoing.writePreamble()
        CoordinatorHello(maximumFrameSize: configuration.maximumFrameSize).write(to: &worker.outgoing)
        _ = worker.flushOutgoing()
        return worker
    }

    // MARK: Reading

    /// Reads what the worker has written and acts on every complete frame.
    ///
    /// A read that returns less than it had room for ends the call: the pipe was empty then.
    /// - Parameter untilDrained: Read until the pipe is empty or ended, however much is there
    ///   (for a worker that has exited: everything it sent must be seen before its jobs are
    ///   judged). Otherwise a bounded number of reads keeps one busy worker from starving the rest.
    /// - Returns: Whether there was anything (bytes, or the end of the stream).
    @discardableResult
    func readOutput(of worker: WorkerConnection, untilDrained: Bool = false) -> Bool {
        var reads = 0
        var readAnything = false
        while untilDrained || reads < 16 {
            reads += 1
            var ended = false
            var wouldBlock = false
            var drained = false
            worker.reader.readIntoStorage { buffer in
                let result = Result { () throws(SystemCallError) in try worker.output.read(into: buffer) }
                switch result {
                case .success(.transferred(let count)):
                    ended = count == 0
                    // Less than there was room for: the pipe held no more, so another read
                    // would only say EAGAIN (a system call per round trip saved).
                    drained = count < buffer.count
                    return count
                case .success(.wouldBlock):
                    wouldBlock = true
                    return 0
                case .failure:
                    ended = true
                    return 0
                }
            }
            if !wouldBlock { readAnything = true }
            if !ended && !wouldBlock { processFrames(of: worker) }
            if ended {
                worker.outputEnded = true
                return readAnything
            }
            if wouldBlock || (drained && !untilDrained) { return readAnything }
        }
        return readAnything
    }

    func readErrorOutput(of worker: WorkerConnection) {
        for _ in 0..<16 {
            guard readChunkOfErrorOutput(worker) else { return }
        }
    }

    private func processFrames(of worker: WorkerConnection) {
        guard worker.violation == nil else { return }
        do {
            while try worker.reader.nextFrame({ type, body in try handleFrame(type: type, body: body, from: worker) }) != nil {}
        } catch {
            protocolViolation(by: worker, "\(error)")
        }
    }

    private func handleFrame(type: UInt8, body: UnsafeRawBufferPointer, from worker: WorkerConnection) throws {
        switch (worker.state, FrameType(rawValue: type)) {
        case (_, .workerHello?) where worker.jobNames.isEmpty && worker.violation == nil:
            // Also when asked to stop before its hello arrived: it started fine.
            let hello = try WorkerHello(body: body)
            worker.jobNames = hello.jobNames
            worker.jobIndexByName = Dictionary(hello.jobNames.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
            worker.idleSince = clock.now
            if worker.state == .starting { worker.state = .ready }
            noteStartSuccess()
            let names = hello.jobNames
            let waiters = core.state.withLock { state -> [CheckedContinuation<[String], any Error>] in
                if state.servedJobNames == nil { state.servedJobNames = names }
                defer { state.jobNameWaiters.removeAll() }
                return state.jobNameWaiters
            }
            for waiter in waiters { waiter.resume(returning: names) }
        case (.starting, _):
            throw WireError("expected the worker's hello, received a frame of type \(type)")
        case (_, .results?):
            try deliverResults(body: body, from: worker)
        case (_, .output?):
            let (header, bytes) = try OutputFrameHeader.read(body: body)
            guard let batch = worker.inFlight.first, batch.id == header.batchID,
                header.position >= batch.resolvedCount, let slice = batch.slice(atBatchPosition: header.position)
            else {
                throw WireError("output for job \(header.position) of batch \(header.batchID), which the worker is not running")
            }
            slice.chunk.sink.receiveOutput(stream: Int(header.stream) - 1, bytes: bytes)
        case (_, .fatal?):
            worker.fatalMessage = fatalMessage(from: body)
        case (_, .workerHello?):
            throw WireError("a second hello")
        default:
            throw WireError("unexpected frame type \(type) from a worker")
        }
    }

    private func deliverResults(body: UnsafeRawBufferPointer, from worker: WorkerConnection) throws {
        var results = try ResultsFrameReader(body: body)
        let header = results.header
        guard let batch = worker.inFlight.first, batch.id == header.batchID else {
            throw WireError("results for batch \(header.batchID), which is not the batch the worker is running")
        }
        guard header.firstPosition == batch.resolvedCount, header.count <= batch.count - batch.resolvedCount else {
            throw WireError("results \(header.firstPosition)..<\(header.firstPosition + header.count) for batch \(batch.id) of \(batch.count) jobs, of which \(batch.resolvedCount) were already answered")
        }
        // Read the whole frame before acting on any of it: a frame that turns out malformed
        // half way must leave every one of its jobs unanswered, to be rescued with the rest.
        // The usual frame, all successes, is only checked here, and decoded by its calls.
        let resultBytes = results.remainingBytes
        let allSucceeded = SucceededResults.scan(resultBytes, count: header.count, offsets: &resultOffsets)
        var outcomes: [JobOutcome] = []
        if !allSucceeded {
            outcomes.reserveCapacity(header.count)
            while let outcome = try results.next() { outcomes.append(jobOutcome(outcome, from: worker)) }
        }

        // The results of each slice go to its call's sink as one run.
        var lastName: String?
        var offset = 0
        while offset < header.count {
            let (slice, position) = batch.nextUnresolved()
            let count = min(header.count - offset, batch.unresolvedInCurrentSlice)
            batch.markResolved(count)
            lastName = slice.chunk.jobName
            let (firstIndex, firstJobID) = (slice.inputIndex(at: position), slice.jobID(at: position))
            let run = if allSucceeded {
                ResultRun(
                    firstIndex: firstIndex, firstJobID: firstJobID, jobName: slice.chunk.jobName,
                    succeeded: SucceededResults(bytes: UnsafeRawBufferPointer(rebasing: resultBytes[resultOffsets[offset]..<resultOffsets[offset + count]]), count: count))
            } else {
                ResultRun(firstIndex: firstIndex, firstJobID: firstJobID, jobName: slice.chunk.jobName, outcomes: outcomes[offset..<(offset + count)])
            }
            slice.chunk.sink.deliver(run)
            offset += count
        }
        if let lastName { recordCost(jobName: lastName, count: header.count, elapsedNanoseconds: header.elapsedNanoseconds, resultBytes: body.count) }
        if batch.resolvedCount == batch.count {
            worker.inFlight.removeFirst()
            if let limit = core.configuration.maximumResidentMemory, let resident = residentMemory(of: worker.pid), resident > limit {
                retire(worker)
            }
        }
        // The next job (or batch) starts now.
        worker.runningSince = worker.inFlight.isEmpty ? nil : clock.now
        if worker.inFlight.isEmpty { worker.idleSince = clock.now }
    }

    private func jobOutcome(_ outcome: WireOutcome, from worker: WorkerConnection) -> JobOutcome {
        switch outcome {
        case .succeeded(let rawCodec, let payload):
            guard let codec = PayloadCodec(rawValue: rawCodec) else {
                return .failed(workerError(.protocolViolation, "the worker answered with unknown codec \(rawCodec)", worker))
            }
            return .succeeded(codec: codec, payload: payload)
        case .threw(let typeName, let description):
            var error = workerError(.jobThrew, description, worker)
            error.remoteErrorType = typeName
            return .failed(error)
        case .inputDecodingFailed(let description):
            return .failed(workerError(.decodingFailed, "the worker could not decode the input: \(description)", worker))
        case .outputEncodingFailed(let description):
            return .failed(workerError(.encodingFailed, "the worker could not encode the output: \(description)", worker))
        case .unknownJob(let index):
            return .failed(workerError(.unknownJob, "the worker does not serve job index \(index)", worker))
        }
    }

    private func workerError(_ code: ProcessPoolError.Code, _ message: String, _ worker: WorkerConnection) -> ProcessPoolError {
        var error = ProcessPoolError(code, message)
        error.workerProcessID = worker.pid
        return error
    }

    /// The worker broke the protocol: kill it; its exit handler fails or requeues its jobs.
    func protocolViolation(by worker: WorkerConnection, _ message: String) {
        guard worker.violation == nil else { return }
        worker.violation = message
        worker.state = .stopping
        worker.process.signalGroup(SIGKILL)
    }

    // MARK: Exits

    func handleExit(of worker: WorkerConnection) {
        // 1. Take in whatever it wrote before dying: results sent before a crash still count,
        //    and stderr holds the crash message.
        if !worker.outputEnded { readOutput(of: worker, untilDrained: true) }
        while !worker.errorOutputEnded, readChunkOfErrorOutput(worker) {}
        // 2. Reap it (it has exited: this does not block for long).
        let status: TerminationStatus
        do {
            status = try worker.process.reap()
        } catch {
            status = .exited(-1)
        }
        // A job's processes live in the worker's group; none may outlive the worker (a group id
        // stays reserved while any member is alive, so this reaches only them).
        worker.process.killRemainingGroupMembers()
        worker.closeAll()
        removeWorker(worker)

        let lifecycle = core.state.withLock { $0.lifecycle }
        // 3. Its jobs.
        // A worker that dies before its hello counts against the executable, unless something
        // outside killed it (SIGKILL: an operator, the OOM killer, a chaos test).
        let killedFromOutside = status == .signaled(SIGKILL) && worker.violation == nil && worker.termination == nil
        if worker.jobNames.isEmpty && !killedFromOutside && worker.termination == nil {
            var error = workerError(.protocolViolation, worker.violation.map { "the worker broke the protocol before its handshake: \($0)" }
                ?? "the worker exited before its handshake", worker)
            if worker.violation == nil, let fatal = worker.fatalMessage { error.message += ": \(fatal)" }
            error.terminationStatus = status
            error.standardErrorTail = worker.standardErrorTail()
            error.executablePath = worker.executablePath
            noteStartFailure(error)
        }
        rescueJobs(of: worker, status: status, lifecycle: lifecycle)

        // 4. Its replacement, if one is needed, is started by maintainWorkerCount.
    }

    /// Reads one piece of the worker's stderr, keeps its tail and forwards it; false when
    /// nothing more is there now.
    func readChunkOfErrorOutput(_ worker: WorkerConnection) -> Bool {
        guard let count = readChunk(from: worker.errorOutput) else { return false }
        guard count > 0 else {
            worker.errorOutputEnded = true
            return false
        }
        readBufferBytes(count) { bytes in
            worker.recordStandardError(bytes)
            errorForwarder?.forward(bytes)
        }
        return true
    }

    /// Decides the fate of every job the dead worker had.
    ///
    /// Results arrive in order, so the first unanswered job of the oldest batch is the one that
    /// was running. In a batch that reported each result, that pins the death on it; otherwise
    /// the worker may have died holding results it had not sent, so each unanswered job of that
    /// batch is retried as a suspect (reported one by one) and the next death pins the culprit.
    /// Jobs in later batches had not started: they go back to the queue as they were.
    private func rescueJobs(of worker: WorkerConnection, status: TerminationStatus, lifecycle: SchedulerState.Lifecycle) {
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

        if lifecycle == .cancelling {
            let error = failure(.poolShutDown, "the pool was shut down while the job ran")
            for slice in unanswered + waiting { deliverFailure(error, to: slice) }
            return
        }

        var requeue: [ChunkSlice] = []
        guard let first = unanswered.first else {
            core.state.withLock { $0.requeueAtFront(waiting) }
            return
        }
        let culprit = ChunkSlice(chunk: first.chunk, positions: first.positions.lowerBound..<first.positions.lowerBound + 1, isSuspect: first.isSuspect, history: first.history)
        var others = unanswered
        others[0].positions = others[0].positions.dropFirst()
        others.removeAll { $0.positions.isEmpty }

        switch worker.termination {
        case .cancelled?:
            // We stopped it for a cancelled job; everyone else's jobs are blameless.
            requeue = unanswered
        case .timedOut(let ran, let limit)?:
            let error = failure(.timedOut, "the job ran for \(Self.format(ran)), over its timeout of \(Self.format(limit)); its worker was terminated")
            retryOrFail(culprit, with: error, into: &requeue)
            requeue += others
        case nil:
            let error: ProcessPoolError
            if let violation = worker.violation {
                error = failure(.protocolViolation, "the worker broke the protocol: \(violation)")
            } else if let limit = core.configuration.memoryLimit, Self.looksLikeAllocationFailure(worker.standardErrorTail()) {
                error = failure(.memoryLimitExceeded, "the job needed more memory than the worker's limit of \(limit) bytes (memoryLimit); its worker died")
            } else {
                var crash = failure(.workerCrashed, "the worker died while running the job")
                if let fatal = worker.fatalMessage { crash.message += " (\(fatal))" }
                error = crash
            }
            let unansweredCount = unanswered.reduce(0) { $0 + $1.count }
            if running.flags.contains(.reportEachResult) || unansweredCount == 1 {
                retryOrFail(culprit, with: error, into: &requeue)
                requeue += others
            } else {
                for slice in unanswered {
                    var suspects = slice
                    suspects.isSuspect = true
                    requeue.append(suspects)
                }
            }
        }
        requeue += waiting
        core.state.withLock { $0.requeueAtFront(requeue) }
    }

    /// Retries a job that crashed its worker or timed out, if it has retries left; otherwise
    /// fails it with the errors of all its attempts.
    private func retryOrFail(_ job: ChunkSlice, with error: ProcessPoolError, into requeue: inout [ChunkSlice]) {
        let history = job.history + [error]
        if history.count <= job.chunk.maximumRetries {
            var retry = job
            retry.isSuspect = true
            retry.history = history
            requeue.append(retry)
        } else {
            var final = error
            if history.count > 1 {
                final.attempts = history
                final.message += "; given up after \(history.count) attempts"
            }
            deliverFailure(final, to: job)
        }
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

    /// Starts a replacement now, or after a backoff if workers have been failing to start.
    func scheduleReplacement() {
        if workersCannotStart && workers.isEmpty {
            pendingRespawns = 0
            breakPool(with: lastStartFailureError ?? ProcessPoolError(.spawnFailed, "workers cannot be started"))
            return
        }
        if lastFailureCount > 0 {
            pendingRespawns += 1
            if respawnAt == nil { respawnAt = clock.now + Self.respawnBackoff(afterFailures: lastFailureCount) }
        } else {
            startReplacement()
        }
    }

    func startReplacement() {
        do {
            addWorker(try spawnWorker())
        } catch {
            noteStartFailure(error)
            scheduleReplacement()
        }
    }

    /// No worker can run: fail what is queued and refuse new work, rather than spin.
    func breakPool(with error: ProcessPoolError) {
        guard core.state.withLock({ $0.brokenError == nil }) else { return }
        var failure = error
        failure.message = "no worker could be started: " + failure.message
        let waiters = core.state.withLock { state in
            state.brokenError = failure
            defer { state.jobNameWaiters.removeAll() }
            return state.jobNameWaiters
        }
        for waiter in waiters { waiter.resume(throwing: failure) }
        failQueued(with: failure)
    }

    private func readBufferBytes(_ count: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
        withReadBuffer { buffer in body(UnsafeRawBufferPointer(rebasing: buffer[0..<count])) }
    }
}
