/// Writes elements back to back after a count that is patched when the container closes.
struct PayloadUnkeyedEncodingContainer: UnkeyedEncodingContainer {
    let core: PayloadEncoderCore
    let index: Int
    let id: Int
    let codingPath: [any CodingKey]
    private(set) var count = 0

    init(core: PayloadEncoderCore, index: Int, id: Int, codingPath: [any CodingKey]) {
        self.core = core
        self.index = index
        self.id = id
        self.codingPath = codingPath
    }

    @inline(__always)
    private mutating func beginElement() throws {
        try core.prepareWrite(index, id)
        core.nodes[index].count &+= 1
        count &+= 1
    }

    @inline(__always)
    private mutating func encodeScalar<T>(_ value: T) throws {
        try beginElement()
        _ = PayloadWriter.appendScalar(value, to: &core.bytes)
    }

    /// The nil tag of Optionals, so that an element written with `encodeNil()` reads back as nil
    /// through `decodeNil()` or as an Optional.
    mutating func encodeNil() throws {
        try beginElement()
        core.bytes.append(0)
    }

    mutating func encode(_ value: Bool) throws { try encodeScalar(value) }
    mutating func encode(_ value: String) throws { try encodeScalar(value) }
    mutating func encode(_ value: Double) throws { try encodeScalar(value) }
    mutating func encode(_ value: Float) throws { try encodeScalar(value) }
    mutating func encode(_ value: Int) throws { try encodeScalar(value) }
    mutating func encode(_ value: Int8) throws { try encodeScalar(value) }
    mutating func encode(_ value: Int16) throws { try encodeScalar(value) }
    mutating func encode(_ value: Int32) throws { try encodeScalar(value) }
    mutating func encode(_ value: Int64) throws { try encodeScalar(value) }
    mutating func encode(_ value: UInt) throws { try encodeScalar(value) }
    mutating func encode(_ value: UInt8) throws { try encodeScalar(value) }
    mutating func encode(_ value: UInt16) throws { try encodeScalar(value) }
    mutating func encode(_ value: UInt32) throws { try encodeScalar(value) }
    mutating func encode(_ value: UInt64) throws { try encodeScalar(value) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        try beginElement()
        if PayloadWriter.appendScalar(value, to: &core.bytes) { return }
        core.path.append(PayloadCodingKey(index: count &- 1))
        try core.encodeNonScalar(value)
        core.path.removeLast()
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type
    ) -> KeyedEncodingContainer<NestedKey> {
        let elementKey = openNestedScope()
        let (nestedIndex, nestedID) = core.pushNode(.keyed)
        return KeyedEncodingContainer(
            PayloadKeyedEncodingContainer<NestedKey>(
                core: core, index: nestedIndex, id: nestedID, codingPath: codingPath + [elementKey]))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let elementKey = openNestedScope()
        let (nestedIndex, nestedID) = core.pushNode(.unkeyed)
        return PayloadUnkeyedEncodingContainer(
            core: core, index: nestedIndex, id: nestedID, codingPath: codingPath + [elementKey])
    }

    mutating func superEncoder() -> any Encoder {
        let elementKey = openNestedScope()
        let scope = (index: core.nodes.count &- 1, id: core.nodes[core.nodes.count &- 1].id)
        return PayloadSuperEncoder(core: core, anchor: scope, codingPath: codingPath + [elementKey])
    }

    /// Starts an element written through a nested container or super encoder. Such an element
    /// can be decoded out of step with its parent, so the keys it interns are scoped to it.
    private mutating func openNestedScope() -> PayloadCodingKey {
        core.prepareWriteDeferringError(index, id)
        core.nodes[index].count &+= 1
        count &+= 1
        _ = core.pushNode(.scope)
        return PayloadCodingKey(index: count &- 1)
    }
}

/// Writes one value where the encoder stands; a super encoder's container first makes sure the
/// slot reserved for it is still the innermost open node.
struct PayloadSingleValueEncodingContainer: SingleValueEncodingContainer {
    let core: PayloadEncoderCore
    let anchorIndex: Int
    let anchorID: Int
    let codingPath: [any CodingKey]

    @inline(__always)
    private func prepare() throws {
        if anchorID != 0 { try core.prepareWrite(anchorIndex, anchorID) }
    }

    @inline(__always)
    private func encodeScalar<T>(_ value: T) throws {
        try prepare()
        _ = PayloadWriter.appendScalar(value, to: &core.bytes)
    }

    /// The nil tag of Optionals; see `PayloadFormat.md` for how it reads back.
    mutating func encodeNil() throws {
        try prepare()
        core.bytes.append(0)
    }

    mutating func encode(_ value: Bool) throws { try encodeScalar(value) }
    mutating func encode(_ value: String) throws { try encodeScalar(value) }
    mutating func encode(_ value: Double) throws { try encodeScalar(value) }
    mutating func encode(_ value: Float) throws { try encodeScalar(value) }
    mutating func encode(_ value: Int) throws { try encodeScalar(value) }
    mutating func encode(_ value: Int8) throws { try encodeScalar(value) }
    mutating func encode(_ value: Int16) throws { try encodeScalar(value) }
    mutating func encode(_ value: Int32) throws { try encodeScalar(value) }
    mutating func encode(_ value: Int64) throws { try encodeScalar(value) }
    mutating func encode(_ value: UInt) throws { try encodeScalar(value) }
    mutating func encode(_ value: UInt8) throws { try encodeScalar(value) }
    mutating func encode(_ value: UInt16) throws { try encodeScalar(value) }
    mutating func encode(_ value: UInt32) throws { try encodeScalar(value) }
    mutating func encode(_ value: UInt64) throws { try encodeScalar(value) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        try prepare()
        try core.encodeValue(value)
    }
}
