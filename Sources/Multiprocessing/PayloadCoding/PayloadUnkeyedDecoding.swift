/// Reads the elements of an unkeyed container in order.
///
/// Elements carry no length, so each one must be decoded (or read past by its own container)
/// before the next can be found.
final class PayloadUnkeyedDecodingContainer: UnkeyedDecodingContainer, PayloadFrameRoot {
    let core: PayloadDecoderCore
    let codingPath: [any CodingKey]
    private let containerOffset: Int
    private let elementCount: Int
    private let end: Int
    @exclusivity(unchecked) private var cursor: Int
    @exclusivity(unchecked) private(set) var currentIndex = 0
    /// A nested unkeyed container or super decoder handed out for the current element; where it
    /// ends is known only once it has been read. Its core keeps its root container (which holds
    /// the core) until then, so it is released when settled, or here at the latest.
    private var pendingChild: PayloadDecoderCore?

    init(core: PayloadDecoderCore, start: Int, end: Int, codingPath: [any CodingKey]) throws {
        var offset = start
        elementCount = try core.reader.readLength(&offset, end, "unkeyed container element count", codingPath)
        self.core = core
        self.codingPath = codingPath
        self.containerOffset = start
        self.end = end
        self.cursor = offset
    }

    deinit {
        pendingChild?.releaseRoot()
    }

    var count: Int? { elementCount }
    var isAtEnd: Bool { currentIndex >= elementCount }

    func consumedEnd() throws -> Int {
        try settleChild()
        return cursor
    }

    @inline(__always)
    private func settleChild() throws {
        guard let child = pendingChild else { return }
        pendingChild = nil
        defer { child.releaseRoot() }
        cursor = try child.consumedEnd()
    }

    @inline(__always)
    private func beginElement(_ type: @autoclosure () -> Any.Type) throws {
        if pendingChild != nil { try settleChild() }
        guard currentIndex < elementCount else {
            throw DecodingError.valueNotFound(
                type(),
                DecodingError.Context(
                    codingPath: codingPath + [PayloadCodingKey(index: currentIndex)],
                    debugDescription: "unkeyed container at offset \(containerOffset) has no element "
                        + "\(currentIndex) (count \(elementCount))"))
        }
    }

    /// Reports nil, and moves past it, if the next element is the nil tag byte 0 (see
    /// `PayloadFormat.md` for when that is ambiguous).
    func decodeNil() throws -> Bool {
        try beginElement(Never.self)
        guard cursor < end, core.reader.base[cursor] == 0 else { return false }
        cursor &+= 1
        currentIndex &+= 1
        return true
    }

    @inline(__always)
    private func decodeScalar<T>(_ type: T.Type) throws -> T {
        try beginElement(T.self)
        let value = try core.reader.readScalar(
            PayloadReader.scalarKind(T.self)!, as: T.self, &cursor, end,
            self.codingPath + [PayloadCodingKey(index: self.currentIndex)])
        currentIndex &+= 1
        return value
    }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if PayloadReader.scalarKind(T.self) != nil { return try decodeScalar(T.self) }
        try beginElement(T.self)
        let savedPos = core.pos
        let savedEnd = core.end
        core.pos = cursor
        core.end = end
        core.path.append(PayloadCodingKey(index: currentIndex))
        defer {
            core.path.removeLast()
            core.pos = savedPos
            core.end = savedEnd
        }
        let value = try core.decodeNonScalar(T.self)
        cursor = core.pos
        currentIndex &+= 1
        return value
    }

    /// Reads an element written as an Optional (tag byte, then the value), as `encode(_:)` of an
    /// Optional writes it; at the end of the container it is nil, as with Foundation's coders.
    func decodeIfPresent<T: Decodable>(_ type: T.Type) throws -> T? {
        try decodeTagged(T.self)
    }

    private func decodeTagged<T: Decodable>(_ type: T.Type) throws -> T? {
        if pendingChild != nil { try settleChild() }
        if isAtEnd { return nil }
        return try decode(T?.self)
    }

    func nestedContainer<NestedKey: CodingKey>(
        keyedBy type: NestedKey.Type
    ) throws -> KeyedDecodingContainer<NestedKey> {
        let child = try beginNestedElement()
        defer { child.releaseRoot() }
        let container = try child.container(keyedBy: NestedKey.self)
        // A keyed container can find its own end by reading its entries' keys and lengths.
        cursor = try child.consumedEnd()
        return container
    }

    func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let child = try beginNestedElement()
        let container = try child.unkeyedContainer()
        pendingChild = child
        return container
    }

    func superDecoder() throws -> any Decoder {
        let child = try beginNestedElement()
        pendingChild = child
        return child
    }

    private func beginNestedElement() throws -> PayloadDecoderCore {
        try beginElement(Never.self)
        let child = try core.detached(
            start: cursor, end: end, path: codingPath + [PayloadCodingKey(index: currentIndex)], keepsRoot: true)
        currentIndex &+= 1
        return child
    }

    func decode(_ type: Bool.Type) throws -> Bool { try decodeScalar(type) }
    func decode(_ type: String.Type) throws -> String { try decodeScalar(type) }
    func decode(_ type: Double.Type) throws -> Double { try decodeScalar(type) }
    func decode(_ type: Float.Type) throws -> Float { try decodeScalar(type) }
    func decode(_ type: Int.Type) throws -> Int { try decodeScalar(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try decodeScalar(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try decodeScalar(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try decodeScalar(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try decodeScalar(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try decodeScalar(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try decodeScalar(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try decodeScalar(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try decodeScalar(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try decodeScalar(type) }

    // The defaults would pair `decodeNil()` with an untagged value; these read the tag that
    // `encode(_:)` of an Optional writes.
    func decodeIfPresent(_ type: Bool.Type) throws -> Bool? { try decodeTagged(type) }
    func decodeIfPresent(_ type: String.Type) throws -> String? { try decodeTagged(type) }
    func decodeIfPresent(_ type: Double.Type) throws -> Double? { try decodeTagged(type) }
    func decodeIfPresent(_ type: Float.Type) throws -> Float? { try decodeTagged(type) }
    func decodeIfPresent(_ type: Int.Type) throws -> Int? { try decodeTagged(type) }
    func decodeIfPresent(_ type: Int8.Type) throws -> Int8? { try decodeTagged(type) }
    func decodeIfPresent(_ type: Int16.Type) throws -> Int16? { try decodeTagged(type) }
    func decodeIfPresent(_ type: Int32.Type) throws -> Int32? { try decodeTagged(type) }
    func decodeIfPresent(_ type: Int64.Type) throws -> Int64? { try decodeTagged(type) }
    func decodeIfPresent(_ type: UInt.Type) throws -> UInt? { try decodeTagged(type) }
    func decodeIfPresent(_ type: UInt8.Type) throws -> UInt8? { try decodeTagged(type) }
    func decodeIfPresent(_ type: UInt16.Type) throws -> UInt16? { try decodeTagged(type) }
    func decodeIfPresent(_ type: UInt32.Type) throws -> UInt32? { try decodeTagged(type) }
    func decodeIfPresent(_ type: UInt64.Type) throws -> UInt64? { try decodeTagged(type) }


}

/// Reads one value where the decoder stands.
struct PayloadSingleValueDecodingContainer: SingleValueDecodingContainer {
    let core: PayloadDecoderCore
    let codingPath: [any CodingKey]

    /// True for an empty region (a nil keyed entry) or the nil tag byte 0, which it moves past.
    func decodeNil() -> Bool {
        if core.pos >= core.end { return true }
        guard core.reader.base[core.pos] == 0 else { return false }
        core.pos &+= 1
        return true
    }

    @inline(__always)
    private func decodeScalar<T>(_ type: T.Type) throws -> T {
        try core.reader.readScalar(PayloadReader.scalarKind(T.self)!, as: T.self, &core.pos, core.end, codingPath)
    }

    func decode<T: Decodable>(_ type: T.Type) throws -> T { try core.decodeValue(T.self) }
    func decode(_ type: Bool.Type) throws -> Bool { try decodeScalar(type) }
    func decode(_ type: String.Type) throws -> String { try decodeScalar(type) }
    func decode(_ type: Double.Type) throws -> Double { try decodeScalar(type) }
    func decode(_ type: Float.Type) throws -> Float { try decodeScalar(type) }
    func decode(_ type: Int.Type) throws -> Int { try decodeScalar(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try decodeScalar(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try decodeScalar(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try decodeScalar(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try decodeScalar(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try decodeScalar(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try decodeScalar(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try decodeScalar(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try decodeScalar(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try decodeScalar(type) }
}
