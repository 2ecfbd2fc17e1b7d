/// Reassembles frames from a byte stream that arrives in arbitrary pieces.
///
/// Bytes are read straight into the reader's storage (`readIntoStorage`), and a complete
/// frame's body is handed out as a borrowed buffer, so a large payload is never copied twice.
struct FrameReader {
    private var storage: [UInt8]
    private var readIndex = 0
    private var writeIndex = 0
    private var preambleChecked: Bool
    /// Frames longer than this are refused (a worker learns its coordinator's limit from the
    /// coordinator's hello).
    var maximumFrameSize: Int

    /// - Parameter expectsPreamble: whether the stream starts with the 8-byte preamble.
    init(maximumFrameSize: Int = WireProtocol.defaultMaximumFrameSize, expectsPreamble: Bool = true) {
        self.maximumFrameSize = maximumFrameSize
        preambleChecked = !expectsPreamble
        storage = [UInt8](repeating: 0, count: 16 * 1024)
    }

    var bufferedByteCount: Int { writeIndex - readIndex }

    /// Lets `read` fill free space at the end of the storage (at least `minimum` bytes of it)
    /// and records how many bytes it wrote.
    mutating func readIntoStorage(
        minimum: Int = 16 * 1024,
        _ read: (UnsafeMutableRawBufferPointer) throws -> Int
    ) rethrows {
        reserveTail(minimum)
        let start = writeIndex
        let written = try storage.withUnsafeMutableBytes { bytes in
            try read(UnsafeMutableRawBufferPointer(rebasing: bytes[start...]))
        }
        writeIndex += written
    }

    /// Appends bytes received some other way (tests, fuzzing).
    mutating func append(_ bytes: some Collection<UInt8>) {
        reserveTail(bytes.count)
        storage.replaceSubrange(writeIndex..<writeIndex + bytes.count, with: bytes)
        writeIndex += bytes.count
    }

    /// Hands the next complete frame to `body`, or returns nil if more bytes are needed.
    ///
    /// The body buffer is valid only during the call.
    /// - Throws: `WireError` for a bad preamble, a version mismatch, an empty frame or one
    ///   larger than `maximumFrameSize`; rethrows what `body` throws.
    mutating func nextFrame<Result>(
        _ body: (_ type: UInt8, _ frameBody: UnsafeRawBufferPointer) throws -> Result
    ) throws -> Result? {
        if !preambleChecked {
            guard bufferedByteCount >= WireProtocol.preambleSize else {
                try checkPartialPreamble()
                return nil
            }
            try checkPreamble()
            readIndex += WireProtocol.preambleSize
            preambleChecked = true
        }
        guard bufferedByteCount >= WireProtocol.frameHeaderSize else { return nil }
        let length = storage.withUnsafeBytes { bytes in
            Int(bytes.loadUnaligned(fromByteOffset: readIndex, as: UInt32.self).littleEndian)
        }
        guard length >= 1 else { throw WireError("empty frame (length 0) at stream offset \(readIndex)") }
        guard length <= maximumFrameSize else {
            throw WireError("frame of \(length) bytes exceeds the maximum frame size of \(maximumFrameSize) bytes")
        }
        guard bufferedByteCount >= 4 + length else {
            // Make room for more of the frame, but only as its bytes arrive: a header alone
            // (which anyone can forge) must not make us allocate the size it claims.
            reserveTail(min(4 + length - bufferedByteCount, 1 << 20))
            return nil
        }
        let frameStart = readIndex
        readIndex += 4 + length
        let result = try storage.withUnsafeBytes { bytes in
            try body(bytes[frameStart + 4], UnsafeRawBufferPointer(rebasing: bytes[(frameStart + 5)..<(frameStart + 4 + length)]))
        }
        if readIndex == writeIndex {
            readIndex = 0
            writeIndex = 0
        }
        return result
    }

    /// The type and length of a frame whose body has only partly arrived, if its length is at
    /// least `minimumLength` (and within the limit): the caller may then read the rest of a large
    /// body straight to where it wants it, with ``takePartialFrameBody(into:)``.
    func partialFrameHeader(minimumLength: Int) -> (type: UInt8, length: Int)? {
        guard preambleChecked, bufferedByteCount >= WireProtocol.frameHeaderSize else { return nil }
        let length = storage.withUnsafeBytes { bytes in
            Int(bytes.loadUnaligned(fromByteOffset: readIndex, as: UInt32.self).littleEndian)
        }
        guard length >= minimumLength, length <= maximumFrameSize, bufferedByteCount < 4 + length else { return nil }
        return (storage[readIndex + 4], length)
    }

    /// Copies the part of the partial frame's body that has arrived (see
    /// ``partialFrameHeader(minimumLength:)``) to the start of `destination`, and forgets the
    /// frame: the caller reads the rest of the body itself, and the reader goes on after it.
    ///
    /// - Returns: The number of body bytes copied.
    mutating func takePartialFrameBody(into destination: UnsafeMutableRawBufferPointer) -> Int {
        let bodyStart = readIndex + WireProtocol.frameHeaderSize
        let count = writeIndex - bodyStart
        storage.withUnsafeBytes { bytes in
            destination.baseAddress!.copyMemory(from: bytes.baseAddress! + bodyStart, byteCount: count)
        }
        readIndex = 0
        writeIndex = 0
        return count
    }

    private func checkPreamble() throws(WireError) {
        let received = Array(storage[readIndex..<readIndex + WireProtocol.preambleSize])
        guard Array(received[0..<4]) == WireProtocol.magic else {
            throw WireError("not a multiprocessing peer: the stream starts with \(Self.describe(received)) instead of the magic \"SWMP\"")
        }
        let version = UInt16(received[4]) | UInt16(received[5]) << 8
        guard version == WireProtocol.version else {
            throw WireError("protocol version \(version) is not supported (this side speaks version \(WireProtocol.version))")
        }
        guard received[6] == 0 && received[7] == 0 else {
            throw WireError("the preamble's reserved flags are \(received[6]) \(received[7]); version \(version) requires zero")
        }
    }

    /// Fails early when the first bytes already cannot be the magic.
    private func checkPartialPreamble() throws(WireError) {
        let count = min(bufferedByteCount, 4)
        let received = Array(storage[readIndex..<readIndex + count])
        guard received == Array(WireProtocol.magic[0..<count]) else {
            throw WireError("not a multiprocessing peer: the stream starts with \(Self.describe(received)) instead of the magic \"SWMP\"")
        }
    }

    private static func describe(_ bytes: [UInt8]) -> String {
        let hex = bytes.map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined(separator: " ")
        let printable = String(decoding: bytes.map { (0x20..<0x7F).contains($0) ? $0 : UInt8(ascii: ".") }, as: UTF8.self)
        return "\(hex) (\"\(printable)\")"
    }

    /// Ensures `count` writable bytes after `writeIndex`, compacting before growing.
    private mutating func reserveTail(_ count: Int) {
        if storage.count - writeIndex >= count { return }
        if readIndex > 0 {
            let live = bufferedByteCount
            storage.withUnsafeMutableBytes { bytes in
                bytes.baseAddress!.copyMemory(from: bytes.baseAddress! + readIndex, byteCount: live)
            }
            readIndex = 0
            writeIndex = live
            if storage.count - writeIndex >= count { return }
        }
        var newSize = storage.count
        while newSize - writeIndex < count { newSize *= 2 }
        storage.append(contentsOf: repeatElement(0, count: newSize - storage.count))
    }
}
