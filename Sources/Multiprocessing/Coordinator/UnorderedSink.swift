import Synchronization

/// Buffers a `mapUnordered` call's results until its consumer takes them.
final class UnorderedSink<Output: Decodable & Sendable>: ResultSink {
    private struct State {
        var buffer = FIFOQueue<(index: Int, output: Output)>()
        var submitted = 0
        var consumed = 0
        var allSubmitted = false
        var failure: (any Error)?
        var failureReported = false
        var waiter: CheckedContinuation<(index: Int, output: Output)?, any Error>?
        var isFinished = false

        mutating func takeNext() -> (index: Int, output: Output)? {
            guard let element = buffer.popFirst() else { return nil }
            consumed += 1
            return element
        }
    }

    private let state = Mutex(State())
    init() {}

    var isAcceptingResults: Bool { state.withLock { !$0.isFinished } }

    /// Results held, taken or not (for tests: it must stay bounded).
    var storedCount: Int { state.withLock { $0.buffer.storageCount } }

    /// Jobs submitted whose results the consumer has not taken yet.
    var outstanding: Int { state.withLock { $0.submitted - $0.consumed } }

    func noteSubmitted(_ count: Int) { state.withLock { $0.submitted += count } }

    func deliver(_ run: ResultRun) {
        let outputs: [(index: Int, output: Output)]
        switch run.decodedOutputs(Output.self) {
        case .success(let decoded): outputs = decoded.enumerated().map { (run.firstIndex + $0.offset, $0.element) }
        case .failure(let error):
            fail(error)
            return
        }
        let handOff = state.withLock { state -> (waiter: CheckedContinuation<(index: Int, output: Output)?, any Error>, element: (index: Int, output: Output))? in
            guard !state.isFinished, !outputs.isEmpty else { return nil }
            state.buffer.append(contentsOf: outputs)
            guard let waiter = state.waiter, let element = state.takeNext() else { return nil }
            state.waiter = nil
            return (waiter, element)
        }
        if let handOff { handOff.waiter.resume(returning: handOff.element) }
    }

    /// Ends the stream with `error` (a failed job, cancellation); queued jobs are dropped.
    func fail(_ error: any Error) {
        let waiter = state.withLock { state -> CheckedContinuation<(index: Int, output: Output)?, any Error>? in
            guard !state.isFinished else { return nil }
            state.isFinished = true
            state.failure = error
            state.buffer = FIFOQueue()
            guard let waiter = state.waiter else { return nil }
            state.waiter = nil
            state.failureReported = true
            return waiter
        }
        waiter?.resume(throwing: error)
    }

    /// Stops the call without an error (the consumer stopped iterating).
    func abandon() {
        state.withLock { state in
            state.isFinished = true
            state.buffer = FIFOQueue()
        }
    }

    func finishSubmitting() {
        let waiter = state.withLock { state -> CheckedContinuation<(index: Int, output: Output)?, any Error>? in
            state.allSubmitted = true
            guard state.consumed == state.submitted, let waiter = state.waiter else { return nil }
            state.waiter = nil
            state.isFinished = true
            return waiter
        }
        waiter?.resume(returning: nil)
    }

    /// The next result, waiting if none is buffered; nil when every result has been taken.
    func next() async throws -> (index: Int, output: Output)? {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<(index: Int, output: Output)?, any Error>? in
                if let failure = state.failure {
                    if state.failureReported { return .success(nil) }
                    state.failureReported = true
                    return .failure(failure)
                }
                if let element = state.takeNext() { return .success(element) }
                if state.allSubmitted && state.consumed == state.submitted {
                    state.isFinished = true
                    return .success(nil)
                }
                if state.isFinished { return .success(nil) }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}
