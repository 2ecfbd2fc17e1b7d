/// Many inputs at once: ordered, as results, and unordered.
extension ProcessPool {
    /// Runs `job` on every input and returns the outputs in input order.
    ///
    /// Inputs are read lazily, with a bounded number queued, so a long sequence is never held
    /// in memory as encoded inputs. Jobs are batched automatically.
    ///
    /// - Parameters:
    ///   - job: The job type.
    ///   - inputs: The inputs; read once, from the calling task.
    ///   - options: A timeout or retry count for these jobs, overriding the pool's.
    ///   - isolation: The actor the inputs are read on: the caller's, so a sequence that is
    ///     not `Sendable` can be passed from any actor.
    /// - Returns: One output per input, in input order.
    /// - Throws: The first ``ProcessPoolError`` of any job, whose
    ///   ``ProcessPoolError/inputIndex`` says which input failed; the remaining jobs are
    ///   cancelled. `CancellationError` if the task is cancelled.
    public func map<J: Job, Inputs: Sequence>(
        _ job: J.Type, _ inputs: Inputs, options: JobOptions = JobOptions(), isolation: isolated (any Actor)? = #isolation
    ) async throws -> [J.Output]
    where Inputs.Element == J.Input {
        let sink = OrderedSink<J.Output>(appending: { run, outputs in run.appendDecodedOutputs(J.Output.self, to: &outputs) })
        return try await collect(job, inputs, options: options, isolation: isolation, into: sink, encodingFailure: { sink.fail($1) })
    }

    /// Runs `job` on every input and returns each job's outcome, in input order. A failing job
    /// never fails the call.
    ///
    /// - Parameters:
    ///   - job: The job type.
    ///   - inputs: The inputs; read once, from the calling task.
    ///   - options: A timeout or retry count for these jobs, overriding the pool's.
    ///   - isolation: The actor the inputs are read on: the caller's.
    /// - Returns: One result per input, in input order.
    /// - Throws: ``ProcessPoolError`` if the pool is shut down; `CancellationError` if the task
    ///   is cancelled.
    public func mapResults<J: Job, Inputs: Sequence>(
        _ job: J.Type, _ inputs: Inputs, options: JobOptions = JobOptions(), isolation: isolated (any Actor)? = #isolation
    ) async throws -> [Result<J.Output, ProcessPoolError>]
    where Inputs.Element == J.Input {
        let sink = OrderedSink<Result<J.Output, ProcessPoolError>> { run in
            .success(run.decoded(J.Output.self, reportingIndex: true))
        }
        return try await collect(job, inputs, options: options, isolation: isolation, into: sink) { index, error in
            sink.deliver(ResultRun(firstIndex: index, firstJobID: 0, jobName: J.name, outcomes: [.failed(error)]))
        }
    }

    /// Runs `job` on every input and yields `(index, output)` pairs as jobs finish, in any
    /// order.
    ///
    /// Inputs are read as the sequence is iterated, with a bounded number outstanding, so a
    /// slow consumer holds back the producer rather than filling memory. Stopping the iteration
    /// early cancels the jobs not yet sent.
    ///
    /// - Parameters:
    ///   - job: The job type.
    ///   - inputs: The inputs; read once, during iteration.
    ///   - options: A timeout or retry count for these jobs, overriding the pool's.
    /// - Returns: An asynchronous sequence that yields every input's index and output exactly
    ///   once, and throws the first job's failure (a ``ProcessPoolError`` with the input index).
    public func mapUnordered<J: Job, Inputs: Sequence>(
        _ job: J.Type, _ inputs: Inputs, options: JobOptions = JobOptions()
    ) -> UnorderedResults<J.Output, Inputs> where Inputs.Element == J.Input {
        UnorderedResults(
            core: core, jobName: J.name, options: Result { () throws(ProcessPoolError) in try ResolvedJobOptions(options, defaults: core.configuration) },
            inputs: inputs)
    }

    /// Encodes and queues every input, then waits for the sink to complete.
    private func collect<J: Job, Inputs: Sequence, Element>(
        _ job: J.Type,
        _ inputs: Inputs,
        options: JobOptions,
        isolation: isolated (any Actor)?,
        into sink: OrderedSink<Element>,
        encodingFailure: (Int, ProcessPoolError) -> Void
    ) async throws -> [Element] where Inputs.Element == J.Input {
        // The inputs are read here, on the caller's actor (the sequence and its closures may be
        // bound to it); a closure handed to withTaskCancellationHandler would lose that.
        var producer = InputProducer(
            core: core, jobName: J.name, options: try ResolvedJobOptions(options, defaults: core.configuration),
            inputs: InputIterator(inputs), sink: sink)
        do {
            while sink.isAcceptingResults, let chunk = producer.nextChunk(limit: Int.max, onEncodingFailure: encodingFailure) {
                try Task.checkCancellation()
                try await core.enqueue(chunk)
            }
            try Task.checkCancellation()
        } catch {
            // Cancelled, or the pool refused the work: drop what was queued.
            sink.fail(error)
            core.noteCancellation()
            throw error
        }
        sink.finishSubmitting(total: producer.count)
        return try await withTaskCancellationHandler {
            try await sink.results()
        } onCancel: {
            sink.fail(CancellationError())
            core.noteCancellation()
        }
    }
}

/// Reads inputs and encodes them into chunks, from the task that consumes the call.
struct InputProducer<Base: Sequence> where Base.Element: Encodable {
    let core: PoolCore
    let jobName: String
    let options: ResolvedJobOptions
    var inputs: InputIterator<Base>
    let sink: any ResultSink
    /// How many inputs have been read.
    private(set) var count = 0
    private(set) var isExhausted = false
    /// The first chunks are small so workers start early; later ones amortise the queue lock.
    private var chunkSize = 16

    init(core: PoolCore, jobName: String, options: ResolvedJobOptions, inputs: InputIterator<Base>, sink: any ResultSink) {
        self.core = core
        self.jobName = jobName
        self.options = options
        self.inputs = inputs
        self.sink = sink
    }

    /// Encodes up to `limit` more inputs; nil when the inputs are exhausted. An input that
    /// cannot be encoded ends the chunk before it and is reported through `onEncodingFailure`
    /// with its index.
    mutating func nextChunk(limit: Int, onEncodingFailure: (Int, ProcessPoolError) -> Void) -> JobChunk? {
        nextChunk: while !isExhausted {
            let size = min(chunkSize, limit)
            chunkSize = min(chunkSize * 2, 1024)
            var builder = ChunkBuilder(codec: .binary, maximumFrameSize: core.configuration.maximumFrameSize, expectedCount: size)
            let firstIndex = count
            if let integers = inputs.nextIntegers(upTo: size) {
                // A range of Int: encoded in one loop, without a generic call per input.
                builder.appendIntegers(integers)
                count += integers.count
                if integers.count < size { isExhausted = true }
            }
            while builder.count < size && builder.byteCount < 1 << 20 && !isExhausted {
                guard let input = inputs.next() else {
                    isExhausted = true
                    break
                }
                do {
                    try builder.append(input)
                    count += 1
                } catch {
                    let index = count
                    count += 1
                    onEncodingFailure(index, error.forJob(name: jobName, inputIndex: index))
                    if builder.count > 0 {
                        return builder.build(sink: sink, jobName: jobName, firstIndex: firstIndex, firstJobID: core.reserveJobIDs(builder.count), options: options)
                    }
                    continue nextChunk
                }
            }
            if builder.count > 0 {
                return builder.build(sink: sink, jobName: jobName, firstIndex: firstIndex, firstJobID: core.reserveJobIDs(builder.count), options: options)
            }
        }
        return nil
    }
}
