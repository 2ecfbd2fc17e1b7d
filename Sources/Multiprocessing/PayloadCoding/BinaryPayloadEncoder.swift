/// Encodes `Encodable` values in the pool's compact binary payload format.
///
/// The format is not self-describing: it stores no type information, and integers are varints,
/// so a payload is decoded with the same types that encoded it. `PayloadFormat.md` describes the
/// bytes.
///
/// Scalars, strings, `Data` and arrays of numbers at the top level are written without creating
/// any encoder object, which keeps the encoding of a tiny job's argument cheap.
public struct BinaryPayloadEncoder: Sendable {
    /// Creates an encoder. It has no options and no state; one value can be shared freely.
    public init() {}

    /// Encodes a value.
    ///
    /// - Parameter value: The value to encode.
    /// - Returns: The encoded bytes.
    /// - Throws: `EncodingError.invalidValue` if the value nests containers more than 512 levels
    ///   deep, writes to a nested container after its parent container continued, or writes an
    ///   unkeyed element that encodes to nothing; errors thrown by the value's `encode(to:)`.
    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        var bytes: [UInt8] = []
        try encode(value, into: &bytes)
        return bytes
    }

    /// Appends the encoding of a value to a buffer, without an intermediate array.
    ///
    /// - Parameters:
    ///   - value: The value to encode.
    ///   - buffer: The buffer to append to. On error it is left as it was.
    /// - Throws: The errors of ``encode(_:)``.
    public func encode<T: Encodable>(_ value: T, into buffer: inout [UInt8]) throws {
        if PayloadWriter.appendScalar(value, to: &buffer) { return }
        let special = value as? any PayloadEncodableSpecial
        if let special, special.appendBulk(to: &buffer) { return }
        let originalCount = buffer.count
        let core = PayloadEncoderCore()
        // Swap rather than copy: the core appends to the caller's storage, which stays uniquely
        // referenced, and the caller gets it back even when encoding throws.
        swap(&core.bytes, &buffer)
        defer { swap(&core.bytes, &buffer) }
        do {
            if let special {
                try special.encodePayload(into: core)
            } else {
                try core.encodeComposite(value)
            }
            try core.finish()
        } catch {
            core.bytes.removeSubrange(originalCount..<core.bytes.count)
            throw error
        }
    }
}

// MARK: - Type marker

/// Lets the encoder recognize `Optional` and `Array` in generic code, with one conformance check
/// per value.
///
/// `Optional`'s own `Encodable` conformance goes through a single-value container, where a
/// present value cannot be told from its wrapped value; the format needs a tag instead. For
/// arrays, the marker writes the count up front and the elements without a container box, in
/// exactly the bytes `Array`'s own conformance would produce.
protocol PayloadEncodableSpecial {
    /// Writes the value where nothing marks its end: an Optional's tag byte (0 nil, 1 present)
    /// and wrapped value; an array's count and elements.
    func encodePayload(into core: PayloadEncoderCore) throws
    /// Writes the value of a keyed entry, whose length is stored: an Optional's wrapped value, or
    /// nothing for nil; an array as in ``encodePayload(into:)``.
    func encodeEntryPayload(into core: PayloadEncoderCore) throws
    /// Writes arrays of numbers and bytes without any encoder object; `false` otherwise.
    func appendBulk(to bytes: inout [UInt8]) -> Bool
    /// How many bytes ``encodeEntryPayload(into:)`` will write, when that is known without
    /// writing them (byte and fixed-width arrays, and Optionals of them). A keyed entry's
    /// length then goes before its value instead of being patched in after it, which for a
    /// value of 128 bytes or more would shift the whole value.
    var knownEntryPayloadLength: Int? { get }
}

extension Optional: PayloadEncodableSpecial where Wrapped: Encodable {
    func encodePayload(into core: PayloadEncoderCore) throws {
        switch self {
        case .none:
            core.bytes.append(0)
        case .some(let wrapped):
            core.bytes.append(1)
            try core.encodeValue(wrapped)
        }
    }

    func encodeEntryPayload(into core: PayloadEncoderCore) throws {
        if case .some(let wrapped) = self {
            try core.encodeValue(wrapped)
        }
    }

    func appendBulk(to bytes: inout [UInt8]) -> Bool { false }

    var knownEntryPayloadLength: Int? {
        switch self {
        case .none: 0
        // The wrapped value is written by `encodeValue`, as an array writes its payload. The
        // type is checked first: a cast of a value would look through a nested Optional,
        // whose payload has a tag byte more.
        case .some(let wrapped): Wrapped.self is any PayloadBulkArray.Type ? (wrapped as? any PayloadBulkArray)?.bulkPayloadLength : nil
        }
    }
}

/// Arrays whose payload length follows from their count.
protocol PayloadBulkArray {
    /// The bytes ``PayloadWriter/appendBulkArray(_:to:)`` writes for this array, when they
    /// follow from the count alone (bytes, `Double`, `Float`); nil for varint elements.
    var bulkPayloadLength: Int? { get }
}

extension Array: PayloadBulkArray {
    var bulkPayloadLength: Int? {
        let width: Int
        if Element.self == UInt8.self {
            width = 1
        } else if Element.self == Double.self {
            width = 8
        } else if Element.self == Float.self {
            width = 4
        } else {
            return nil
        }
        return Varint.encodedLength(of: UInt64(count)) &+ count &* width
    }
}

extension Array: PayloadEncodableSpecial where Element: Encodable {
    func encodePayload(into core: PayloadEncoderCore) throws {
        if PayloadWriter.appendBulkArray(self, to: &core.bytes) { return }
        Varint.append(UInt64(count), to: &core.bytes)
        try core.encodeElements(self)
    }

    func encodeEntryPayload(into core: PayloadEncoderCore) throws {
        try encodePayload(into: core)
    }

    func appendBulk(to bytes: inout [UInt8]) -> Bool {
        PayloadWriter.appendBulkArray(self, to: &bytes)
    }

    var knownEntryPayloadLength: Int? { bulkPayloadLength }
}
