/// Reads the inputs of a `map` call, with the commonest sequences read without a generic
/// witness call per element.
///
/// The library's map code is generic and not specialised for the caller's sequence, so reading
/// a `Range<Int>` through its `IndexingIterator` costs a trip through the standard library's
/// unspecialised collection code, with metadata look-ups, for every input: a fifth of the
/// caller's time for tiny jobs. Integer ranges and arrays, the usual inputs, are read here
/// directly; any other sequence through its own iterator.
struct InputIterator<Base: Sequence>: IteratorProtocol {
    private enum Mode {
        case integers
        case array
        case iterator
    }

    private let mode: Mode
    /// `.integers`: the next value and the end (exclusive).
    private var nextInteger = 0
    private var endInteger = 0
    /// `.array`: the elements and the next index.
    private let elements: [Base.Element]
    private var nextIndex = 0
    /// `.iterator`: the sequence's own iterator.
    private var base: Base.Iterator?

    init(_ sequence: Base) {
        if let range = sequence as? Range<Int> {
            mode = .integers
            nextInteger = range.lowerBound
            endInteger = range.upperBound
            elements = []
        } else if let range = sequence as? ClosedRange<Int>, range.upperBound < Int.max {
            mode = .integers
            nextInteger = range.lowerBound
            endInteger = range.upperBound + 1
            elements = []
        } else if let array = sequence as? [Base.Element] {
            mode = .array
            elements = array
        } else {
            mode = .iterator
            elements = []
            base = sequence.makeIterator()
        }
    }

    /// For a range of integers, the next at most `count` of them, taken; nil for any other
    /// sequence (and once the range is exhausted).
    mutating func nextIntegers(upTo count: Int) -> Range<Int>? {
        guard mode == .integers, nextInteger < endInteger else { return nil }
        // A range may hold more than Int.max values (-1..<Int.max, read until the caller stops).
        let (remaining, overflow) = endInteger.subtractingReportingOverflow(nextInteger)
        let end = nextInteger + (overflow ? count : min(count, remaining))
        defer { nextInteger = end }
        return nextInteger..<end
    }

    mutating func next() -> Base.Element? {
        switch mode {
        case .integers:
            guard nextInteger < endInteger else { return nil }
            defer { nextInteger += 1 }
            // The sequence is a range of Int, so its elements are Int.
            return unsafeBitCast(nextInteger, to: Base.Element.self)
        case .array:
            guard nextIndex < elements.count else { return nil }
            defer { nextIndex += 1 }
            return elements[nextIndex]
        case .iterator:
            return base!.next()
        }
    }
}
