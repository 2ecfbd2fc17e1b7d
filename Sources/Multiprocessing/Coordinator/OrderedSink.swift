import Synchronization

/// Collects a call's results in input order (`map`, `mapResults`).
///
/// Results arrive batch by batch, in any order across workers. Those that continue the ordered
/// prefix are appended straight to the final array; the rest wait in runs keyed by their first
/// index, which are spliced in as the prefix reaches them. In-flight work is bounded, so the
/// runs are too.
final class OrderedSink<Element: Sendable>: ResultSink {
    private struct State {
        var ordered: [Element] = []
        var runs: [Int: [Element]] = [:]
        /// The run that the next out-of-order result would extend.
        var openRunStart: Int?
        var total: Int?
        var failure: (any Error)?
        var waiter: CheckedContinuation<[Element], any Error>?
        var isFinished = false

        /// When every result is in, hands the array to the waiter (or keeps it for `results()`).
        mutating func completeIfDone() -> (CheckedContinuation<[Element], any Error>, [Element])? {
            guard !isFinished, let total, ordered.count == total else { return nil }
            isFinished = true
            guard let waiter else { return nil }
            self.waiter = nil
            let elements = ordered
            ordered = []
            return (waiter, elements)
        }
    }

    private let state = Mutex(State())
    /// Turns one job's outcome into an element, or into the error that fails the whole call.
    private let element: @Sendable (JobOutcome, Int, UInt64, String) -> Result<Element, ProcessPoolError>

    init(element: @escaping @Sendable (JobOutcome, Int, UInt64, String) -> Result<Element, ProcessPoolError>) {
        self.element = element
    }

    var isAcceptingResults: Bool { state.withLock { !$0.isFinished } }

    func deliver(index: Int, jobID: UInt64, jobName: String, outcome: JobOutcome) {
        switch element(outcome, index, jobID, jobName) {
        case .success(let value): insert(value, at: index)
        case .failure(let error): fail(error)
        }
    }

    private func insert(_ value: Element, at index: Int) {
        let completion = state.withLock { state -> (CheckedContinuation<[Element], any Error>, [Element])? in
            guard !state.isFinished else { return nil }
            if index == state.ordered.count {
                state.ordered.append(value)
                while let run = state.runs.removeValue(forKey: state.ordered.count) {
                    if state.openRunStart == state.ordered.count { state.openRunStart = nil }
                    state.ordered.append(contentsOf: run)
                }
            } else if let start = state.openRunStart, start + state.runs[start, default: []].count == index {
                state.runs[start, default: []].append(value)
            } else {
                state.runs[index] = [value]
                state.openRunStart = index
            }
            return state.completeIfDone()
        }
        if let (waiter, elements) = completion { waiter.resume(returning: elements) }
    }

    /// Fails the call; later results are ignored and queued jobs dropped.
    func fail(_ error: any Error) {
        let waiter = state.withLock { state -> CheckedContinuation<[Element], any Error>? in
            guard !state.isFinished else { return nil }
            state.isFinished = true
            state.failure = error
            state.ordered = []
            state.runs = [:]
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(throwing: error)
    }

    /// Every input has been submitted: `total` results make the call complete.
    func finishSubmitting(total: Int) {
        let completion = state.withLock { state -> (CheckedContinuation<[Element], any Error>, [Element])? in
            state.total = total
            return state.completeIfDone()
        }
        if let (waiter, elements) = completion { waiter.resume(returning: elements) }
    }

    /// Waits for every result (or the first failure).
    func results() async throws -> [Element] {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<[Element], any Error>? in
                if let failure = state.failure { return .failure(failure) }
                if state.isFinished { return .success(state.ordered) }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    var isFailed: Bool { state.withLock { $0.failure != nil } }
}
