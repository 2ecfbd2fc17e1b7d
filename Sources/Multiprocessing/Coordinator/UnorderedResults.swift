/// The results of ``ProcessPool/mapUnordered(_:_:)``: each input's index and output, in the
/// order jobs finish.
public struct UnorderedResults<Output: Decodable & Sendable, Inputs: Sequence>: AsyncSequence where Inputs.Element: Encodable {
    /// An input's position in the sequence given to `mapUnordered`, and its job's output.
    public typealias Element = (index: Int, output: Output)

    let core: PoolCore
    let jobName: String
    /// The call's options, or why they are out of range (thrown by the first `next()`).
    let options: Result<ResolvedJobOptions, ProcessPoolError>
    let inputs: Inputs

    /// Starts the call: inputs are read and jobs queued as the iterator is advanced.
    public func makeAsyncIterator() -> Iterator {
        switch options {
        case .success(let options):
            return Iterator(run: .success(UnorderedRun(core: core, jobName: jobName, options: options, inputs: InputIterator(inputs))))
        case .failure(let error):
            return Iterator(run: .failure(error))
        }
    }

    /// Yields results as they arrive and keeps the workers fed.
    public struct Iterator: AsyncIteratorProtocol {
        var run: Result<UnorderedRun<Output, Inputs>, ProcessPoolError>?

        /// The next finished job's index and output, or nil when every input has been yielded.
        ///
        /// - Throws: The first failing job's ``ProcessPoolError``; `CancellationError` if the
        ///   task is cancelled (the remaining jobs are cancelled too).
        public mutating func next() async throws -> Element? {
            switch run {
            case .success(let run)?:
                return try await run.next()
            case .failure(let error)?:
                self.run = nil  // thrown once; then the sequence is over
                throw error
            case nil:
                return nil
            }
        }
    }
}

/// One `mapUnordered` call in progress. Cancels its queued jobs when the iterator is dropped.
final class UnorderedRun<Output: Decodable & Sendable, Inputs: Sequence> where Inputs.Element: Encodable {
    private let core: PoolCore
    private let sink: UnorderedSink<Output>
    private var producer: InputProducer<Inputs>
    /// How many jobs may be outstanding (queued, running, or finished but not yet taken).
    private let window: Int

    init(core: PoolCore, jobName: String, options: ResolvedJobOptions, inputs: InputIterator<Inputs>) {
        self.core = core
        let sink = UnorderedSink<Output>()
        self.sink = sink
        producer = InputProducer(core: core, jobName: jobName, options: options, inputs: inputs, sink: sink)
        window = max(1, core.configuration.maximumQueuedJobs)
    }

    deinit {
        sink.abandon()
        core.noteCancellation()
    }

    func next() async throws -> (index: Int, output: Output)? {
        let sink = sink
        let core = core
        return try await withTaskCancellationHandler {
            try await topUp()
            return try await sink.next()
        } onCancel: {
            sink.fail(CancellationError())
            core.noteCancellation()
        }
    }

    /// Queues more inputs while fewer than half the window are outstanding.
    private func topUp() async throws {
        guard !producer.isExhausted, sink.outstanding < window / 2 + 1 else { return }
        while !producer.isExhausted && sink.isAcceptingResults {
            let room = window - sink.outstanding
            guard room > 0 else { break }
            let sink = sink
            guard let chunk = producer.nextChunk(limit: room, onEncodingFailure: { sink.fail($1) }) else { break }
            sink.noteSubmitted(chunk.count)
            try await core.enqueue(chunk)
        }
        if producer.isExhausted { sink.finishSubmitting() }
    }
}
