/// Bytes waiting to be written to a non-blocking stream, in order.
struct PendingBytes {
    private var bytes: [UInt8] = []
    /// How much of `bytes` has been written.
    private var offset = 0

    var count: Int { bytes.count - offset }
    var isEmpty: Bool { offset == bytes.count }

    mutating func append(_ more: some Collection<UInt8>) {
        if offset > 0 && offset == bytes.count {
            bytes.removeAll(keepingCapacity: bytes.capacity <= 4 << 20)
            offset = 0
        }
        bytes.append(contentsOf: more)
    }

    /// Appends `more` and leaves it empty; when nothing is waiting, takes its storage instead
    /// of copying it (a large frame is then never copied here).
    mutating func take(_ more: inout [UInt8]) {
        if isEmpty {
            swap(&bytes, &more)
            offset = 0
            more.removeAll(keepingCapacity: true)
        } else {
            append(more)
            more.removeAll(keepingCapacity: more.capacity <= 4 << 20)
        }
    }

    /// Sends `parts`, in order, after what is waiting: when nothing waits they are written at
    /// once (one gathering write, no copy here) and only what the stream did not take is kept.
    ///
    /// - Returns: False if the stream is broken; what was waiting is dropped then.
    mutating func send(_ parts: [UnsafeRawBufferPointer], to descriptor: borrowing FileDescriptor) -> Bool {
        guard isEmpty else {
            for part in parts { append(part) }
            return flush(to: descriptor)
        }
        return keepUnwritten(parts, Result { () throws(SystemCallError) in try descriptor.write(gathering: parts) })
    }

    /// Sends `parts` to a process's stdin, as ``send(_:to:)-(_,FileDescriptor)`` does to a stream.
    mutating func send(_ parts: [UnsafeRawBufferPointer], to connection: some WorkerConnection) -> Bool {
        guard isEmpty else {
            for part in parts { append(part) }
            return flush(to: connection)
        }
        return keepUnwritten(parts, Result { () throws(SystemCallError) in try connection.write(gathering: parts) })
    }

    /// Keeps what a gathering write of `parts` did not take; false if it failed.
    private mutating func keepUnwritten(_ parts: [UnsafeRawBufferPointer], _ result: Result<FileDescriptor.IOResult, SystemCallError>) -> Bool {
        var written = 0
        switch result {
        case .success(.transferred(let count)): written = count
        case .success(.wouldBlock): break
        case .failure: return false
        }
        for part in parts {
            if written >= part.count {
                written -= part.count
            } else {
                append(UnsafeRawBufferPointer(rebasing: part[written...]))
                written = 0
            }
        }
        return true
    }

    mutating func removeAll() {
        bytes.removeAll()
        offset = 0
    }

    /// Writes as much as `descriptor` takes now.
    ///
    /// - Returns: False if the stream is broken (its reader is gone); what was waiting is
    ///   dropped then.
    mutating func flush(to descriptor: borrowing FileDescriptor) -> Bool {
        flush { buffer throws(SystemCallError) in try descriptor.write(buffer) }
    }

    /// Writes as much as the worker takes now; false if its input is broken.
    mutating func flush(to connection: some WorkerConnection) -> Bool {
        flush { buffer throws(SystemCallError) in try connection.write(buffer) }
    }

    private mutating func flush(_ write: (UnsafeRawBufferPointer) throws(SystemCallError) -> FileDescriptor.IOResult) -> Bool {
        while offset < bytes.count {
            let result = bytes.withUnsafeBytes { [offset] all in
                Result { () throws(SystemCallError) in try write(UnsafeRawBufferPointer(rebasing: all[offset...])) }
            }
            switch result {
            case .success(.transferred(let written)): offset += written
            case .success(.wouldBlock): return true
            case .failure:
                removeAll()
                return false
            }
        }
        // Keep a modest buffer; let a huge one go once it has been written.
        bytes.removeAll(keepingCapacity: bytes.capacity <= 4 << 20)
        offset = 0
        return true
    }
}
