/// Runs jobs of one registered type inside a worker: decodes the input, calls `run`, encodes the
/// output. Subclassed per job type so the worker loop stays free of generics.
class AnyJobHandler {
    let name: String

    init(name: String) { self.name = name }

    /// Runs one job and appends its outcome to `writer` in results-frame form.
    nonisolated(nonsending) func perform(codec: UInt8, payload: UnsafeRawBufferPointer, maximumFrameSize: Int, into writer: inout WireWriter) async {
        fatalError("abstract")
    }
}

final class JobHandler<J: Job>: AnyJobHandler {
    /// Created on first use and kept for the life of the worker process.
    private var instance: J?
    /// Reused for every output, so encoding does not allocate once it has grown.
    private var scratch: [UInt8] = []

    init() { super.init(name: J.name) }

    override nonisolated(nonsending) func perform(codec rawCodec: UInt8, payload: UnsafeRawBufferPointer, maximumFrameSize: Int, into writer: inout WireWriter) async {
        guard let codec = PayloadCodec(rawValue: rawCodec) else {
            WireOutcome.inputDecodingFailed("unknown payload codec \(rawCodec)").write(to: &writer)
            return
        }
        let input: J.Input
        do {
            input = try PayloadCoding.decode(J.Input.self, codec: codec, from: payload)
        } catch {
            WireOutcome.inputDecodingFailed("cannot decode \(J.Input.self): " + PayloadCoding.describe(error)).write(to: &writer)
            return
        }
        let job: J
        if let instance {
            job = instance
        } else {
            job = J()
            instance = job
        }
        let output: J.Output
        do {
            output = try await job.run(input)
        } catch {
            WireOutcome.threw(typeName: String(reflecting: type(of: error)), description: String(describing: error)).write(to: &writer)
            return
        }
        scratch.removeAll(keepingCapacity: true)
        do {
            try PayloadCoding.encode(output, codec: codec, into: &scratch)
        } catch {
            WireOutcome.outputEncodingFailed("cannot encode \(J.Output.self): " + PayloadCoding.describe(error)).write(to: &writer)
            return
        }
        // Leave room for the frame and result headers within the frame limit.
        let limit = WireProtocol.maximumPayloadSize(inFramesOf: maximumFrameSize)
        guard scratch.count <= limit else {
            WireOutcome.outputEncodingFailed("the output is \(scratch.count) bytes; frames of at most \(maximumFrameSize) bytes carry outputs of up to \(limit) bytes").write(to: &writer)
            return
        }
        scratch.withUnsafeBytes { WireOutcome.succeeded(codec: rawCodec, payload: $0).write(to: &writer) }
        if scratch.count > 16 << 20 { scratch = [] }  // do not pin a huge buffer between jobs
    }
}

/// The jobs a worker serves, in the order announced in its hello (the wire refers to them by
/// that position).
struct JobRegistry {
    let handlers: [AnyJobHandler]

    init(_ jobs: [any Job.Type]) throws(ProcessPoolError) {
        var seen: Set<String> = []
        var handlers: [AnyJobHandler] = []
        for job in jobs {
            let handler = Self.makeHandler(job)
            guard seen.insert(handler.name).inserted else {
                throw ProcessPoolError(.unknownJob, "two registered jobs share the name \"\(handler.name)\"; give one a distinct `static let name`")
            }
            handlers.append(handler)
        }
        self.handlers = handlers
    }

    private static func makeHandler<J: Job>(_ job: J.Type) -> AnyJobHandler { JobHandler<J>() }

    var names: [String] { handlers.map(\.name) }
}
