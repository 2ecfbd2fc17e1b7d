extension PayloadEncoderCore {
    /// Returns the keyed root container of the value `frame` describes, opening it on first use.
    ///
    /// Asking twice returns the same container, so a class and its superclass that both call
    /// `encoder.container(keyedBy:)` share one set of entries, as with Foundation's coders.
    func makeKeyedContainer<Key: CodingKey>(
        in frame: inout PayloadEncodingFrame, codingPath: [any CodingKey], keyedBy: Key.Type
    ) -> PayloadKeyedEncodingContainer<Key> {
        let (index, id) = openRoot(in: &frame, keyed: true)
        return PayloadKeyedEncodingContainer(core: self, index: index, id: id, codingPath: codingPath)
    }

    func makeUnkeyedContainer(
        in frame: inout PayloadEncodingFrame, codingPath: [any CodingKey]
    ) -> PayloadUnkeyedEncodingContainer {
        let (index, id) = openRoot(in: &frame, keyed: false)
        return PayloadUnkeyedEncodingContainer(core: self, index: index, id: id, codingPath: codingPath)
    }

    private func openRoot(in frame: inout PayloadEncodingFrame, keyed: Bool) -> (Int, Int) {
        if frame.rootID != 0 {
            if frame.rootIsKeyed == keyed, frame.rootIndex < nodes.count,
                nodes[frame.rootIndex].id == frame.rootID
            {
                return (frame.rootIndex, frame.rootID)
            }
            deferError(
                EncodingError.invalidValue(
                    frame.rootID,
                    EncodingError.Context(
                        codingPath: path,
                        debugDescription: "a value asked for a second, different or already closed top-level "
                            + "container at offset \(bytes.count)")))
        }
        if frame.anchorID != 0 {
            if frame.anchorIndex < nodes.count, nodes[frame.anchorIndex].id == frame.anchorID {
                closeNodes(downTo: frame.anchorIndex &+ 1)
            } else {
                deferError(
                    EncodingError.invalidValue(
                        frame.anchorID,
                        EncodingError.Context(
                            codingPath: path,
                            debugDescription: "super encoder used after its parent container continued, at offset "
                                + "\(bytes.count); the binary payload format is written sequentially")))
            }
        }
        let (index, id) = pushNode(keyed ? .keyed : .unkeyed)
        frame.rootID = id
        frame.rootIndex = index
        frame.rootIsKeyed = keyed
        return (index, id)
    }
}

/// The encoder returned by `superEncoder()`: it writes one value into the slot or scope reserved
/// for it in the parent container.
final class PayloadSuperEncoder: Encoder {
    let core: PayloadEncoderCore
    let codingPath: [any CodingKey]
    private var frame: PayloadEncodingFrame

    init(core: PayloadEncoderCore, anchor: (index: Int, id: Int), codingPath: [any CodingKey]) {
        self.core = core
        self.codingPath = codingPath
        frame = PayloadEncodingFrame(base: anchor.index &+ 1, anchorID: anchor.id, anchorIndex: anchor.index)
    }

    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(core.makeKeyedContainer(in: &frame, codingPath: codingPath, keyedBy: Key.self))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        core.makeUnkeyedContainer(in: &frame, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        PayloadSingleValueEncodingContainer(
            core: core, anchorIndex: frame.anchorIndex, anchorID: frame.anchorID, codingPath: codingPath)
    }
}

/// Writes entries: a key reference, the value's byte length, the value.
struct PayloadKeyedEncodingContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let core: PayloadEncoderCore
    let index: Int
    let id: Int
    let codingPath: [any CodingKey]

    @inline(__always)
    private func beginEntry(_ key: Key) throws {
        try core.prepareWrite(index, id)
        core.nodes[index].count &+= 1
        core.writeKey(key.stringValue)
    }

    /// Scalars know their length up front, so no byte is reserved and patched for them.
    @inline(__always)
    private func encodeVarintEntry(_ value: UInt64, forKey key: Key) throws {
        try beginEntry(key)
        core.bytes.append(UInt8(truncatingIfNeeded: Varint.encodedLength(of: value)))
        Varint.append(value, to: &core.bytes)
    }

    mutating func encodeNil(forKey key: Key) throws {
        try beginEntry(key)
        core.bytes.append(0)
    }

    mutating func encode(_ value: Bool, forKey key: Key) throws {
        try beginEntry(key)
        core.bytes.append(1)
        core.bytes.append(value ? 1 : 0)
    }

    mutating func encode(_ value: String, forKey key: Key) throws {
        try beginEntry(key)
        Varint.append(UInt64(PayloadWriter.encodedLength(ofString: value)), to: &core.bytes)
        PayloadWriter.appendString(value, to: &core.bytes)
    }

    mutating func encode(_ value: Double, forKey key: Key) throws {
        try beginEntry(key)
        core.bytes.append(8)
        PayloadWriter.appendLittleEndian(value.bitPattern, to: &core.bytes)
    }

    mutating func encode(_ value: Float, forKey key: Key) throws {
        try beginEntry(key)
        core.bytes.append(4)
        PayloadWriter.appendLittleEndian(value.bitPattern, to: &core.bytes)
    }

    mutating func encode(_ value: Int, forKey key: Key) throws {
        try encodeVarintEntry(Varint.zigzag(Int64(value)), forKey: key)
    }

    mutating func encode(_ value: Int8, forKey key: Key) throws {
        try beginEntry(key)
        core.bytes.append(1)
        core.bytes.append(UInt8(bitPattern: value))
    }

    mutating func encode(_ value: Int16, forKey key: Key) throws {
        try encodeVarintEntry(Varint.zigzag(Int64(value)), forKey: key)
    }

    mutating func encode(_ value: Int32, forKey key: Key) throws {
        try encodeVarintEntry(Varint.zigzag(Int64(value)), forKey: key)
    }

    mutating func encode(_ value: Int64, forKey key: Key) throws {
        try encodeVarintEntry(Varint.zigzag(value), forKey: key)
    }

    mutating func encode(_ value: UInt, forKey key: Key) throws {
        try encodeVarintEntry(UInt64(value), forKey: key)
    }

    mutating func encode(_ value: UInt8, forKey key: Key) throws {
        try beginEntry(key)
        core.bytes.append(1)
        core.bytes.append(value)
    }

    mutating func encode(_ value: UInt16, forKey key: Key) throws {
        try encodeVarintEntry(UInt64(value), forKey: key)
    }

    mutating func encode(_ value: UInt32, forKey key: Key) throws {
        try encodeVarintEntry(UInt64(value), forKey: key)
    }

    mutating func encode(_ value: UInt64, forKey key: Key) throws {
        try encodeVarintEntry(value, forKey: key)
    }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try beginEntry(key)
        try core.encodeEntryValue(value, key: key)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type, forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        core.prepareWriteDeferringError(index, id)
        core.nodes[index].count &+= 1
        core.writeKey(key.stringValue)
        _ = core.pushNode(.slot)
        let (nestedIndex, nestedID) = core.pushNode(.keyed)
        return KeyedEncodingContainer(
            PayloadKeyedEncodingContainer<NestedKey>(
                core: core, index: nestedIndex, id: nestedID, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        core.prepareWriteDeferringError(index, id)
        core.nodes[index].count &+= 1
        core.writeKey(key.stringValue)
        _ = core.pushNode(.slot)
        let (nestedIndex, nestedID) = core.pushNode(.unkeyed)
        return PayloadUnkeyedEncodingContainer(
            core: core, index: nestedIndex, id: nestedID, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder {
        superEncoder(forStringKey: PayloadCodingKey.superKey.stringValue, codingKey: PayloadCodingKey.superKey)
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        superEncoder(forStringKey: key.stringValue, codingKey: key)
    }

    private func superEncoder(forStringKey stringKey: String, codingKey: any CodingKey) -> any Encoder {
        core.prepareWriteDeferringError(index, id)
        core.nodes[index].count &+= 1
        core.writeKey(stringKey)
        let slot = core.pushNode(.slot)
        return PayloadSuperEncoder(core: core, anchor: slot, codingPath: codingPath + [codingKey])
    }
}
