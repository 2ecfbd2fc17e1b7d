/// The scalar types of the format: each has one fixed encoding, whatever container it is in.
enum PayloadScalarKind: UInt8 {
    case int, string, double, bool, uint8, int8, int64, int32, int16, uint, uint64, uint32, uint16, float, data
}

/// Bounds-checked readers for the scalar encodings of the payload format.
///
/// Every read takes the current offset and the end of the region it may read, so the same
/// reader serves the whole buffer, a keyed entry's value, or an unkeyed container. Every failure
/// becomes a `DecodingError.dataCorrupted` naming what was being read and at which byte offset.
/// The coding path is an autoclosure because it is only needed when something goes wrong.
struct PayloadReader {
    let base: UnsafeRawBufferPointer

    // MARK: Errors

    func corrupted(_ message: String, _ path: [any CodingKey]) -> DecodingError {
        .dataCorrupted(DecodingError.Context(codingPath: path, debugDescription: message))
    }

    func truncated(
        _ what: String, needs count: Int, at offset: Int, end: Int, _ path: [any CodingKey]
    ) -> DecodingError {
        corrupted(
            "truncated payload: expected \(count) bytes for \(what) at offset \(offset), "
                + "\(max(0, end - offset)) remain",
            path)
    }

    private func varintFailure(
        _ marker: Int, _ what: String, at offset: Int, end: Int, _ path: [any CodingKey]
    ) -> DecodingError {
        if marker == Varint.truncatedMarker {
            return corrupted(
                "truncated payload: varint for \(what) at offset \(offset) runs past the end "
                    + "(\(max(0, end - offset)) bytes remain)",
                path)
        }
        return corrupted(
            "malformed varint for \(what) at offset \(offset): longer than 10 bytes or wider than 64 bits",
            path)
    }

    // MARK: Primitive reads

    @inline(__always)
    func readByte(
        _ offset: inout Int, _ end: Int, _ what: @autoclosure () -> String,
        _ path: @autoclosure () -> [any CodingKey]
    ) throws -> UInt8 {
        guard offset < end else { throw truncated(what(), needs: 1, at: offset, end: end, path()) }
        let byte = base[offset]
        offset &+= 1
        return byte
    }

    @inline(__always)
    func readVarint(
        _ offset: inout Int, _ end: Int, _ what: @autoclosure () -> String,
        _ path: @autoclosure () -> [any CodingKey]
    ) throws -> UInt64 {
        let (value, next) = Varint.decode(from: base, at: offset, end: end)
        guard next >= 0 else { throw varintFailure(next, what(), at: offset, end: end, path()) }
        offset = next
        return value
    }

    /// Reads a varint count or byte length and checks it against the bytes left in the region.
    ///
    /// Every element, entry or byte takes at least one byte, so no valid count exceeds the
    /// remaining bytes; checking here is what lets callers reserve capacity from a count.
    @inline(__always)
    func readLength(
        _ offset: inout Int, _ end: Int, _ what: @autoclosure () -> String,
        _ path: @autoclosure () -> [any CodingKey]
    ) throws -> Int {
        let start = offset
        let value = try readVarint(&offset, end, what(), path())
        let remaining = end &- offset
        guard value <= UInt64(remaining) else {
            offset = start
            throw corrupted(
                "\(what()) \(value) at offset \(start) exceeds the \(remaining) bytes that remain",
                path())
        }
        return Int(value)
    }

    @inline(__always)
    func readLittleEndian64(
        _ offset: inout Int, _ end: Int, _ what: @autoclosure () -> String,
        _ path: @autoclosure () -> [any CodingKey]
    ) throws -> UInt64 {
        guard end &- offset >= 8 else { throw truncated(what(), needs: 8, at: offset, end: end, path()) }
        let value = base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        offset &+= 8
        return UInt64(littleEndian: value)
    }

    @inline(__always)
    func readLittleEndian32(
        _ offset: inout Int, _ end: Int, _ what: @autoclosure () -> String,
        _ path: @autoclosure () -> [any CodingKey]
    ) throws -> UInt32 {
        guard end &- offset >= 4 else { throw truncated(what(), needs: 4, at: offset, end: end, path()) }
        let value = base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
        offset &+= 4
        return UInt32(littleEndian: value)
    }

    /// A view of `count` bytes at `offset`; the caller has already checked the bounds.
    @inline(__always)
    func slice(_ offset: Int, _ count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: base[offset..<(offset &+ count)])
    }

    func readString(
        _ offset: inout Int, _ end: Int, _ path: @autoclosure () -> [any CodingKey]
    ) throws -> String {
        let start = offset
        let count = try readLength(&offset, end, "String length", path())
        guard let string = Self.validatedString(slice(offset, count)) else {
            offset = start
            throw corrupted("invalid UTF-8 in String of \(count) bytes at offset \(start)", path())
        }
        offset &+= count
        return string
    }

    /// The string whose UTF-8 is exactly `bytes`, or `nil` if they are not valid UTF-8.
    ///
    /// `String(validating:as:)` goes through unspecialized generic code that costs more than the
    /// rest of a small decode; the repairing initializer is specialized for contiguous bytes, and
    /// it changed nothing exactly when the input was valid.
    static func validatedString(_ bytes: UnsafeRawBufferPointer) -> String? {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return "" }
        let input = UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: bytes.count)
        var string = String(decoding: input, as: UTF8.self)
        let unchanged = string.withUTF8 { decoded in
            decoded.count == input.count && bytesAreEqual(UnsafeRawPointer(decoded.baseAddress!), base, count: input.count)
        }
        return unchanged ? string : nil
    }

    func readBool(
        _ offset: inout Int, _ end: Int, _ path: @autoclosure () -> [any CodingKey]
    ) throws -> Bool {
        let byte = try readByte(&offset, end, "Bool", path())
        guard byte <= 1 else {
            offset &-= 1
            throw corrupted("invalid Bool byte \(byte) at offset \(offset) (expected 0 or 1)", path())
        }
        return byte == 1
    }

    @inline(__always)
    func readSigned<T: FixedWidthInteger & SignedInteger>(
        _: T.Type, _ offset: inout Int, _ end: Int, _ path: @autoclosure () -> [any CodingKey]
    ) throws -> T {
        let start = offset
        let raw = try readVarint(&offset, end, "\(T.self)", path())
        let value = Varint.unzigzag(raw)
        guard let result = T(exactly: value) else {
            offset = start
            throw corrupted("integer overflow: \(value) at offset \(start) does not fit \(T.self)", path())
        }
        return result
    }

    @inline(__always)
    func readUnsigned<T: FixedWidthInteger & UnsignedInteger>(
        _: T.Type, _ offset: inout Int, _ end: Int, _ path: @autoclosure () -> [any CodingKey]
    ) throws -> T {
        let start = offset
        let value = try readVarint(&offset, end, "\(T.self)", path())
        guard let result = T(exactly: value) else {
            offset = start
            throw corrupted("integer overflow: \(value) at offset \(start) does not fit \(T.self)", path())
        }
        return result
    }

    /// Reads a `Data` (``FoundationTypes/data``) as `T`.
    func readData<T>(
        as type: T.Type, _ offset: inout Int, _ end: Int, _ path: @autoclosure () -> [any CodingKey]
    ) throws -> T {
        let count = try readLength(&offset, end, "Data length", path())
        let data = FoundationTypes.makeBytes(T.self, copying: UnsafeRawBufferPointer(rebasing: base[offset..<(offset &+ count)]))
        offset &+= count
        return data
    }

    /// Which scalar of the format `T` is, or `nil` for other types.
    ///
    /// Metatype compares cost a few pointer compares in unspecialized code and fold to a constant
    /// when `T` is known; returning a small enum rather than a `T?` also spares unspecialized
    /// callers the runtime lookup of `Optional<T>`'s metadata.
    @inline(__always)
    static func scalarKind<T>(_: T.Type) -> PayloadScalarKind? {
        if T.self == Int.self { return .int }
        if T.self == String.self { return .string }
        if T.self == Double.self { return .double }
        if T.self == Bool.self { return .bool }
        if T.self == UInt8.self { return .uint8 }
        if T.self == Int8.self { return .int8 }
        if T.self == Int64.self { return .int64 }
        if T.self == Int32.self { return .int32 }
        if T.self == Int16.self { return .int16 }
        if T.self == UInt.self { return .uint }
        if T.self == UInt64.self { return .uint64 }
        if T.self == UInt32.self { return .uint32 }
        if T.self == UInt16.self { return .uint16 }
        if T.self == Float.self { return .float }
        if FoundationTypes.isData(T.self) { return .data }
        return nil
    }

    /// Reads a scalar of the kind ``scalarKind(_:)`` returned for `T` (the mirror of
    /// `PayloadWriter.appendScalar`).
    @inline(__always)
    func readScalar<T>(
        _ kind: PayloadScalarKind, as: T.Type, _ offset: inout Int, _ end: Int,
        _ path: @autoclosure () -> [any CodingKey]
    ) throws -> T {
        switch kind {
        case .int:
            return unsafeBitCast(try readSigned(Int.self, &offset, end, path()), to: T.self)
        case .string:
            return unsafeBitCast(try readString(&offset, end, path()), to: T.self)
        case .double:
            let bits = try readLittleEndian64(&offset, end, "Double", path())
            return unsafeBitCast(Double(bitPattern: bits), to: T.self)
        case .bool:
            return unsafeBitCast(try readBool(&offset, end, path()), to: T.self)
        case .uint8:
            return unsafeBitCast(try readByte(&offset, end, "UInt8", path()), to: T.self)
        case .int8:
            return unsafeBitCast(Int8(bitPattern: try readByte(&offset, end, "Int8", path())), to: T.self)
        case .int64:
            return unsafeBitCast(try readSigned(Int64.self, &offset, end, path()), to: T.self)
        case .int32:
            return unsafeBitCast(try readSigned(Int32.self, &offset, end, path()), to: T.self)
        case .int16:
            return unsafeBitCast(try readSigned(Int16.self, &offset, end, path()), to: T.self)
        case .uint:
            return unsafeBitCast(try readUnsigned(UInt.self, &offset, end, path()), to: T.self)
        case .uint64:
            return unsafeBitCast(try readUnsigned(UInt64.self, &offset, end, path()), to: T.self)
        case .uint32:
            return unsafeBitCast(try readUnsigned(UInt32.self, &offset, end, path()), to: T.self)
        case .uint16:
            return unsafeBitCast(try readUnsigned(UInt16.self, &offset, end, path()), to: T.self)
        case .float:
            let bits = try readLittleEndian32(&offset, end, "Float", path())
            return unsafeBitCast(Float(bitPattern: bits), to: T.self)
        case .data:
            return try readData(as: T.self, &offset, end, path())
        }
    }

    /// Checks that a value used up exactly the region it was given.
    func requireEnd(
        _ offset: Int, _ end: Int, _ what: @autoclosure () -> String,
        _ path: @autoclosure () -> [any CodingKey]
    ) throws {
        guard offset != end else { return }
        throw corrupted("\(end - offset) trailing bytes at offset \(offset) after \(what())", path())
    }
}

/// Whether the first `count` bytes at `first` and `second` are equal: `memcmp` in Swift, so
/// that the codecs need nothing from the C library.
@inline(__always)
func bytesAreEqual(_ first: UnsafeRawPointer, _ second: UnsafeRawPointer, count: Int) -> Bool {
    var offset = 0
    while offset + 8 <= count {
        if first.loadUnaligned(fromByteOffset: offset, as: UInt64.self) != second.loadUnaligned(fromByteOffset: offset, as: UInt64.self) {
            return false
        }
        offset += 8
    }
    while offset < count {
        if first.load(fromByteOffset: offset, as: UInt8.self) != second.load(fromByteOffset: offset, as: UInt8.self) { return false }
        offset += 1
    }
    return true
}
