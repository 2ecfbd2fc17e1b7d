/// A unit of work that runs in a worker process.
///
/// Declare a job as a type with an `Input` and an `Output`, both `Codable`, and a `run` method.
/// The worker creates one instance per process, on first use, and reuses it for every job of
/// that type it runs, so expensive set-up in `init()` is paid once per worker:
///
/// ```swift
/// struct CountPrimes: Job {
///     static let name = "count-primes"
///     func run(_ range: ClosedRange<Int>) throws -> Int {
///         range.count { n in n > 1 && !(2..<n).contains { d in d * d <= n && n % d == 0 } }
///     }
/// }
/// ```
///
/// The coordinator refers to a job by its ``name``, so the same type (or one with the same name
/// and compatible `Codable` types) must be registered in the worker with
/// ``Worker/serve(jobs:)``.
public protocol Job {
    /// The value a job receives. It crosses a process boundary, so it is `Codable`.
    associatedtype Input: Codable & Sendable
    /// The value a job returns. It crosses a process boundary, so it is `Codable`.
    associatedtype Output: Codable & Sendable

    /// The name under which workers serve this job. Defaults to the type's name.
    static var name: String { get }

    /// Creates the job's per-worker instance. Runs once per worker process, on first use.
    init()

    /// Runs one job.
    ///
    /// It is called on the worker's job thread, one job at a time. A synchronous
    /// implementation is the cheapest kind: the worker calls it directly, in a loop over a run
    /// of jobs.
    ///
    /// - Parameter input: The job's input, decoded in the worker.
    /// - Returns: The output, encoded and sent back to the coordinator.
    /// - Throws: Any error; the caller receives a ``ProcessPoolError`` with code
    ///   ``ProcessPoolError/Code/jobThrew`` carrying its type and description.
    nonisolated(nonsending) func run(_ input: Input) async throws -> Output

    /// How a worker runs this job: an implementation detail of the library. Do not implement
    /// it; the default, compiled in the module that declares the job, calls ``run(_:)``
    /// directly rather than through generic code.
    static func _workerEntryPoint() -> _JobEntryPoint
}

extension Job {
    /// The default entry point: decodes each input, calls ``run(_:)`` and encodes the output,
    /// for a run of consecutive jobs of this type, specialised for its types where the job is
    /// declared. A synchronous `run` is then a plain call in a loop, with no asynchronous call
    /// (and no frame on the task's allocator) per job.
    @inlinable
    public static func _workerEntryPoint() -> _JobEntryPoint {
        var instance: Self?
        return _JobEntryPoint(name: name) { run in
            while let (codec, payload) = run.nextInput() {
                let input: Input
                do {
                    input = try PayloadCoding.decodeSpecialised(Input.self, codec: codec, from: payload)
                } catch {
                    run.finish(.inputDecodingFailed("cannot decode \(Input.self): " + PayloadCoding.describe(error)))
                    continue
                }
                let job: Self
                if let instance {
                    job = instance
                } else {
                    job = Self()
                    instance = job
                }
                let result: Output
                do {
                    result = try await job.run(input)
                } catch {
                    run.finish(.threw(typeName: String(reflecting: type(of: error)), description: String(describing: error)))
                    continue
                }
                do {
                    try run.appendOutput(result, codec: codec)
                } catch {
                    run.finish(.outputEncodingFailed("cannot encode \(Output.self): " + PayloadCoding.describe(error)))
                    continue
                }
                run.finish(.succeeded)
            }
        }
    }
}

/// How a worker runs one job type; made by ``Job/_workerEntryPoint()``. An implementation
/// detail of the library.
public struct _JobEntryPoint {
    @usableFromInline let name: String
    @usableFromInline let perform: Perform

    /// Runs the jobs `run` hands out, and reports each one's end to it.
    @usableFromInline
    typealias Perform = nonisolated(nonsending) (_ run: inout _JobRun) async -> Void

    @inlinable
    init(name: String, perform: @escaping Perform) {
        self.name = name
        self.perform = perform
    }
}

/// How one job ended in the worker, before it is written to a results frame. An
/// implementation detail of the library.
public enum _JobRunStatus {
    /// The output was appended to the result.
    case succeeded
    /// `run` threw: the error's type and description.
    case threw(typeName: String, description: String)
    /// The input did not decode as the job's `Input`: why.
    case inputDecodingFailed(String)
    /// The output did not encode: why.
    case outputEncodingFailed(String)
}

extension Job {
    /// The type's name, for example `"CountPrimes"`.
    public static var name: String { String(describing: Self.self) }
}
