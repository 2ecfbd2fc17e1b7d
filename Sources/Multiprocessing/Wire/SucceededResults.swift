/// Results of a results frame that all succeeded in a known codec, in the frame's own form: for
/// each, a status byte, a codec byte and a length-prefixed output.
///
/// The fast path for the usual frame: ``scan(_:count:offsets:)`` checks the results without
/// building an outcome per job, and the coordinator decodes outputs straight from the frame
/// (see ``ResultsFrameReader`` for the general path). Valid only while the frame's bytes are.
struct SucceededResults {
    let bytes: UnsafeRawBufferPointer
    let count: Int

    /// Checks that `bytes` holds exactly `count` successful results in a known codec, noting
    /// where each starts (and where the last ends) in `offsets`; false if it does not (a
    /// failure among them, or a malformed frame), for the caller to read it the slow way.
    static func scan(_ bytes: UnsafeRawBufferPointer, count: Int, offsets: inout [Int]) -> Bool {
        offsets.removeAll(keepingCapacity: true)
        var position = 0
        let end = bytes.count
        for _ in 0..<count {
            offsets.append(position)
            guard position + 2 <= end, bytes[position] == ResultStatus.succeeded.rawValue,
                  PayloadCodec(rawValue: bytes[position + 1]) != nil else { return false }
            let (length, next) = Varint.decode(from: bytes, at: position + 2, end: end)
            guard next > 0, length <= UInt64(end - next) else { return false }
            position = next + Int(length)
        }
        offsets.append(position)
        return position == end
    }

    /// Calls `body` with each result's codec and output, in order.
    func forEach(_ body: (PayloadCodec, UnsafeRawBufferPointer) -> Void) {
        var cursor = makeCursor()
        for _ in 0..<count {
            let (codec, payload) = cursor.next()
            body(codec, payload)
        }
    }

    func makeCursor() -> Cursor { Cursor(bytes: bytes) }

    /// Reads the results one after another; `next()` must be called at most `count` times.
    struct Cursor {
        let bytes: UnsafeRawBufferPointer
        var position = 0

        @inline(__always)
        mutating func next() -> (codec: PayloadCodec, payload: UnsafeRawBufferPointer) {
            let codec = PayloadCodec(rawValue: bytes[position + 1])!
            let (length, start) = Varint.decode(from: bytes, at: position + 2, end: bytes.count)
            position = start + Int(length)
            return (codec, UnsafeRawBufferPointer(rebasing: bytes[start..<position]))
        }
    }
}
