/// A batch sent to a worker and not yet fully answered.
final class InFlightBatch {
    let id: UInt64
    let flags: BatchFlags
    let slices: [ChunkSlice]
    let count: Int
    /// The bytes of its inputs.
    let byteCount: Int
    /// Results arrive in order; this many have.
    private(set) var resolvedCount = 0
    private var cursorSlice = 0
    private var cursorPosition: Int

    init(id: UInt64, flags: BatchFlags, slices: [ChunkSlice]) {
        self.id = id
        self.flags = flags
        self.slices = slices
        count = slices.reduce(0) { $0 + $1.count }
        byteCount = slices.reduce(0) { $0 + $1.byteCount }
        cursorPosition = slices.first?.positions.lowerBound ?? 0
    }

    /// The next job without a result: its slice and position in the chunk.
    func nextUnresolved() -> (slice: ChunkSlice, position: Int) {
        (slices[cursorSlice], cursorPosition)
    }

    /// The slice holding the job at `position` in the batch, if the batch has one there.
    func slice(atBatchPosition position: Int) -> ChunkSlice? {
        var start = 0
        for slice in slices {
            if position < start + slice.count { return slice }
            start += slice.count
        }
        return nil
    }

    /// How many jobs of the slice at the cursor have no result yet.
    var unresolvedInCurrentSlice: Int { slices[cursorSlice].positions.upperBound - cursorPosition }

    /// Marks the next `count` jobs resolved; they must all be in the slice at the cursor.
    func markResolved(_ count: Int) {
        precondition(count > 0 && count <= unresolvedInCurrentSlice, "results beyond the current slice")
        resolvedCount += count - 1
        cursorPosition += count - 1
        markNextResolved()
    }

    private func markNextResolved() {
        resolvedCount += 1
        cursorPosition += 1
        if cursorPosition == slices[cursorSlice].positions.upperBound && cursorSlice + 1 < slices.count {
            cursorSlice += 1
            cursorPosition = slices[cursorSlice].positions.lowerBound
        }
    }

    /// Whether any job without a result belongs to a call that no longer wants results.
    /// Checked on every turn of the event loop, so it allocates nothing.
    var hasUnwantedJob: Bool {
        guard resolvedCount < count else { return false }
        for index in cursorSlice..<slices.count where !slices[index].chunk.sink.isAcceptingResults {
            return true
        }
        return false
    }

    /// The jobs without a result, as slices.
    func unresolvedSlices() -> [ChunkSlice] {
        guard resolvedCount < count else { return [] }
        var result: [ChunkSlice] = []
        var first = slices[cursorSlice]
        first.positions = cursorPosition..<first.positions.upperBound
        if !first.positions.isEmpty { result.append(first) }
        result.append(contentsOf: slices[(cursorSlice + 1)...])
        return result
    }
}
