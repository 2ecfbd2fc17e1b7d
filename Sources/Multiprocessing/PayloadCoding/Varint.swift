/// LEB128 varints and the zigzag mapping for signed integers.
///
/// The payload codec uses these for every integer, count and length; frame headers and any other
/// code that writes compact integers should use them too, so that there is one definition of the
/// wire encoding of an integer. They live with the payload codecs because the framing layer
/// (Wire/) builds on payload coding, never the other way round.
///
/// A varint stores 7 bits per byte, least significant group first; the high bit of a byte is set
/// when another byte follows. Zigzag maps signed integers to unsigned ones so that values of small
/// magnitude stay short: 0 → 0, -1 → 1, 1 → 2, -2 → 3, …
enum Varint {
    /// The longest valid encoding of a 64-bit value: ceil(64 / 7) bytes.
    static let maxEncodedLength = 10

    /// Why a varint could not be read.
    enum Failure: Error, Equatable, Sendable {
        /// The buffer ended before a byte without the continuation bit.
        case truncated
        /// More than ten bytes, or a tenth byte carrying bits beyond the 64th.
        case overlong
    }

    /// `next` value returned by ``decode(from:at:end:)`` when the buffer ends mid-varint.
    static let truncatedMarker = -1
    /// `next` value returned by ``decode(from:at:end:)`` for a varint that cannot fit 64 bits.
    static let overlongMarker = -2

    // MARK: Sizes and mappings

    /// The number of bytes ``append(_:to:)`` writes for `value` (1…10).
    @inline(__always)
    static func encodedLength(of value: UInt64) -> Int {
        // `| 1` makes zero count as one significant bit, so it still takes one byte.
        let significantBits = 64 &- (value | 1).leadingZeroBitCount
        return (significantBits &+ 6) / 7
    }

    /// Maps a signed value to an unsigned one whose magnitude grows with `abs(value)`.
    @inline(__always)
    static func zigzag(_ value: Int64) -> UInt64 {
        UInt64(bitPattern: (value &<< 1) ^ (value &>> 63))
    }

    /// Inverse of ``zigzag(_:)``.
    @inline(__always)
    static func unzigzag(_ value: UInt64) -> Int64 {
        Int64(bitPattern: value &>> 1) ^ (0 &- Int64(bitPattern: value & 1))
    }

    // MARK: Writing

    /// Appends the LEB128 encoding of `value` to `buffer`.
    @inline(__always)
    static func append(_ value: UInt64, to buffer: inout [UInt8]) {
        if value < 0x80 {
            buffer.append(UInt8(truncatingIfNeeded: value))
        } else {
            appendMultiByte(value, to: &buffer)
        }
    }

    /// Appends the zigzag LEB128 encoding of `value` to `buffer`.
    @inline(__always)
    static func appendSigned(_ value: Int64, to buffer: inout [UInt8]) {
        append(zigzag(value), to: &buffer)
    }

    // Kept out of line so the one-byte case inlines to a compare and an append.
    static func appendMultiByte(_ value: UInt64, to buffer: inout [UInt8]) {
        var remaining = value
        while remaining >= 0x80 {
            buffer.append(UInt8(truncatingIfNeeded: remaining) | 0x80)
            remaining &>>= 7
        }
        buffer.append(UInt8(truncatingIfNeeded: remaining))
    }

    /// Writes the LEB128 encoding of `value` at `destination`, which must have room for
    /// ``encodedLength(of:)`` bytes.
    ///
    /// - Returns: The number of bytes written.
    @inline(__always)
    static func write(_ value: UInt64, to destination: UnsafeMutablePointer<UInt8>) -> Int {
        var remaining = value
        var written = 0
        while remaining >= 0x80 {
            destination[written] = UInt8(truncatingIfNeeded: remaining) | 0x80
            remaining &>>= 7
            written &+= 1
        }
        destination[written] = UInt8(truncatingIfNeeded: remaining)
        return written &+ 1
    }

    /// The LEB128 encoding of `value` as a new array (convenient in tests and headers).
    static func encode(_ value: UInt64) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(encodedLength(of: value))
        append(value, to: &bytes)
        return bytes
    }

    // MARK: Reading

    /// Decodes a varint from `buffer[offset..<end]` without throwing, for hot loops.
    ///
    /// - Returns: The value and the offset just past it; on failure `next` is
    ///   ``truncatedMarker`` or ``overlongMarker`` and `value` is 0.
    @inline(__always)
    static func decode(
        from buffer: UnsafeRawBufferPointer, at offset: Int, end: Int
    ) -> (value: UInt64, next: Int) {
        if offset < end {
            let first = buffer[offset]
            if first < 0x80 { return (UInt64(first), offset &+ 1) }
        }
        return decodeMultiByte(from: buffer, at: offset, end: end)
    }

    static func decodeMultiByte(
        from buffer: UnsafeRawBufferPointer, at offset: Int, end: Int
    ) -> (value: UInt64, next: Int) {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        var position = offset
        while true {
            guard position < end else { return (0, truncatedMarker) }
            let byte = buffer[position]
            position &+= 1
            if shift == 63 {
                // The tenth byte may only supply bit 63; anything else overflows 64 bits or
                // asks for an eleventh byte.
                guard byte <= 1 else { return (0, overlongMarker) }
                return (result | (UInt64(byte) &<< 63), position)
            }
            result |= UInt64(byte & 0x7F) &<< shift
            if byte < 0x80 { return (result, position) }
            shift &+= 7
        }
    }

    /// Reads a varint at `offset` and advances `offset` past it.
    ///
    /// - Parameters:
    ///   - buffer: The bytes to read from; reading stops at `buffer.count`.
    ///   - offset: Where the varint starts; on success, set to the first byte after it.
    /// - Returns: The decoded value.
    /// - Throws: ``Failure/truncated`` or ``Failure/overlong``; `offset` is then unchanged.
    static func read(from buffer: UnsafeRawBufferPointer, offset: inout Int) throws(Failure) -> UInt64 {
        let (value, next) = decode(from: buffer, at: offset, end: buffer.count)
        if next == truncatedMarker { throw .truncated }
        if next == overlongMarker { throw .overlong }
        offset = next
        return value
    }
}
