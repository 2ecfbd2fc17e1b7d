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
            case .succeeded(_, let payload):
                return .success(Array(payload))
            case .failed(var error):
                error.jobID = error.jobID ?? run.firstJobID
                return .failure(error.forJob(name: run.jobName, inputIndex: nil))
            }
        }
        let resolved = ResolvedJobOptions(options, defaults: core.configuration)
        try await core.enqueue(builder.build(sink: sink, jobName: jobName, firstIndex: 0, firstJobID: id, options: resolved))
        return JobFuture(sink: sink, core: core, id: id)
    }
}
