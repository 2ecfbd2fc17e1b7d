import Foundation
import Multiprocessing

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
        /// `--pipepart`: a block that is a range of a file (after a header), which the worker
        /// reads itself.
        case part(header: Bytes, range: CommandJob.FileRange)
        /// `--pipe`: a job's whole input, encoded around its block: `buffer[start...]`.
        case encoded(Bytes, start: Int)
    }

    /// The descriptor read: 0 for stdin, or an input file's, closed at its end.
    let descriptor: Int32
    /// What ends a record: a newline, a NUL, or the bytes given with `-d`.
    let separator: Bytes
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

    init(descriptor: Int32 = 0, separator: Bytes, maximumLength: Int) {
        precondition(!separator.isEmpty, "a record separator has at least one byte")
        self.descriptor = descriptor
        self.separator = separator
        self.maximumLength = maximumLength
    }

    /// The next record (its bytes, without the separator), or nil at the end of input.
    mutating func next() -> Record? {
        while true {
            if let end = findSeparator(from: start + scanned) {
                let length = end - start
                let record: Record = length > maximumLength ? .tooLong(length: length) : .complete(Array(buffer[start..<end]))
                start = end + separator.count
                scanned = 0
                return record
            }
            // A separator may have begun in the last bytes: look at them again after the read.
            scanned = Swift.max(0, buffer.count - start - (separator.count - 1))
            if scanned > maximumLength { return skipRestOfRecord() }
            if ended {
                guard start < buffer.count else { return nil }
                // The last record, with no separator after it.
                defer {
                    start = buffer.count
                    scanned = 0
                }
                let length = buffer.count - start
                return length > maximumLength ? .tooLong(length: length) : .complete(Array(buffer[start...]))
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
        // Keep the bytes a separator may have begun with; drop the rest.
        let kept = Swift.min(buffer.count - start, separator.count - 1)
        var length = buffer.count - start - kept
        buffer.removeSubrange(..<(buffer.count - kept))
        start = 0
        scanned = 0
        while !ended {
            readChunk()
            if let end = findSeparator(from: 0) {
                length += end
                start = end + separator.count
                return .tooLong(length: length)
            }
            let dropped = buffer.count - Swift.min(buffer.count, separator.count - 1)
            length += dropped
            buffer.removeSubrange(..<dropped)
        }
        length += buffer.count
        start = buffer.count
        return .tooLong(length: length)
    }

    /// Where the first separator at or after `offset` begins.
    private func findSeparator(from offset: Int) -> Int? {
        if separator.count == 1 { return buffer[offset...].firstIndex(of: separator[0]) }
        return buffer[offset...].firstRange(of: separator)?.lowerBound
    }

    /// Appends what one read of standard input brings; marks the end (or a read error).
    private mutating func readChunk() {
        if !appendRead(from: descriptor, upTo: Self.chunkSize, to: &buffer) {
            ended = true
            if descriptor != 0 { close(descriptor) }
        }
    }
}

/// Appends what one `read(2)` of up to `count` bytes from `descriptor` brings to `buffer`;
/// false at the end of the input (or on a read error, which ends it too).
func appendRead(from descriptor: Int32, upTo count: Int, to buffer: inout [UInt8]) -> Bool {
    let oldCount = buffer.count
    buffer.append(contentsOf: repeatElement(0, count: count))
    var got = 0
    buffer.withUnsafeMutableBytes { bytes in
        repeat {
            got = read(descriptor, bytes.baseAddress! + oldCount, count)
        } while got < 0 && errno == EINTR
    }
    buffer.removeLast(count - Swift.max(0, got))
    return got > 0
}
