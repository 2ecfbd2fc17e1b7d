import Synchronization

/// Collects a call's results in input order (`map`, `mapResults`).
///
/// Results arrive a run at a time, in any order across workers. A run that continues the
/// ordered prefix is appended straight to the final array; others wait, keyed by their first
/// index, until the prefix reaches them. In-flight work is bounded, so the waiting runs are too.
final class OrderedSink<Element: Sendable>: ResultSink {
    private struct State {
        var ordered: [Element] = []
        var waitingRuns: [Int: [Element]] = [:]
        var total: Int?
        var failure: (any Error)?
        var waiter: CheckedContinuation<[Element], any Error>?
        var isFinished = false

        /// Adds a run, appending it straight to the ordered prefix when it continues it;
        /// returns the waiter to resume if this completed the call, or the run's failure.
        mutating func insert(
            _ run: ResultRun, appending append: (ResultRun, inout [Element]) -> ProcessPoolError?
        ) -> (waiter: CheckedContinuation<[Element], any Error>?, failure: ProcessPoolError?) {
            guard !isFinished else { return (nil, nil) }
            let firstIndex = run.firstIndex
            assert(firstIndex >= ordered.count && waitingRuns[firstIndex] == nil, "result for input \(firstIndex) delivered twice")
            if firstIndex == ordered.count {
                if let failure = append(run, &ordered) { return (nil, failure) }
                while let next = waitingRuns.removeValue(forKey: ordered.count) {
                    ordered.append(contentsOf: next)
                }
            } else {
                var elements: [Element] = []
                if let failure = append(run, &elements) { return (nil, failure) }
                waitingRuns[firstIndex] = elements
            }
            return (completeIfDone(), nil)
        }

        /// When every result is in, marks the call finished and returns its waiter, if any.
        mutating func completeIfDone() -> CheckedContinuation<[Element], any Error>? {
            guard !isFinished, let total, ordered.count == total else { return nil }
            isFinished = true
            defer { waiter = nil }
            return waiter
        }
    }

    private let state = Mutex(State())
    /// Appends a run's elements to an array, or returns the error that fails the whole call.
    /// Called with the sink's lock held, so results go straight into the final array.
    private let append: @Sendable (ResultRun, inout [Element]) -> ProcessPoolError?

    init(appending append: @escaping @Sendable (ResultRun, inout [Element]) -> ProcessPoolError?) {
        self.append = append
    }

    /// A sink that turns each run into an array of elements, or into the call's failure.
    convenience init(elements: @escaping @Sendable (ResultRun) -> Result<[Element], ProcessPoolError>) {
        self.init(appending: { run, array in
            switch elements(run) {
            case .success(let values):
                array.append(contentsOf: values)
                return nil
            case .failure(let error):
                return error
            }
        })
    }

    var isAcceptingResults: Bool { state.withLock { !$0.isFinished } }

    func deliver(_ run: ResultRun) {
        let (waiter, failure) = state.withLock { $0.insert(run, appending: append) }
        if let failure {
            fail(failure)
        } else if let waiter {
            resume(waiter)
        }
    }

    /// Fails the call; later results are ignored and queued jobs dropped.
    func fail(_ error: any Error) {
        let waiter = state.withLock { state -> CheckedContinuation<[Element], any Error>? in
            guard !state.isFinished else { return nil }
            state.isFinished = true
            state.failure = error
            state.ordered = []
            state.waitingRuns = [:]
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(throwing: error)
    }

    /// Every input has been submitted: `total` results make the call complete.
    func finishSubmitting(total: Int) {
        if let waiter = state.withLock({ state in
            state.total = total
            return state.completeIfDone()
        }) {
            resume(waiter)
        }
    }

    private func resume(_ waiter: CheckedContinuation<[Element], any Error>) {
        let elements = state.withLock { state in
            defer { state.ordered = [] }
            return state.ordered
        }
        waiter.resume(returning: elements)
    }

    /// Waits for every result (or the first failure).
    func results() async throws -> [Element] {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<[Element], any Error>? in
                if let failure = state.failure { return .failure(failure) }
                if state.isFinished {
                    defer { state.ordered = [] }
                    return .success(state.ordered)
                }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}
