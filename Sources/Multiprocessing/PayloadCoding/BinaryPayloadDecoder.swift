/// Decodes values from the compact binary payload format written by ``BinaryPayloadEncoder``.
///
/// Decoding is defensive: on any input, however truncated or hostile, it throws a
/// `DecodingError` rather than crashing, looping or allocating memory in proportion to a count it
/// has not checked against the bytes that remain.
public struct BinaryPayloadDecoder: Sendable {
    /// Creates a decoder. It has no options and no state; one value can be shared freely.
    public init() {}

    /// Decodes a value of the given type from an array of bytes.
    ///
    /// - Parameters:
    ///   - type: The type of the value to decode; the type the payload was encoded from.
    ///   - bytes: The payload. All of it must belong to the value.
    /// - Returns: The decoded value.
    /// - Throws: The errors of ``decode(_:from:)-(_,UnsafeRawBufferPointer)``.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try bytes.withUnsafeBytes { try decode(type, from: $0) }
    }

    /// Decodes a value of the given type straight from a slice of a received frame, without
    /// copying it.
    ///
    /// - Parameters:
    ///   - type: The type of the value to decode; the type the payload was encoded from.
    ///   - buffer: The payload. All of it must belong to the value. The decoded value does not
    ///     refer to this memory once the call returns.
    /// - Returns: The decoded value.
    /// - Throws: `DecodingError.dataCorrupted` for a truncated or malformed payload, trailing
    ///   bytes, invalid UTF-8 or nesting deeper than 512 levels, with the byte offset in the
    ///   description; `DecodingError.keyNotFound` and `.valueNotFound` for missing keyed entries
    ///   or elements; errors thrown by the type's `init(from:)`.
    public func decode<T: Decodable>(_ type: T.Type, from buffer: UnsafeRawBufferPointer) throws -> T {
        // Scalars first, in a function of their own: the general path below needs `T?`, and
        // asking the runtime for that type's metadata on every call cost more than decoding
        // an Int.
        if let kind = PayloadReader.scalarKind(T.self) {
            return try Self.decodeScalar(kind, as: T.self, from: buffer)
        }
        return try decodeGeneral(type, from: buffer)
    }

    private static func decodeScalar<T>(_ kind: PayloadScalarKind, as: T.Type, from buffer: UnsafeRawBufferPointer) throws -> T {
        let reader = PayloadReader(base: buffer)
        var offset = 0
        let value = try reader.readScalar(kind, as: T.self, &offset, buffer.count, [])
        try reader.requireEnd(offset, buffer.count, "the top-level \(T.self)", [])
        return value
    }

    @inline(never)
    private func decodeGeneral<T: Decodable>(_ type: T.Type, from buffer: UnsafeRawBufferPointer) throws -> T {
        let reader = PayloadReader(base: buffer)
        var offset = 0
        let value: T
        let special = T.self as? any PayloadDecodableSpecial.Type
        if let special, let bulk = try Self.decodeBulk(special, as: T.self, reader, &offset) {
            value = bulk
        } else {
            let core = PayloadDecoderCore(
                reader: reader, start: 0, end: buffer.count, table: [], path: [], depth: 0, keepsRoot: false)
            if let special {
                value = try core.decodeSpecial(special, as: T.self)
            } else {
                value = try core.decodeComposite(T.self)
            }
            offset = core.pos
        }
        try reader.requireEnd(offset, buffer.count, "the top-level \(T.self)", [])
        return value
    }

    private static func decodeBulk<S: PayloadDecodableSpecial, T>(
        _: S.Type, as: T.Type, _ reader: PayloadReader, _ offset: inout Int
    ) throws -> T? {
        guard let bulk = try S.decodeBulk(reader, &offset, reader.base.count, []) else { return nil }
        return (bulk as! T)
    }
}

// MARK: - Type marker

/// Lets the decoder recognize `Optional` and `Array` in generic code, with one conformance check
/// per value; see `PayloadEncodableSpecial`.
protocol PayloadDecodableSpecial {
    /// Decodes the value at the decoder's position where nothing marks its end: an Optional's
    /// tag and wrapped value; an array's count and elements.
    static func decodePayload(from core: PayloadDecoderCore) throws -> Self
    /// Decodes the value of a keyed entry, which is the decoder's whole region: for an Optional,
    /// an empty region is nil and anything else the wrapped value.
    static func decodeEntryPayload(from core: PayloadDecoderCore) throws -> Self
    /// Arrays of numbers and bytes, or `nil` (reading nothing) for other types.
    static func decodeBulk(
        _ reader: PayloadReader, _ offset: inout Int, _ end: Int, _ path: @autoclosure () -> [any CodingKey]
    ) throws -> Self?
}

extension Optional: PayloadDecodableSpecial where Wrapped: Decodable {
    static func decodePayload(from core: PayloadDecoderCore) throws -> Self {
        try core.decodeTagged(Wrapped.self)
    }

    static func decodeEntryPayload(from core: PayloadDecoderCore) throws -> Self {
        if core.pos >= core.end { return nil }
        return try core.decodeValue(Wrapped.self)
    }

    static func decodeBulk(
        _ reader: PayloadReader, _ offset: inout Int, _ end: Int, _ path: @autoclosure () -> [any CodingKey]
    ) throws -> Self? {
        nil
    }
}

extension Array: PayloadDecodableSpecial where Element: Decodable {
    static func decodePayload(from core: PayloadDecoderCore) throws -> [Element] {
        if let bulk = try core.reader.readBulkArray(Element.self, &core.pos, core.end, core.path) {
            return bulk
        }
        let count = try core.reader.readLength(&core.pos, core.end, "Array count", core.path)
        return try core.decodeElements(count: count, of: Element.self)
    }

    static func decodeEntryPayload(from core: PayloadDecoderCore) throws -> [Element] {
        try decodePayload(from: core)
    }

    static func decodeBulk(
        _ reader: PayloadReader, _ offset: inout Int, _ end: Int, _ path: @autoclosure () -> [any CodingKey]
    ) throws -> [Element]? {
        try reader.readBulkArray(Element.self, &offset, end, path())
    }
}

extension PayloadReader {
    /// Reads an array whose elements are numbers or bytes in one pass (the mirror of
    /// `PayloadWriter.appendBulkArray`).
    ///
    /// - Returns: `nil`, reading nothing, for other element types.
    func readBulkArray<Element>(
        _: Element.Type, _ offset: inout Int, _ end: Int, _ path: @autoclosure () -> [any CodingKey]
    ) throws -> [Element]? {
        if Element.self == Int.self {
            let values = try readVarints(&offset, end, "[Int]", path()) { try readSigned(Int.self, &$0, end, path()) }
            return unsafeBitCast(values, to: [Element].self)
        } else if Element.self == UInt8.self {
            let count = try readLength(&offset, end, "[UInt8] count", path())
            let values = [UInt8](slice(offset, count))
            offset &+= count
            return unsafeBitCast(values, to: [Element].self)
        } else if Element.self == Double.self {
            let values = try readFixedWidth(&offset, end, "[Double]", path()) { Double(bitPattern: $0) as Double }
            return unsafeBitCast(values, to: [Element].self)
        } else if Element.self == Float.self {
            let values = try readFixedWidth(&offset, end, "[Float]", path()) { Float(bitPattern: $0) as Float }
            return unsafeBitCast(values, to: [Element].self)
        } else if Element.self == Int64.self {
            let values = try readVarints(&offset, end, "[Int64]", path()) { try readSigned(Int64.self, &$0, end, path()) }
            return unsafeBitCast(values, to: [Element].self)
        } else if Element.self == Int32.self {
            let values = try readVarints(&offset, end, "[Int32]", path()) { try readSigned(Int32.self, &$0, end, path()) }
            return unsafeBitCast(values, to: [Element].self)
        } else if Element.self == UInt64.self {
            let values = try readVarints(&offset, end, "[UInt64]", path()) {
                try readUnsigned(UInt64.self, &$0, end, path())
            }
            return unsafeBitCast(values, to: [Element].self)
        } else if Element.self == UInt32.self {
            let values = try readVarints(&offset, end, "[UInt32]", path()) {
                try readUnsigned(UInt32.self, &$0, end, path())
            }
            return unsafeBitCast(values, to: [Element].self)
        }
        return nil
    }

    @inline(__always)
    private func readVarints<T>(
        _ offset: inout Int, _ end: Int, _ what: String, _ path: @autoclosure () -> [any CodingKey],
        _ element: (inout Int) throws -> T
    ) throws -> [T] {
        // At most one element per remaining byte, so the allocation is bounded by the input.
        let count = try readLength(&offset, end, "\(what) count", path())
        var position = offset
        let values = try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            for index in 0..<count {
                buffer[index] = try element(&position)
                initialized = index &+ 1
            }
        }
        offset = position
        return values
    }

    @inline(__always)
    private func readFixedWidth<T, Bits: FixedWidthInteger>(
        _ offset: inout Int, _ end: Int, _ what: String, _ path: @autoclosure () -> [any CodingKey],
        _ fromBits: (Bits) -> T
    ) throws -> [T] {
        let start = offset
        let width = MemoryLayout<Bits>.size
        let count = try readVarint(&offset, end, "\(what) count", path())
        let remaining = end &- offset
        guard count <= UInt64(remaining / width) else {
            offset = start
            throw corrupted(
                "truncated payload: \(what) of \(count) elements at offset \(start) needs \(width) bytes "
                    + "each, \(remaining) remain",
                path())
        }
        let elementCount = Int(count)
        let bytes = slice(offset, elementCount &* width)
        let values = [T](unsafeUninitializedCapacity: elementCount) { buffer, initialized in
            #if _endian(little)
            // The little-endian IEEE-754 bytes of the format are the in-memory representation.
            UnsafeMutableRawBufferPointer(buffer).copyMemory(from: bytes)
            #else
            for index in 0..<elementCount {
                let bits = bytes.loadUnaligned(fromByteOffset: index &* width, as: Bits.self)
                buffer[index] = fromBits(Bits(littleEndian: bits))
            }
            #endif
            initialized = elementCount
        }
        offset &+= elementCount &* width
        return values
    }
}
