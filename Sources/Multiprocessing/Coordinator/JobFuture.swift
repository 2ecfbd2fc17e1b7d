import Synchronization

/// The eventual output of a job given to ``ProcessPool/submit(_:_:)``.
///
/// Await ``value`` for the output. Cancelling the task that awaits it, or calling ``cancel()``,
/// cancels the job: a job still queued is never sent to a worker.
public final class JobFuture<Output: Sendable>: Sendable {
    private let sink: FutureSink<Output>
    private let core: PoolCore
    /// The pool's id for the job, as it appears in errors.
    public let id: UInt64

    init(sink: FutureSink<Output>, core: PoolCore, id: UInt64) {
        self.sink = sink
        self.core = core
        self.id = id
    }

    /// The job's output, once it has run.
    ///
    /// - Throws: ``ProcessPoolError`` if the job failed (it threw, its worker crashed, its
    ///   input or output could not be coded, the pool was shut down); `CancellationError` if
    ///   the job was cancelled.
    public var value: Output {
        get async throws {
            try await withTaskCancellationHandler {
                try await sink.wait()
            } onCancel: {
                cancel()
            }
        }
    }

    /// The outcome, once known, without waiting.
    public var result: Result<Output, any Error>? { sink.currentResult }

    /// Cancels the job if it has not finished: ``value`` then throws `CancellationError`.
    public func cancel() {
        if sink.cancel() { core.noteCancellation() }
    }

    /// Calls `body` once with the outcome when the job finishes, or at once if it has.
    ///
    /// This is the way to follow many jobs without a task for each. `body` runs on the thread
    /// that completed the job, usually the pool's I/O thread, so it must be quick and must not
    /// block: hand the result on (to an `AsyncStream`, say) rather than work on it there.
    ///
    /// - Parameter body: Receives the output, or the error ``value`` would throw.
    public func whenComplete(_ body: @escaping @Sendable (Result<Output, any Error>) -> Void) {
        sink.whenComplete(body)
    }
}

/// Holds one job's outcome for a ``JobFuture`` and wakes the tasks waiting for it.
final class FutureSink<Output: Sendable>: ResultSink {
    private struct State {
        var result: Result<Output, any Error>?
        /// The usual single waiter, kept apart so that it needs no array.
        var waiter: UnsafeContinuation<Output, any Error>?
        var moreWaiters: [UnsafeContinuation<Output, any Error>] = []
        var callbacks: [@Sendable (Result<Output, any Error>) -> Void] = []
    }

    private let state = Mutex(State())
    private let decode: @Sendable (ResultRun) -> Result<Output, ProcessPoolError>
    private let onOutput: (@Sendable (Int, [UInt8]) -> Void)?

    init(
        decode: @escaping @Sendable (ResultRun) -> Result<Output, ProcessPoolError>,
        onOutput: (@Sendable (Int, [UInt8]) -> Void)? = nil
    ) {
        self.decode = decode
        self.onOutput = onOutput
    }

    func receiveOutput(stream: Int, bytes: UnsafeRawBufferPointer) {
        guard let onOutput, isAcceptingResults else { return }
        onOutput(stream, Array(bytes))
    }

    var isAcceptingResults: Bool { state.withLock { $0.result == nil } }

    var currentResult: Result<Output, any Error>? { state.withLock { $0.result } }

    func deliver(_ run: ResultRun) {
        // A job cancelled meanwhile is decoded for nothing, which is rare; checking first
        // would cost every job a second turn of the lock.
        guard run.count > 0 else { return }
        complete(with: decode(run).mapError { $0 })
    }

    /// Returns true if this call cancelled the job (it had not finished).
    func cancel() -> Bool {
        complete(with: .failure(CancellationError()))
    }

    /// Records the result and resumes every waiter, once: the lock makes the first call the
    /// only one that takes the waiters, so no continuation is resumed twice.
    @discardableResult
    private func complete(with result: Result<Output, any Error>) -> Bool {
        let taken = state.withLock { state -> (UnsafeContinuation<Output, any Error>?, [UnsafeContinuation<Output, any Error>], [@Sendable (Result<Output, any Error>) -> Void])? in
            guard state.result == nil else { return nil }
            state.result = result
            defer {
                state.waiter = nil
                state.moreWaiters = []
                state.callbacks = []
            }
            return (state.waiter, state.moreWaiters, state.callbacks)
        }
        guard let (waiter, moreWaiters, callbacks) = taken else { return false }
        waiter?.resume(with: result)
        for waiter in moreWaiters { waiter.resume(with: result) }
        for callback in callbacks { callback(result) }
        return true
    }

    func whenComplete(_ body: @escaping @Sendable (Result<Output, any Error>) -> Void) {
        let result = state.withLock { state -> Result<Output, any Error>? in
            if let result = state.result { return result }
            state.callbacks.append(body)
            return nil
        }
        if let result { body(result) }
    }

    func wait() async throws -> Output {
        // Unsafe rather than checked: `complete` resumes each continuation exactly once, and a
        // checked one costs an allocation per wait.
        try await withUnsafeThrowingContinuation { continuation in
            let result = state.withLock { state -> Result<Output, any Error>? in
                if let result = state.result { return result }
                if state.waiter == nil {
                    state.waiter = continuation
                } else {
                    state.moreWaiters.append(continuation)
                }
                return nil
            }
            if let result { continuation.resume(with: result) }
        }
    }
}
