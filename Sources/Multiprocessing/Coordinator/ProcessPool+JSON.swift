/// Jobs named at run time with JSON payloads, for tools (the `pool map` command) that do not
/// link the job types.
extension ProcessPool {
    /// Queues the job named `jobName` with an input already encoded as JSON; the future yields
    /// the output as the worker's JSON.
    ///
    /// - Parameters:
    ///   - jobName: The job's name, as the worker announced it.
    ///   - json: The input, as UTF-8 JSON for the job's `Input` type.
    ///   - options: A timeout or retry count for this job.
    /// - Returns: A future for the output's JSON bytes.
    /// - Throws: ``ProcessPoolError`` if the input is over the frame limit or the pool is shut
    ///   down. A worker that cannot decode the JSON fails the future with `decodingFailed`.
    package func submit(jobName: String, json: [UInt8], options: JobOptions = JobOptions()) async throws -> JobFuture<[UInt8]> {
        var builder = ChunkBuilder(codec: .json, maximumFrameSize: core.configuration.maximumFrameSize, expectedCount: 1)
        do {
            try builder.appendEncoded(json)
        } catch {
            throw error.forJob(name: jobName, inputIndex: nil)
        }
        let id = core.reserveJobIDs(1)
        let sink = FutureSink<[UInt8]> { run in
            switch run.firstOutcome {
            case .succeeded(let codec, let payload):
                // What a worker sends is checked, never passed through: one JSON value, on one line.
                func violation(_ message: String) -> Result<[UInt8], ProcessPoolError> {
                    var error = ProcessPoolError(.protocolViolation, message)
                    error.jobID = run.firstJobID
                    error.workerProcessID = run.workerProcessID
                    return .failure(error.forJob(name: run.jobName, inputIndex: nil))
                }
                guard codec == .json else { return violation("the worker answered a JSON job in codec \(codec.rawValue), not JSON") }
                do {
                    _ = try JSONParser.parse(payload)
                } catch {
                    return violation("the worker's output is not one JSON value: \(error)")
                }
                // In valid JSON a line break can only be whitespace between tokens, and a byte
                // order mark only its first three bytes: both go, so the output is one line.
                var output = Array(payload)
                if output.starts(with: [0xEF, 0xBB, 0xBF]) { output.removeFirst(3) }
                output.removeAll { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }
                return .success(output)
            case .failed(var error):
                error.jobID = error.jobID ?? run.firstJobID
                return .failure(error.forJob(name: run.jobName, inputIndex: nil))
            }
        }
        let resolved = try ResolvedJobOptions(options, defaults: core.configuration)
        try await core.enqueue(builder.build(sink: sink, jobName: jobName, firstIndex: 0, firstJobID: id, options: resolved))
        return JobFuture(sink: sink, core: core, id: id)
    }
}
