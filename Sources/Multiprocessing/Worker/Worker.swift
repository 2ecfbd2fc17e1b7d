/// The worker side of a pool: serves registered jobs over the protocol on stdin and stdout.
///
/// A standalone worker binary is a `main` that calls ``serve(jobs:)``. An application that is
/// its own worker calls ``serveIfSpawned(jobs:)`` first thing in `main`: in a process a pool
/// spawned it serves jobs and never returns; anywhere else it returns at once.
public enum Worker {
    /// Whether this process was spawned by a ``ProcessPool`` to serve jobs, or started on
    /// another machine as the agent that spawns a pool's workers there.
    public static var isSpawnedByPool: Bool {
        WorkerProcess.environmentValue(WireProtocol.workerEnvironmentKey) != nil
            || WorkerProcess.environmentValue(AgentProtocol.agentEnvironmentKey) != nil
    }

    /// Serves `jobs` if this process was spawned by a pool; returns at once otherwise.
    ///
    /// - Parameter jobs: The job types this process serves.
    /// - Throws: ``ProcessPoolError`` if two jobs share a name or the protocol streams cannot be set up.
    public nonisolated(nonsending) static func serveIfSpawned(jobs: [any Job.Type]) async throws {
        guard isSpawnedByPool else { return }
        try await serve(jobs: jobs)
    }

    /// Serves `jobs` over the protocol on standard input and output until the coordinator
    /// closes the connection or asks the worker to stop, then exits the process.
    ///
    /// Before any job runs, the protocol moves to private descriptors, standard input reads
    /// from `/dev/null` and standard output is redirected to standard error, so a job that
    /// prints cannot corrupt a frame. Started by a pool on Linux, the worker also asks to be
    /// killed when the pool's process dies.
    ///
    /// - Parameter jobs: The job types this process serves.
    /// - Throws: ``ProcessPoolError`` if two jobs share a name or the protocol streams cannot
    ///   be set up; once serving, it never returns.
    public nonisolated(nonsending) static func serve(jobs: [any Job.Type]) async throws -> Never {
        let registry = try JobRegistry(jobs)
        if let version = WorkerProcess.environmentValue(AgentProtocol.agentEnvironmentKey) {
            // Started on a remote host for a pool: spawn workers there, each running this
            // program again (and so serving these same jobs), and relay their streams.
            await Agent.serve(coordinatorVersion: version)
        }
        if let parent = WorkerProcess.environmentValue(WireProtocol.parentEnvironmentKey), let parentID = Int32(parent) {
            WorkerProcess.dieWithParent(expectedParent: parentID)
        }
        if let limit = WorkerProcess.environmentValue(WireProtocol.memoryLimitEnvironmentKey).flatMap(Int.init) {
            do {
                try WorkerProcess.limitAddressSpace(to: limit)
            } catch {
                throw ProcessPoolError(.spawnFailed, "cannot set the worker's memory limit: \(error)")
            }
            WorkerProcess.removeEnvironmentValue(WireProtocol.memoryLimitEnvironmentKey)
        }
        // Jobs that start processes (or pools) of their own must not make them workers.
        WorkerProcess.removeEnvironmentValue(WireProtocol.workerEnvironmentKey)
        WorkerProcess.removeEnvironmentValue(WireProtocol.parentEnvironmentKey)
        // The slot number stays: CommandJob reads it for `{%}`.
        let streams: WorkerProcess.ProtocolStreams
        let executor: DedicatedThreadExecutor
        do {
            streams = try WorkerProcess.takeProtocolStreams()
        } catch {
            throw ProcessPoolError(systemCallFailure: error, "cannot set up the worker's protocol streams", code: .protocolViolation)
        }
        do {
            try WorkerProcess.exitWhenClosed(try streams.input.duplicate())
            executor = try DedicatedThreadExecutor(name: "mp-worker-jobs")
        } catch {
            streams.input.close()
            streams.output.close()
            throw ProcessPoolError(systemCallFailure: error, "cannot start the worker's threads")
        }
        let loop = WorkerLoop(
            registry: registry, input: DescriptorBox(streams.input), output: DescriptorBox(streams.output),
            inputIsNonBlocking: streams.inputIsNonBlocking)
        await WorkerIsolation(executor: executor).serve(loop)
        WorkerProcess.exitProcess(0)
    }
}

/// Reads jobs frames, runs their jobs in order, and writes results frames. Runs on the
/// worker's own thread, where blocking on the pipes is allowed.
final class WorkerLoop: @unchecked Sendable {
    // @unchecked: used by exactly one task, the serve loop, for the life of the process.
    private let registry: JobRegistry
    private let input: DescriptorBox
    /// Whether reads of `input` return at once when it is empty: then waiting for a job that is
    /// due soon spins on the read itself rather than on `poll`.
    private let inputIsNonBlocking: Bool
    private let output: DescriptorBox
    private var reader = FrameReader()
    private var writer = WireWriter(reservingCapacity: 64 * 1024)
    private var maximumFrameSize = WireProtocol.defaultMaximumFrameSize
    /// A jobs frame's body, copied out of the reader so it stays put while jobs await.
    private var batch: UnsafeMutableRawBufferPointer = .allocate(byteCount: 64 * 1024, alignment: 16)
    /// Whether the last batch took less than the spin: then the next one is probably on its
    /// way, and looking for it costs less than sleeping and being woken.
    private var lastBatchWasShort = false

    /// The job running now, as output frames name it.
    private var runningBatchID: UInt64 = 0
    /// Written by `_JobRun` as each job starts; lives as long as the process.
    private let runningPositionStorage: UnsafeMutablePointer<Int> = {
        let storage = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        storage.initialize(to: 0)
        return storage
    }()
    private var runningPosition: Int {
        get { runningPositionStorage.pointee }
        set { runningPositionStorage.pointee = newValue }
    }

    /// Moves a value out, leaving an empty one, so the run can own the buffer uniquely.
    private func take(_ writer: inout WireWriter) -> WireWriter {
        var taken = WireWriter()
        swap(&taken, &writer)
        return taken
    }

    /// Results are sent when a batch ends, or sooner once this much time has passed since the
    /// last send, so the coordinator learns of finished work (and of where a crash happened)
    /// without a write per tiny job.
    private static let flushInterval: Duration = .milliseconds(2)

    init(registry: JobRegistry, input: DescriptorBox, output: DescriptorBox, inputIsNonBlocking: Bool) {
        self.inputIsNonBlocking = inputIsNonBlocking
        self.registry = registry
        self.input = input
        self.output = output
    }

    /// Serves until the coordinator goes away; ends the process rather than return.
    nonisolated(nonsending) func run() async {
        StreamedOutput.install { [self] stream, bytes in sendOutput(stream: stream, bytes: bytes) }
        writer.writePreamble()
        WorkerHello(processID: Int(WorkerProcess.processID), jobNames: registry.names).write(to: &writer)
        flush()
        do {
            while true {
                let frame = try readFrame()
                switch frame {
                case nil:
                    WorkerProcess.exitProcess(0)  // the coordinator closed the connection
                case .coordinatorHello(let hello)?:
                    maximumFrameSize = hello.maximumFrameSize
                    reader.maximumFrameSize = hello.maximumFrameSize
                case .shutdown?:
                    WorkerProcess.exitProcess(0)
                case .jobs(let byteCount)?:
                    WorkerProcess.isRunningJob.store(true, ordering: .releasing)
                    let started = ContinuousClock.now
                    try await runBatch(byteCount: byteCount)
                    lastBatchWasShort = ContinuousClock.now - started < .microseconds(50)
                    WorkerProcess.isRunningJob.store(false, ordering: .releasing)
                }
            }
        } catch {
            fail("\(error)")
        }
    }

    private enum IncomingFrame {
        case coordinatorHello(CoordinatorHello)
        case jobs(byteCount: Int)
        case shutdown
    }

    /// Blocks until a whole frame has arrived; nil at end of stream.
    private func readFrame() throws -> IncomingFrame? {
        while true {
            let frame = try reader.nextFrame { type, body -> IncomingFrame in
                switch FrameType(rawValue: type) {
                case .coordinatorHello?:
                    return .coordinatorHello(try CoordinatorHello(body: body))
                case .jobs?:
                    reserveBatch(body.count)
                    batch.copyMemory(from: body)
                    return .jobs(byteCount: body.count)
                case .shutdown?:
                    return .shutdown
                default:
                    throw WireError("unexpected frame type \(type) from the coordinator")
                }
            }
            if let frame { return frame }
            if let (type, length) = reader.partialFrameHeader(minimumLength: Self.directReadThreshold),
               FrameType(rawValue: type) == .jobs {
                return .jobs(byteCount: try readJobsBodyDirectly(length: length))
            }
            var ended = false
            try reader.readIntoStorage { buffer in
                let count = try lastBatchWasShort
                    ? input.descriptor.readSpinning(into: buffer, for: .microseconds(50), readsWithoutWaiting: inputIsNonBlocking)
                    : input.descriptor.readWaiting(into: buffer)
                ended = count == 0
                return count
            }
            if ended {
                if reader.bufferedByteCount > 0 { throw WireError("the coordinator's stream ended inside a frame") }
                return nil
            }
        }
    }

    /// A jobs frame at least this long is read straight into the batch buffer once its header
    /// has arrived, rather than gathered in the frame reader and copied over (for an 8 MiB
    /// input, the copy took a third of the worker's time).
    static let directReadThreshold = 256 * 1024

    /// Reads the rest of the partial jobs frame of `length` bytes that the reader holds into
    /// `batch`; returns the body's size.
    private func readJobsBodyDirectly(length: Int) throws -> Int {
        let bodyCount = length - 1
        reserveBatch(bodyCount)
        var filled = reader.takePartialFrameBody(into: batch)
        while filled < bodyCount {
            let count = try input.descriptor.readWaiting(into: UnsafeMutableRawBufferPointer(rebasing: batch[filled..<bodyCount]))
            if count == 0 { throw WireError("the coordinator's stream ended inside a frame") }
            filled += count
        }
        return bodyCount
    }

    /// Makes `batch` hold at least `byteCount` bytes (its contents are not kept).
    private func reserveBatch(_ byteCount: Int) {
        guard batch.count < byteCount else { return }
        batch.deallocate()
        batch = .allocate(byteCount: max(byteCount, batch.count * 2), alignment: 16)
    }

    private nonisolated(nonsending) func runBatch(byteCount: Int) async throws {
        var jobs = try JobsFrameReader(body: UnsafeRawBufferPointer(rebasing: batch[0..<byteCount]))
        let clock = ContinuousClock()
        var firstPosition = 0
        var position = 0
        var frameStart = writer.beginResultsFrame()
        var sectionStart = clock.now
        // Reading the clock costs about as much as a tiny job: once jobs prove fast, only look
        // every 64th job.
        var checkClockEvery = 1
        // Room for the results header spliced in at the end, and the frame header.
        let frameLimit = maximumFrameSize - WireProtocol.frameOverhead

        func endSection(at now: ContinuousClock.Instant, keeping carried: [UInt8] = []) throws {
            try endResults(frameStart, batchID: jobs.batchID, firstPosition: firstPosition, count: position - firstPosition, elapsed: now - sectionStart)
            flush()
            firstPosition = position
            frameStart = writer.beginResultsFrame()
            writer.bytes.append(contentsOf: carried)
            sectionStart = now
        }

        runningBatchID = jobs.batchID
        var current = try jobs.next()
        while let job = current {
            let resultStart: Int
            if job.jobIndex < registry.handlers.count {
                // Consecutive jobs of one type run in one call to its entry point, up to the
                // next look at the clock (or one, when each result is reported at once).
                let limit = jobs.flags.contains(.reportEachResult) ? 1 : checkClockEvery - position % checkClockEvery
                var run = _JobRun(
                    first: job, jobs: jobs, writer: take(&writer), position: position, limit: limit,
                    frameStart: frameStart, frameLimit: frameLimit, maximumFrameSize: maximumFrameSize,
                    runningPosition: runningPositionStorage)
                await registry.handlers[job.jobIndex].perform(&run)
                precondition(run.finished > 0 || run.error != nil, "the entry point of job \"\(registry.handlers[job.jobIndex].name)\" returned without running its job")
                writer = take(&run.writer)
                jobs = run.jobs
                if let error = run.error { throw error }
                position += run.finished
                resultStart = run.lastResultStart
                current = run.next
            } else {
                runningPosition = position
                resultStart = writer.bytes.count
                WireOutcome.unknownJob(index: job.jobIndex).write(to: &writer)
                position += 1
                current = try jobs.next()
            }
            if writer.bytes.count - frameStart > frameLimit && position - 1 > firstPosition {
                // The last result overflowed the frame: send the ones before it, and start the
                // next frame with it.
                let carried = Array(writer.bytes[resultStart...])
                writer.bytes.removeSubrange(resultStart...)
                position -= 1
                try endSection(at: clock.now, keeping: carried)
                position += 1
            }
            if jobs.flags.contains(.reportEachResult) && position < jobs.count {
                try endSection(at: clock.now)
            } else if position % checkClockEvery == 0 && position < jobs.count {
                let now = clock.now
                if now - sectionStart >= Self.flushInterval {
                    try endSection(at: now)
                } else if checkClockEvery == 1 && position - firstPosition >= 8 && now - sectionStart < .microseconds(100) {
                    checkClockEvery = 64
                }
            }
        }
        try endResults(frameStart, batchID: jobs.batchID, firstPosition: firstPosition, count: position - firstPosition, elapsed: clock.now - sectionStart)
        flush()
    }

    /// Leading bytes of `writer` that are not part of the stream: the unused part of the room
    /// before a results frame that starts at the front.
    private var frontGap = 0

    /// Completes the results frame, and drops the unused room before it (or, at the front of
    /// the buffer, skips it when sending).
    private func endResults(_ frameStart: Int, batchID: UInt64, firstPosition: Int, count: Int, elapsed: Duration) throws {
        let nanoseconds = elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
        let header = ResultsHeader(batchID: batchID, firstPosition: firstPosition, count: count, elapsedNanoseconds: UInt64(max(0, nanoseconds)))
        let start: Int
        do {
            start = try writer.endResultsFrame(startingAt: frameStart, header: header, maximumFrameSize: maximumFrameSize)
        } catch {
            // Each output was checked against the limit, but together they may exceed it.
            fail("a results \(error)")
        }
        if frameStart == 0 && frontGap == 0 {
            frontGap = start
        } else {
            writer.bytes.removeSubrange(frameStart..<start)
        }
    }

    /// Writes output of the running job in frames of its own, now: results of earlier jobs
    /// of the batch may still be waiting in `writer` (which the job's `perform` is using).
    private func sendOutput(stream: Int, bytes: UnsafeRawBufferPointer) {
        let room = max(1, maximumFrameSize - WireProtocol.frameOverhead - 32)
        var offset = 0
        repeat {
            let end = min(bytes.count, offset + room)
            var frame = WireWriter(reservingCapacity: end - offset + 32)
            do {
                try OutputFrameHeader.write(
                    batchID: runningBatchID, position: runningPosition, stream: UInt8(stream + 1),
                    bytes: UnsafeRawBufferPointer(rebasing: bytes[offset..<end]), to: &frame, maximumFrameSize: maximumFrameSize)
                try frame.bytes.withUnsafeBytes { try output.descriptor.writeAll($0) }
            } catch {
                WorkerProcess.exitProcess(0)  // the coordinator is gone
            }
            offset = end
        } while offset < bytes.count
    }

    private func flush() {
        guard writer.bytes.count > frontGap else { return }
        do {
            try writer.bytes.withUnsafeBytes { bytes in try output.descriptor.writeAll(UnsafeRawBufferPointer(rebasing: bytes[frontGap...])) }
        } catch {
            // The coordinator is gone; nobody is left to serve.
            WorkerProcess.exitProcess(0)
        }
        frontGap = 0
        // Keep the buffer for the next batch, unless it grew past what large outputs need.
        writer.bytes.removeAll(keepingCapacity: writer.bytes.capacity <= 16 << 20)
    }

    private func fail(_ message: String) -> Never {
        WorkerProcess.writeDiagnostic("multiprocessing worker \(WorkerProcess.processID): \(message)")
        writer.bytes.removeAll()
        frontGap = 0
        let start = writer.beginFrame(.fatal)
        writer.bytes.append(contentsOf: Array(message.utf8))
        try? writer.endFrame(startingAt: start, maximumFrameSize: WireProtocol.absoluteMaximumFrameSize)
        flush()
        WorkerProcess.exitProcess(2)
    }
}
