/// The bytes waiting to go to one worker, in stream order: frames built in `frames`, with
/// large payloads sent straight from their chunks (a gathering write) rather than copied in.
struct PendingWrites {
    /// Frames being built and not yet written.
    var frames = WireWriter(reservingCapacity: 64 * 1024)
    /// How much of `frames` has been written.
    private var offset = 0
    /// Large payloads queued for the worker: each goes out after the first `after` bytes of
    /// `frames`.
    private var sharedPayloads: [SharedPayload] = []
    /// How much of the first shared payload has been written.
    private var sharedOffset = 0
    private var sharedByteCount = 0

    private struct SharedPayload {
        let chunk: JobChunk
        let range: Range<Int>
        let after: Int
    }

    /// How many bytes are waiting.
    var count: Int { frames.bytes.count - offset + sharedByteCount - sharedOffset }

    /// Queues `range` of `chunk`'s bytes to follow what `frames` holds now.
    mutating func appendShared(_ chunk: JobChunk, _ range: Range<Int>) {
        sharedPayloads.append(SharedPayload(chunk: chunk, range: range, after: frames.bytes.count))
        sharedByteCount += range.count
    }

    /// Drops shared payloads queued at or after `position` of `frames` (a frame abandoned
    /// while being built).
    mutating func dropShared(from position: Int) {
        while let last = sharedPayloads.last, last.after >= position {
            sharedPayloads.removeLast()
            sharedByteCount -= last.range.count
        }
    }

    /// Writes as much as the connection takes now.
    ///
    /// - Returns: False if the connection's input is broken (the worker exited); what was
    ///   waiting is dropped then.
    mutating func flush(to connection: any WorkerConnection) -> Bool {
        while count > 0 {
            let result: Result<FileDescriptor.IOResult, SystemCallError>
            if sharedPayloads.isEmpty {
                result = frames.bytes.withUnsafeBytes { [offset] bytes in
                    Result { () throws(SystemCallError) in try connection.write(UnsafeRawBufferPointer(rebasing: bytes[offset...])) }
                }
            } else {
                result = writeGathering(to: connection)
            }
            switch result {
            case .success(.transferred(let written)):
                advance(by: written)
            case .success(.wouldBlock):
                return true
            case .failure:
                removeAll()
                return false
            }
        }
        // Keep a modest buffer; let a huge one go once a large payload has been sent.
        frames.bytes.removeAll(keepingCapacity: frames.bytes.capacity <= 4 << 20)
        offset = 0
        return true
    }

    /// Drops everything waiting.
    mutating func removeAll() {
        frames.bytes.removeAll()
        offset = 0
        sharedPayloads.removeAll()
        sharedOffset = 0
        sharedByteCount = 0
    }

    /// One gathering write of the owned bytes and the first few shared payloads, in stream order.
    private func writeGathering(to connection: any WorkerConnection) -> Result<FileDescriptor.IOResult, SystemCallError> {
        let shared = sharedPayloads.prefix(4)
        return frames.bytes.withUnsafeBytes { owned in
            Self.withSharedBytes(shared[...]) { payloads in
                var buffers: [UnsafeRawBufferPointer] = []
                var position = offset
                for (index, payload) in shared.enumerated() {
                    if payload.after > position {
                        buffers.append(UnsafeRawBufferPointer(rebasing: owned[position..<payload.after]))
                        position = payload.after
                    }
                    let skip = index == 0 ? sharedOffset : 0
                    buffers.append(UnsafeRawBufferPointer(rebasing: payloads[index][(payload.range.lowerBound + skip)..<payload.range.upperBound]))
                }
                let end = shared.count == sharedPayloads.count ? owned.count : sharedPayloads[shared.count].after
                if end > position { buffers.append(UnsafeRawBufferPointer(rebasing: owned[position..<end])) }
                return Result { () throws(SystemCallError) in try connection.write(gathering: buffers) }
            }
        }
    }

    /// Calls `body` with the bytes of each payload's chunk, all valid during the call.
    private static func withSharedBytes<R>(_ payloads: ArraySlice<SharedPayload>, _ collected: [UnsafeRawBufferPointer] = [], _ body: ([UnsafeRawBufferPointer]) -> R) -> R {
        guard let first = payloads.first else { return body(collected) }
        return first.chunk.withBytes { bytes in withSharedBytes(payloads.dropFirst(), collected + [bytes], body) }
    }

    /// Marks `written` bytes of the stream (owned and shared, in order) as written.
    private mutating func advance(by written: Int) {
        var remaining = written
        while remaining > 0 {
            if let first = sharedPayloads.first, offset == first.after {
                let left = first.range.count - sharedOffset
                let step = min(left, remaining)
                sharedOffset += step
                remaining -= step
                if sharedOffset == first.range.count {
                    sharedPayloads.removeFirst()
                    sharedByteCount -= first.range.count
                    sharedOffset = 0
                }
            } else {
                let end = sharedPayloads.first?.after ?? frames.bytes.count
                let step = min(end - offset, remaining)
                offset += step
                remaining -= step
            }
        }
    }
}
