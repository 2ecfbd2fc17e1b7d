/// Byte-level writers for the scalar encodings of the payload format.
///
/// They work on a plain `inout [UInt8]` so the top-level fast path of ``BinaryPayloadEncoder``
/// can encode an `Int` or a `String` without creating any encoder object.
enum PayloadWriter {
    @inline(__always)
    static func appendLittleEndian(_ value: UInt32, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    @inline(__always)
    static func appendLittleEndian(_ value: UInt64, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    @inline(__always)
    static func appendString(_ value: String, to bytes: inout [UInt8]) {
        // `utf8.count` is O(1) for native strings, and `append(contentsOf:)` copies the
        // contiguous UTF-8 storage with one memcpy.
        Varint.append(UInt64(value.utf8.count), to: &bytes)
        bytes.append(contentsOf: value.utf8)
    }

    @inline(__always)
    static func appendData(_ value: Any, to bytes: inout [UInt8]) {
        FoundationTypes.withBytes(of: value) { data in
            Varint.append(UInt64(data.count), to: &bytes)
            bytes.append(contentsOf: data)
        }
    }

    /// Number of bytes ``appendString(_:to:)`` writes, so keyed entries can write their
    /// length prefix up front instead of patching it.
    @inline(__always)
    static func encodedLength(ofString value: String) -> Int {
        let count = value.utf8.count
        return Varint.encodedLength(of: UInt64(count)) &+ count
    }

    /// An `Int` in the binary codec: a zigzag varint. The one definition, for the paths that
    /// encode integers without going through `appendScalar` (integer ranges, a job's `Int`
    /// output).
    @inline(__always)
    static func appendInt(_ value: Int, to bytes: inout [UInt8]) {
        Varint.appendSigned(Int64(value), to: &bytes)
    }

    /// Appends `value` if `T` is one of the scalar types of the format.
    ///
    /// The checks compare metatypes, which costs a few pointer compares in unspecialized code and
    /// folds away entirely when `T` is known at compile time.
    ///
    /// - Returns: `false` if `T` is not a scalar type; nothing is written then.
    @inline(__always)
    static func appendScalar<T>(_ value: T, to bytes: inout [UInt8]) -> Bool {
        if T.self == Int.self {
            appendInt(unsafeBitCast(value, to: Int.self), to: &bytes)
        } else if T.self == String.self {
            appendString(unsafeBitCast(value, to: String.self), to: &bytes)
        } else if T.self == Double.self {
            appendLittleEndian(unsafeBitCast(value, to: Double.self).bitPattern, to: &bytes)
        } else if T.self == Bool.self {
            bytes.append(unsafeBitCast(value, to: Bool.self) ? 1 : 0)
        } else if T.self == UInt8.self {
            bytes.append(unsafeBitCast(value, to: UInt8.self))
        } else if T.self == Int8.self {
            bytes.append(UInt8(bitPattern: unsafeBitCast(value, to: Int8.self)))
        } else if T.self == Int64.self {
            Varint.appendSigned(unsafeBitCast(value, to: Int64.self), to: &bytes)
        } else if T.self == Int32.self {
            Varint.appendSigned(Int64(unsafeBitCast(value, to: Int32.self)), to: &bytes)
        } else if T.self == Int16.self {
            Varint.appendSigned(Int64(unsafeBitCast(value, to: Int16.self)), to: &bytes)
        } else if T.self == UInt.self {
            Varint.append(UInt64(unsafeBitCast(value, to: UInt.self)), to: &bytes)
        } else if T.self == UInt64.self {
            Varint.append(unsafeBitCast(value, to: UInt64.self), to: &bytes)
        } else if T.self == UInt32.self {
            Varint.append(UInt64(unsafeBitCast(value, to: UInt32.self)), to: &bytes)
        } else if T.self == UInt16.self {
            Varint.append(UInt64(unsafeBitCast(value, to: UInt16.self)), to: &bytes)
        } else if T.self == Float.self {
            appendLittleEndian(unsafeBitCast(value, to: Float.self).bitPattern, to: &bytes)
        } else if FoundationTypes.isData(T.self) {
            appendData(value, to: &bytes)
        } else {
            return false
        }
        return true
    }

    /// Appends `elements` if `Element` has a bulk encoding: count, then the elements exactly as
    /// the element-by-element path would write them, so the fast path never changes the bytes.
    ///
    /// - Returns: `false` if `Element` has no bulk encoding; nothing is written then.
    static func appendBulkArray<Element>(_ elements: [Element], to bytes: inout [UInt8]) -> Bool {
        if Element.self == Int.self {
            appendVarints(unsafeBitCast(elements, to: [Int].self), to: &bytes) { Varint.zigzag(Int64($0)) }
        } else if Element.self == UInt8.self {
            Varint.append(UInt64(elements.count), to: &bytes)
            unsafeBitCast(elements, to: [UInt8].self).withUnsafeBytes { bytes.append(contentsOf: $0) }
        } else if Element.self == Double.self {
            appendFixedWidth(unsafeBitCast(elements, to: [Double].self), to: &bytes) { $0.bitPattern }
        } else if Element.self == Float.self {
            appendFixedWidth(unsafeBitCast(elements, to: [Float].self), to: &bytes) { $0.bitPattern }
        } else if Element.self == Int64.self {
            appendVarints(unsafeBitCast(elements, to: [Int64].self), to: &bytes) { Varint.zigzag($0) }
        } else if Element.self == Int32.self {
            appendVarints(unsafeBitCast(elements, to: [Int32].self), to: &bytes) { Varint.zigzag(Int64($0)) }
        } else if Element.self == UInt64.self {
            appendVarints(unsafeBitCast(elements, to: [UInt64].self), to: &bytes) { $0 }
        } else if Element.self == UInt32.self {
            appendVarints(unsafeBitCast(elements, to: [UInt32].self), to: &bytes) { UInt64($0) }
        } else {
            return false
        }
        return true
    }

    @inline(__always)
    private static func appendVarints<Element>(
        _ elements: [Element], to bytes: inout [UInt8], _ transform: (Element) -> UInt64
    ) {
        Varint.append(UInt64(elements.count), to: &bytes)
        // Most values of real arrays are small; two bytes each avoids regrowth in the common
        // case without over-reserving ten bytes per element.
        bytes.reserveCapacity(bytes.count &+ elements.count &* 2)
        for element in elements {
            Varint.append(transform(element), to: &bytes)
        }
    }

    @inline(__always)
    private static func appendFixedWidth<Element, Bits: FixedWidthInteger>(
        _ elements: [Element], to bytes: inout [UInt8], _ bitPattern: (Element) -> Bits
    ) {
        Varint.append(UInt64(elements.count), to: &bytes)
        #if _endian(little)
        // In memory the elements already are the little-endian IEEE-754 bytes of the format.
        elements.withUnsafeBytes { bytes.append(contentsOf: $0) }
        #else
        bytes.reserveCapacity(bytes.count &+ elements.count &* MemoryLayout<Bits>.size)
        for element in elements {
            withUnsafeBytes(of: bitPattern(element).littleEndian) { bytes.append(contentsOf: $0) }
        }
        #endif
    }
}
