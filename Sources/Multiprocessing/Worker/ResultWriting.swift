/// Writes a job's result into a results frame around the call to its entry point, which
/// the worker loop makes itself: one asynchronous call per job, into code specialised for the
/// job's types.
///
/// The output is encoded straight into the results frame (see
/// ``WireWriter/beginSucceededResult(codec:)``) rather than into a buffer of its own and copied:
/// for a large output that copy costs as much as sending it. This type decides what a job's
/// ending becomes; the results frame's bytes are written in Wire/.
enum ResultWriting {
    /// Writes the start of a successful result and room for its length; returns where the
    /// result and its length start, or nil (after writing a failed result) for an unknown codec.
    static func begin(codec rawCodec: UInt8, into writer: inout WireWriter) -> (codec: PayloadCodec, resultStart: Int, lengthAt: Int)? {
        guard let codec = PayloadCodec(rawValue: rawCodec) else {
            WireOutcome.inputDecodingFailed("unknown payload codec \(rawCodec)").write(to: &writer)
            return nil
        }
        let (resultStart, lengthAt) = writer.beginSucceededResult(codec: rawCodec)
        return (codec, resultStart, lengthAt)
    }

    /// Completes the result `begin` started: fills in the output's length, or replaces the
    /// result with the failure.
    static func finish(_ status: _JobRunStatus, resultStart: Int, lengthAt: Int, maximumFrameSize: Int, into writer: inout WireWriter) {
        let failure: WireOutcome
        switch status {
        case .succeeded:
            let length = writer.succeededOutputLength(lengthAt: lengthAt)
            // Leave room for the frame and result headers within the frame limit.
            let limit = WireProtocol.maximumPayloadSize(inFramesOf: maximumFrameSize)
            guard length > limit else {
                writer.endSucceededResult(outputLength: length, lengthAt: lengthAt)
                return
            }
            failure = .outputEncodingFailed("the output is \(length) bytes; frames of at most \(maximumFrameSize) bytes carry outputs of up to \(limit) bytes")
        case .threw(let typeName, let description):
            failure = .threw(typeName: typeName, description: description)
        case .inputDecodingFailed(let description):
            failure = .inputDecodingFailed(description)
        case .outputEncodingFailed(let description):
            failure = .outputEncodingFailed(description)
        }
        writer.replaceResult(startingAt: resultStart, with: failure)
    }
}

/// The jobs a worker serves, in the order announced in its hello (the wire refers to them by
/// that position).
struct JobRegistry {
    /// Each job's entry point, compiled in the module that declares the job.
    let handlers: [_JobEntryPoint]

    init(_ jobs: [any Job.Type]) throws(ProcessPoolError) {
        var seen: Set<String> = []
        var handlers: [_JobEntryPoint] = []
        for job in jobs {
            let handler = job._workerEntryPoint()
            guard seen.insert(handler.name).inserted else {
                throw ProcessPoolError(.unknownJob, "two registered jobs share the name \"\(handler.name)\"; give one a distinct `static let name`")
            }
            handlers.append(handler)
        }
        self.handlers = handlers
    }

    var names: [String] { handlers.map(\.name) }
}
