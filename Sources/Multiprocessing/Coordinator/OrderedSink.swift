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

        /// Adds a run; returns the waiter to resume if this completed the call.
        mutating func insert(_ elements: [Element], at firstIndex: Int) -> CheckedContinuation<[Element], any Error>? {
            guard !isFinished else { return nil }
            assert(firstIndex >= ordered.count && waitingRuns[firstIndex] == nil, "result for input \(firstIndex) delivered twice")
            if firstIndex == ordered.count {
                ordered.append(contentsOf: elements)
                while let next = waitingRuns.removeValue(forKey: ordered.count) {
                    ordered.append(contentsOf: next)
                }
            } else {
                waitingRuns[firstIndex] = elements
            }
            return completeIfDone()
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
    /// Turns a run's outcomes into elements, or into the error that fails the whole call.
    private let elements: @Sendable (ResultRun) -> Result<[Element], ProcessPoolError>

    init(elements: @escaping @Sendable (ResultRun) -> Result<[Element], ProcessPoolError>) {
        self.elements = elements
    }

    var isAcceptingResults: Bool { state.withLock { !$0.isFinished } }

    func deliver(_ run: ResultRun) {
        switch elements(run) {
        case .success(let values):
            if let waiter = state.withLock({ $0.insert(values, at: run.firstIndex) }) {
                resume(waiter)
            }
        case .failure(let error):
            fail(error)
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
