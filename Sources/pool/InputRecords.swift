import Foundation

/// Records from stdin or an input file, separated by newlines or NULs, read as the pool asks
/// for them.
///
/// Memory is bounded by the longest record allowed: the rest of a longer one is read and
/// dropped, and it comes back as ``Record/tooLong(length:)``, so one huge line fails alone.
struct InputRecords: Sequence, IteratorProtocol {
    /// One record, or the length of one that was too long to keep.
    enum Record {
        case complete(Bytes)
        case tooLong(length: Int)
    }

    /// The descriptor read: 0 for stdin, or an input file's, closed at its end.
    let descriptor: Int32
    let separator: UInt8
    /// The longest record kept, in bytes.
    let maximumLength: Int
    private var buffer: [UInt8] = []
    /// Where the next record starts in `buffer`.
    private var start = 0
    /// How many bytes from `start` are known to hold no separator: each byte is looked at
    /// once, so a record of N bytes costs O(N) however many reads it arrives in.
    private var scanned = 0
    private var ended = false
    /// How much one read asks for.
    static let chunkSize = 1 << 16

    init(descriptor: Int32 = 0, separator: UInt8, maximumLength: Int) {
        self.descriptor = descriptor
        self.separator = separator
        self.maximumLength = maximumLength
    }

    /// The next record (its bytes, without the separator), or nil at the end of input.
    mutating func next() -> Record? {
        while true {
            if let end = buffer[(start + scanned)...].firstIndex(of: separator) {
                let length = end - start
                let record: Record = length > maximumLength ? .tooLong(length: length) : .complete(Array(buffer[start..<end]))
                start = end + 1
                scanned = 0
                return record
            }
            scanned = buffer.count - start
            if scanned > maximumLength { return skipRestOfRecord() }
            if ended {
                guard start < buffer.count else { return nil }
                defer { start = buffer.count }
                return .complete(Array(buffer[start...]))
            }
            // Drop what was consumed once it is half the buffer: each byte moves at most once
            // or twice on average, so compaction stays linear too.
            if start > 0 && start >= buffer.count / 2 {
                buffer.removeSubrange(..<start)
                start = 0
            }
            readChunk()
        }
    }

    /// Reads and drops the rest of a record already longer than ``maximumLength``.
    private mutating func skipRestOfRecord() -> Record {
        var length = buffer.count - start
        buffer.removeAll(keepingCapacity: true)
        start = 0
        scanned = 0
        while !ended {
            readChunk()
            if let end = buffer.firstIndex(of: separator) {
                length += end
                start = end + 1
                return .tooLong(length: length)
            }
            length += buffer.count
            buffer.removeAll(keepingCapacity: true)
        }
        return .tooLong(length: length)
    }

    /// Appends what one read of standard input brings; marks the end (or a read error).
    private mutating func readChunk() {
        let oldCount = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: Self.chunkSize))
        var count = 0
        buffer.withUnsafeMutableBytes { bytes in
            repeat {
                count = read(descriptor, bytes.baseAddress! + oldCount, Self.chunkSize)
            } while count < 0 && errno == EINTR
        }
        buffer.removeLast(Self.chunkSize - Swift.max(0, count))
        if count <= 0 {
            ended = true
            if descriptor != 0 { close(descriptor) }
        }
    }
}
