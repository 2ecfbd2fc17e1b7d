import Foundation
import Glibc

/// `--pipe`: stdin cut into blocks, each of which is one job's stdin.
///
/// A block is cut only where a record ends (`--recend`, a newline by default) and, with
/// `--recstart`, the next one starts, so no record is split between two jobs: a block holds
/// the whole records that fit in `--block` bytes, or one record if that record alone is
/// longer. With `-N`, a block is that many records instead. Every byte of the input is in
/// exactly one block, in order, whatever the sizes, and the last block needs no record end.
struct PipeBlocks: IteratorProtocol {
    private let descriptor: Int32
    private let blockSize: Int
    private let recordEnd: Bytes
    private let recordStart: Bytes
    private let recordsPerBlock: Int?
    private var buffer: [UInt8] = []
    /// Where the next block starts in `buffer`.
    private var start = 0
    /// Scratch bytes at the start of every block handed out.
    let headroom: Int
    /// With `-N`, or for a record longer than a block: how far the search for record ends
    /// has got (from `start`), and how many it found, so each byte is looked at once.
    private var searched = 0
    private var found = 0
    private var ended = false

    /// - Parameters:
    ///   - recordsPerBlock: `-N`: records per block, instead of `blockSize` bytes.
    ///   - initialBytes: Input already read (after a `--header`).
    ///   - headroom: Bytes of scratch space before each block's bytes, for the caller to
    ///     encode the rest of the job's input into, so the block is never copied.
    init(
        descriptor: Int32 = 0, blockSize: Int, recordEnd: Bytes, recordStart: Bytes, recordsPerBlock: Int?, initialBytes: Bytes = [],
        headroom: Int = 0
    ) {
        self.headroom = headroom
        if recordsPerBlock == nil {
            buffer = Bytes(repeating: 0, count: headroom) + initialBytes
            start = headroom
        } else {
            buffer = initialBytes
        }
        precondition(!recordEnd.isEmpty || !recordStart.isEmpty, "a record has an end or a start")
        self.descriptor = descriptor
        self.blockSize = blockSize
        self.recordEnd = recordEnd
        self.recordStart = recordStart
        self.recordsPerBlock = recordsPerBlock
    }

    mutating func next() -> Bytes? {
        while true {
            if let cut = cutPoint() {
                searched = 0
                found = 0
                if recordsPerBlock == nil && start == headroom && buffer.count - cut <= blockSize {
                    // The block was read into place (after the headroom): it is handed out as
                    // it is, and only the bytes past the cut (part of a record) move to the
                    // next one.
                    var block = buffer
                    buffer = Bytes(repeating: 0, count: headroom) + block[cut...]
                    block.removeSubrange(cut...)
                    return block
                }
                // With -N, or after a record longer than a block was read with more behind it,
                // blocks are copied out of the buffer, each byte once.
                let block = Bytes(repeating: 0, count: headroom) + buffer[start..<cut]
                start = cut
                // Drop what was handed out once it is half the buffer, so each byte moves at
                // most about once.
                if recordsPerBlock != nil && start >= buffer.count / 2 {
                    buffer.removeSubrange(..<start)
                    start = 0
                }
                return block
            }
            if ended {
                guard start < buffer.count else { return nil }
                defer {
                    buffer = []
                    searched = 0
                    found = 0
                }
                return start == headroom ? buffer : Bytes(repeating: 0, count: headroom) + buffer[start...]
            }
            if recordsPerBlock == nil { fill() } else { read() }
        }
    }

    /// Where the next block ends, or nil if more input is needed to know.
    private mutating func cutPoint() -> Int? {
        let available = buffer.count - start
        if let recordsPerBlock {
            // The end of the N-th record.
            var position = start + searched
            while let boundary = boundary(after: position) {
                found += 1
                if found == recordsPerBlock { return boundary }
                position = boundary
            }
            // Where a record start could not be seen yet, look again when more is read.
            searched = Swift.max(position, buffer.count - recordStart.count) - start
            return nil
        }
        guard available > blockSize || ended else { return nil }
        if ended && available <= blockSize { return nil }
        // The last record end within the block, or, for a record longer than the block, the
        // first one after it.
        if let boundary = lastBoundary(atOrBefore: start + blockSize) { return boundary }
        if let boundary = boundary(after: start + max(blockSize, searched)) { return boundary }
        searched = Swift.max(blockSize, buffer.count - recordStart.count - start)
        return nil
    }

    /// The first boundary after `position`. A one-byte record end with no record start, the
    /// usual case, is found by a search for that byte rather than a test of each position.
    private func boundary(after position: Int) -> Int? {
        guard position < buffer.count else { return nil }
        if recordEnd.count == 1 && recordStart.isEmpty {
            if let end = buffer[position...].firstIndex(of: recordEnd[0]) { return end + 1 }
            return ended ? buffer.count : nil
        }
        var candidate = position + 1
        while candidate <= buffer.count {
            if isBoundary(candidate) { return candidate }
            candidate += 1
        }
        return nil
    }

    /// The last boundary at or before `position` (and after `start`).
    private func lastBoundary(atOrBefore position: Int) -> Int? {
        if recordEnd.count == 1 && recordStart.isEmpty {
            return buffer[start..<position].lastIndex(of: recordEnd[0]).map { $0 + 1 }
        }
        var candidate = position
        while candidate > start {
            if isBoundary(candidate) { return candidate }
            candidate -= 1
        }
        return nil
    }

    /// Whether a block may end just before `position`: a record end before it and (with
    /// `--recstart`) a record start after it. At the end of the input, the end is a boundary.
    private func isBoundary(_ position: Int) -> Bool {
        guard position > start else { return false }
        if position == buffer.count && ended { return true }
        if !recordEnd.isEmpty {
            guard position - start >= recordEnd.count else { return false }
            if recordEnd.count == 1 {
                guard buffer[position - 1] == recordEnd[0] else { return false }
            } else if !buffer[(position - recordEnd.count)..<position].elementsEqual(recordEnd) {
                return false
            }
        }
        if !recordStart.isEmpty {
            // Not known yet whether a record starts here: wait for more input.
            guard position + recordStart.count <= buffer.count else { return false }
            return buffer[position..<(position + recordStart.count)].elementsEqual(recordStart)
        }
        return true
    }

    /// Reads into a new buffer, after what is in the old one, until it holds a block and the
    /// bytes that tell whether the block may end there, or the input ends. The new buffer is
    /// read into in place (no zeroes written first), so a block's bytes are copied only by
    /// the kernel. A record longer than a block doubles the buffer until its end is found.
    private mutating func fill() {
        if start > headroom {
            // Blocks were copied out of the buffer: what is left moves to the front, once.
            buffer = Bytes(repeating: 0, count: headroom) + buffer[start...]
            start = headroom
        }
        let lookahead = 1 + recordStart.count
        let target = buffer.count < start + blockSize + lookahead ? start + blockSize + lookahead : buffer.count + Swift.max(buffer.count, 1 << 16)
        var reachedEnd = false
        buffer = [UInt8](unsafeUninitializedCapacity: target) { [buffer, descriptor] space, count in
            count = space.initialize(fromContentsOf: buffer)
            while count < target {
                let got = Glibc.read(descriptor, space.baseAddress! + count, target - count)
                if got > 0 {
                    count += got
                } else if got < 0 && errno == EINTR {
                    continue
                } else {
                    reachedEnd = true
                    break
                }
            }
        }
        if reachedEnd { ended = true }
    }

    /// Appends what one read of the input brings; marks the end (or a read error).
    private mutating func read() {
        if !appendRead(from: descriptor, upTo: Swift.max(1 << 16, Swift.min(blockSize, 1 << 22)), to: &buffer) { ended = true }
    }
}
