/// What became of one job, as handed to the call that submitted it.
enum JobOutcome {
    /// The job ran; its output's bytes are valid only during the delivery call.
    case succeeded(codec: PayloadCodec, payload: UnsafeRawBufferPointer)
    /// Boxed: an error is large, and a tiny job's outcome is copied in its frame's array.
    indirect case failed(ProcessPoolError)
}

/// The outcomes of consecutive jobs of one call: inputs `firstIndex`, `firstIndex + 1`, …
///
/// Results are delivered a run at a time (usually a whole batch), so a sink takes its lock and
/// looks up its generic machinery once per run rather than once per job.
struct ResultRun {
    let firstIndex: Int
    let firstJobID: UInt64
    let jobName: String
    /// The worker that answered, when one did (nil for jobs that failed without reaching one).
    var workerProcessID: Int32?
    private let storage: Storage

    private enum Storage {
        /// Outcomes of any kind. A slice, so that a frame answering several calls is not
        /// copied out per call.
        case outcomes(ArraySlice<JobOutcome>)
        /// Results that all succeeded, as the results frame holds them (status, known codec,
        /// length-prefixed output), already checked: decoded straight from the frame.
        case succeeded(SucceededResults)
    }

    init(firstIndex: Int, firstJobID: UInt64, jobName: String, outcomes: ArraySlice<JobOutcome>) {
        self.firstIndex = firstIndex
        self.firstJobID = firstJobID
        self.jobName = jobName
        storage = .outcomes(outcomes)
    }

    init(firstIndex: Int, firstJobID: UInt64, jobName: String, outcomes: [JobOutcome]) {
        self.init(firstIndex: firstIndex, firstJobID: firstJobID, jobName: jobName, outcomes: outcomes[...])
    }

    init(firstIndex: Int, firstJobID: UInt64, jobName: String, succeeded: SucceededResults) {
        self.firstIndex = firstIndex
        self.firstJobID = firstJobID
        self.jobName = jobName
        storage = .succeeded(succeeded)
    }

    /// How many jobs the run answers.
    var count: Int {
        switch storage {
        case .outcomes(let outcomes): outcomes.count
        case .succeeded(let results): results.count
        }
    }

    /// Each job's outcome, in order. Successful outputs point into the frame being read: valid
    /// only during delivery.
    var outcomes: ArraySlice<JobOutcome> {
        switch storage {
        case .outcomes(let outcomes):
            return outcomes
        case .succeeded(let results):
            var outcomes: [JobOutcome] = []
            outcomes.reserveCapacity(results.count)
            results.forEach { codec, payload in outcomes.append(.succeeded(codec: codec, payload: payload)) }
            return outcomes[...]
        }
    }

    /// The first job's outcome: the only one, for a run of a single job.
    var firstOutcome: JobOutcome {
        switch storage {
        case .outcomes(let outcomes):
            return outcomes[outcomes.startIndex]
        case .succeeded(let results):
            // A future's run: read its one result without building an array.
            var cursor = results.makeCursor()
            let (codec, payload) = cursor.next()
            return .succeeded(codec: codec, payload: payload)
        }
    }

    /// Decodes every output, in order, straight into one array; the first failure instead.
    /// For `map`, which needs all or nothing: no `Result` per job on the way.
    func decodedOutputs<Output: Decodable>(_ type: Output.Type) -> Result<[Output], ProcessPoolError> {
        var outputs: [Output] = []
        if let failure = appendDecodedOutputs(type, to: &outputs) { return .failure(failure) }
        return .success(outputs)
    }

    /// Decodes every output, in order, onto the end of `outputs`; returns the first failure
    /// instead, leaving `outputs` partly appended to. Specialised for the commonest outputs of
    /// tiny jobs, where generic decoding would cost more than the job.
    @_specialize(where Output == Int)
    @_specialize(where Output == Double)
    func appendDecodedOutputs<Output: Decodable>(_ type: Output.Type, to outputs: inout [Output]) -> ProcessPoolError? {
        // Only into an empty array: reserving room in a growing one would defeat its
        // geometric growth and copy it on every run.
        if outputs.isEmpty { outputs.reserveCapacity(count) }
        if case .succeeded(let results) = storage {
            // Straight from the frame, with no outcome per job on the way.
            var cursor = results.makeCursor()
            for offset in 0..<results.count {
                let (codec, payload) = cursor.next()
                if let output = try? PayloadCoding.decode(type, codec: codec, from: payload) {
                    outputs.append(output)
                } else {
                    // Let the general path describe the failure (or, for a type whose decoding
                    // is not deterministic, produce the output after all).
                    switch JobOutcome.succeeded(codec: codec, payload: payload).decoded(
                        type, index: firstIndex + offset, jobID: firstJobID + UInt64(offset), jobName: jobName) {
                    case .success(let output): outputs.append(output)
                    case .failure(let error): return error
                    }
                }
            }
            return nil
        }
        for (offset, outcome) in outcomes.enumerated() {
            if case .succeeded(let codec, let payload) = outcome, let output = try? PayloadCoding.decode(type, codec: codec, from: payload) {
                outputs.append(output)
                continue
            }
            // A failure, or an output that does not decode: let the general path describe it
            // (or, for a type whose decoding is not deterministic, produce the output after all).
            switch outcome.decoded(type, index: firstIndex + offset, jobID: firstJobID + UInt64(offset), jobName: jobName) {
            case .success(let output): outputs.append(output)
            case .failure(let error): return error
            }
        }
        return nil
    }

    /// Decodes every outcome, in order.
    func decoded<Output: Decodable>(_ type: Output.Type, reportingIndex: Bool) -> [Result<Output, ProcessPoolError>] {
        outcomes.enumerated().map { offset, outcome in
            outcome.decoded(
                type, index: reportingIndex ? firstIndex + offset : nil,
                jobID: firstJobID + UInt64(offset), jobName: jobName)
        }
    }
}

/// Where a call's results go: a future, a `map`'s array, an unordered stream.
///
/// The event loop calls `deliver` on its thread; implementations decode outputs there and keep
/// their own state behind a lock, resuming any waiting task outside it.
protocol ResultSink: AnyObject, Sendable {
    /// False once the call wants no more results (cancelled, failed, or abandoned): its queued
    /// jobs are dropped instead of sent.
    var isAcceptingResults: Bool { get }

    /// Delivers the outcomes of a run of consecutive jobs.
    func deliver(_ run: ResultRun)

    /// Passes on output a running job streamed (stream 0 stdout, 1 stderr); the bytes are
    /// valid only during the call.
    func receiveOutput(stream: Int, bytes: UnsafeRawBufferPointer)
}

extension ResultSink {
    func receiveOutput(stream: Int, bytes: UnsafeRawBufferPointer) {}
}

extension JobOutcome {
    /// Decodes a successful output, turning every failure into a ``ProcessPoolError`` that
    /// names the job.
    func decoded<Output: Decodable>(_ type: Output.Type, index: Int?, jobID: UInt64, jobName: String) -> Result<Output, ProcessPoolError> {
        switch self {
        case .failed(var error):
            if jobID != 0 { error.jobID = error.jobID ?? jobID }  // 0: the job never got an id
            return .failure(error.forJob(name: jobName, inputIndex: index))
        case .succeeded(let codec, let payload):
            do {
                return .success(try PayloadCoding.decode(type, codec: codec, from: payload))
            } catch {
                var failure = ProcessPoolError(.decodingFailed, "cannot decode the output as \(Output.self): " + PayloadCoding.describe(error))
                failure.jobID = jobID
                return .failure(failure.forJob(name: jobName, inputIndex: index))
            }
        }
    }
}
