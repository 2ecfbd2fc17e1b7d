/// Appends protocol fields to a byte buffer: little-endian fixed-width integers, LEB128 varints,
/// length-prefixed strings and byte blocks.
struct WireWriter {
    var bytes: [UInt8]

    init(reservingCapacity capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    mutating func writeByte(_ value: UInt8) { bytes.append(value) }

    mutating func writeUInt16(_ value: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: value))
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
    }

    mutating func writeUInt32(_ value: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }

    mutating func writeVarint(_ value: UInt64) {
        Varint.append(value, to: &bytes)
    }

    mutating func writeVarint(_ value: Int) {
        precondition(value >= 0, "negative length or count")
        Varint.append(UInt64(value), to: &bytes)
    }

    mutating func writeString(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            writeVarint(utf8.count)
            bytes.append(contentsOf: utf8)
        }
    }

    mutating func writeBlock(_ value: UnsafeRawBufferPointer) {
        writeVarint(value.count)
        bytes.append(contentsOf: value)
    }

    mutating func writeBlock(_ value: [UInt8]) {
        writeVarint(value.count)
        bytes.append(contentsOf: value)
    }
}

/// Reads protocol fields from a byte range, checking every length against what remains.
struct WireReader {
    let bytes: UnsafeRawBufferPointer
    private(set) var offset: Int

    init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        offset = 0
    }

    var remaining: Int { bytes.count - offset }
    var isAtEnd: Bool { offset == bytes.count }

    mutating func readByte(_ what: @autoclosure () -> String) throws(WireError) -> UInt8 {
        guard offset < bytes.count else { throw .truncated(what(), needed: 1, remaining: 0) }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func readUInt16(_ what: @autoclosure () -> String) throws(WireError) -> UInt16 {
        guard remaining >= 2 else { throw .truncated(what(), needed: 2, remaining: remaining) }
        defer { offset += 2 }
        return UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }

    mutating func readVarint(_ what: @autoclosure () -> String) throws(WireError) -> UInt64 {
        do {
            return try Varint.read(from: bytes, offset: &offset)
        } catch .truncated {
            throw .truncated("varint \(what())", needed: remaining + 1, remaining: remaining)
        } catch {
            throw WireError("malformed varint for \(what()) at offset \(offset): longer than 10 bytes or over 64 bits")
        }
    }

    /// A varint that must fit in `Int` and be at most `limit`.
    mutating func readCount(_ what: @autoclosure () -> String, limit: Int) throws(WireError) -> Int {
        let value = try readVarint(what())
        guard value <= UInt64(limit) else {
            throw WireError("\(what()) is \(value), over the limit of \(limit)")
        }
        return Int(value)
    }

    mutating func readBlock(_ what: @autoclosure () -> String) throws(WireError) -> UnsafeRawBufferPointer {
        let count = try readCount("length of \(what())", limit: remaining)
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count])
    }

    mutating func readString(_ what: @autoclosure () -> String) throws(WireError) -> String {
        let block = try readBlock(what())
        guard let string = String(validating: block, as: UTF8.self) else {
            throw WireError("\(what()) is not valid UTF-8")
        }
        return string
    }

    func expectEnd(_ what: @autoclosure () -> String) throws(WireError) {
        guard isAtEnd else { throw WireError("\(remaining) unexpected trailing bytes after \(what())") }
    }
}
