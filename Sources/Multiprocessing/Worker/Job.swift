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
///         range.reduce(0) { $0 + (isPrime($1) ? 1 : 0) }
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
    /// It is called on the worker's job thread and, being `nonisolated(nonsending)`, an async
    /// implementation starts there too, without a hop to Swift's global executor per job.
    ///
    /// - Parameter input: The job's input, decoded in the worker.
    /// - Returns: The output, encoded and sent back to the coordinator.
    /// - Throws: Any error; the caller receives a ``ProcessPoolError`` with code
    ///   ``ProcessPoolError/Code/jobThrew`` carrying its type and description.
    nonisolated(nonsending) func run(_ input: Input) async throws -> Output
}

extension Job {
    /// The type's name, for example `"CountPrimes"`.
    public static var name: String { String(describing: Self.self) }
}
