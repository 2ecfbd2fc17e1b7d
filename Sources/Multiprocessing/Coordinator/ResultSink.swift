/// What became of one job, as handed to the call that submitted it.
enum JobOutcome {
    /// The job ran; its output's bytes are valid only during the delivery call.
    case succeeded(codec: PayloadCodec, payload: UnsafeRawBufferPointer)
    case failed(ProcessPoolError)
}

/// Where a call's results go: a future, a `map`'s array, an unordered stream.
///
/// The event loop calls `deliver` on its thread; implementations decode outputs there and keep
/// their own state behind a lock, resuming any waiting task outside it.
protocol ResultSink: AnyObject, Sendable {
    /// False once the call wants no more results (cancelled, failed, or abandoned): its queued
    /// jobs are dropped instead of sent.
    var isAcceptingResults: Bool { get }

    /// Delivers the outcome of the job with input index `index`.
    func deliver(index: Int, jobID: UInt64, jobName: String, outcome: JobOutcome)
}

extension JobOutcome {
    /// Decodes a successful output, turning every failure into a ``ProcessPoolError`` that
    /// names the job.
    func decoded<Output: Decodable>(_ type: Output.Type, index: Int?, jobID: UInt64, jobName: String) -> Result<Output, ProcessPoolError> {
        switch self {
        case .failed(var error):
            error.jobID = error.jobID ?? jobID
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
