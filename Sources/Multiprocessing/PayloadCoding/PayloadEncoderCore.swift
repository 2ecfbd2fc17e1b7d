/// A container or reserved prefix of the payload being written, whose header is patched when it
/// is closed.
struct PayloadEncodingNode {
    enum Kind: UInt8 {
        /// A keyed container; `position` holds the reserved entry-count byte.
        case keyed
        /// An unkeyed container; `position` holds the reserved element-count byte.
        case unkeyed
        /// The value of a keyed entry; `position` holds the reserved value-length byte.
        case slot
        /// A value written through a nested container or super encoder of an unkeyed container;
        /// it only scopes the keys interned inside it.
        case scope
    }

    var kind: Kind
    var position: Int
    var count: Int
    /// `keys.count` when the node opened; slots and scopes forget keys interned inside them.
    var keyMark: Int
    var id: Int
}

/// The value an `Encoder` is currently encoding: which node is its root container, and which
/// nodes belong to enclosing values and so must not be written to.
struct PayloadEncodingFrame {
    var base: Int
    var rootID = 0
    var rootIndex = 0
    var rootIsKeyed = false
    /// For super encoders: the slot or scope node the value belongs in, which must still be the
    /// innermost open node when the value starts.
    var anchorID = 0
    var anchorIndex = 0
}

/// The state of one encoding: the output bytes, the interned keys and the stack of open nodes.
///
/// It is also the `Encoder` handed to every nested value, so a nested value costs no encoder
/// object: only the container box Codable requires. Not `Sendable`: one encoding, one thread.
///
/// The hot properties opt out of dynamic exclusivity checks, which otherwise cost more than the
/// encoding itself: they are only touched by this class and its containers, one call at a time,
/// and never passed `inout` while another access to the same property is running.
final class PayloadEncoderCore: Encoder {
    @exclusivity(unchecked) var bytes: [UInt8] = []
    @exclusivity(unchecked) var nodes: [PayloadEncodingNode] = []
    @exclusivity(unchecked) var frame = PayloadEncodingFrame(base: 0)
    @exclusivity(unchecked) var path: [any CodingKey] = []
    @exclusivity(unchecked) private var depth = 0
    @exclusivity(unchecked) private var nextNodeID = 1

    // Interned keys in index order. Small tables are searched linearly (comparing two small
    // strings is two word compares); past `linearKeyLimit` a dictionary takes over.
    @exclusivity(unchecked) private var keys: [String] = []
    @exclusivity(unchecked) private var keyIndex: [String: Int] = [:]
    private let linearKeyLimit = 16

    /// Misuse found where the Codable API cannot throw (`container(keyedBy:)`, nested containers);
    /// reported when the encoding finishes.
    private var deferredError: EncodingError?

    var codingPath: [any CodingKey] { path }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    // MARK: Values

    /// Closes what is still open and reports misuse found where Codable could not throw.
    func finish() throws {
        closeNodes(downTo: 0)
        if let deferredError { throw deferredError }
    }

    /// Encodes `value` where no length prefix marks its end: top level, unkeyed elements,
    /// single-value containers and Optional payloads.
    @inline(__always)
    func encodeValue<T: Encodable>(_ value: T) throws {
        if PayloadWriter.appendScalar(value, to: &bytes) { return }
        try encodeNonScalar(value)
    }

    func encodeNonScalar<T: Encodable>(_ value: T) throws {
        if let special = value as? any PayloadEncodableSpecial {
            try special.encodePayload(into: self)
        } else {
            try encodeComposite(value)
        }
    }

    /// Runs `value.encode(to:)` in a frame of its own and closes whatever containers it opened.
    func encodeComposite<T: Encodable>(_ value: T) throws {
        guard depth < payloadMaxDepth else {
            throw EncodingError.invalidValue(
                value,
                EncodingError.Context(
                    codingPath: path,
                    debugDescription: "nesting deeper than \(payloadMaxDepth) levels at offset \(bytes.count)"))
        }
        depth &+= 1
        let enclosing = frame
        frame = PayloadEncodingFrame(base: nodes.count)
        let start = bytes.count
        try value.encode(to: self)
        closeNodes(downTo: frame.base)
        // A value that wrote nothing is written as an empty container, so that every value takes
        // at least one byte and the decoder can step over it (synthesized `init(from:)` of an
        // empty struct reads nothing, while its `encode(to:)` opens a container).
        if bytes.count == start { bytes.append(0) }
        frame = enclosing
        depth &-= 1
    }

    /// Encodes the elements of an array after its count.
    func encodeElements<Element: Encodable>(_ elements: [Element]) throws {
        guard let first = elements.first else { return }
        if PayloadWriter.appendScalar(first, to: &bytes) {
            for element in elements.dropFirst() {
                _ = PayloadWriter.appendScalar(element, to: &bytes)
            }
            return
        }
        // Classify once per array, not once per element.
        let needsDispatch = Element.self is any PayloadEncodableSpecial.Type
        let start = bytes.count
        for index in elements.indices {
            path.append(PayloadCodingKey(index: index))
            if needsDispatch {
                try encodeNonScalar(elements[index])
            } else {
                try encodeComposite(elements[index])
            }
            path.removeLast()
        }
        // The decoder rejects counts larger than the bytes that follow (its defence against
        // hostile counts), so an element must never encode to nothing.
        guard bytes.count &- start >= elements.count else {
            throw EncodingError.invalidValue(
                elements,
                EncodingError.Context(
                    codingPath: path,
                    debugDescription: "\(elements.count) elements of \(Element.self) encoded to only "
                        + "\(bytes.count - start) bytes; every element must encode to at least one byte"))
        }
    }

    /// Writes a keyed entry's value after its key: a length, then the value.
    ///
    /// The length is not known in advance, so one byte is reserved and patched afterwards;
    /// values of 128 bytes or more are shifted to make room, which is cheaper than encoding every
    /// field into a temporary array.
    func encodeEntryValue<T: Encodable, Key: CodingKey>(_ value: T, key: Key) throws {
        if let special = value as? any PayloadEncodableSpecial, let length = special.knownEntryPayloadLength {
            Varint.append(UInt64(length), to: &bytes)
            bytes.reserveCapacity(bytes.count &+ length)
            let start = bytes.count
            path.append(key)
            try special.encodeEntryPayload(into: self)
            path.removeLast()
            assert(bytes.count &- start == length, "the known length of a \(T.self) is its encoded length")
            return
        }
        let lengthPosition = bytes.count
        bytes.append(0)
        if !PayloadWriter.appendScalar(value, to: &bytes) {
            let keyMark = keys.count
            path.append(key)
            if let special = value as? any PayloadEncodableSpecial {
                // A nil Optional is the zero-length value; a present one is its wrapped value.
                try special.encodeEntryPayload(into: self)
            } else {
                try encodeComposite(value)
            }
            path.removeLast()
            truncateKeys(to: keyMark)
        }
        patchVarint(at: lengthPosition, UInt64(bytes.count &- lengthPosition &- 1))
    }

    // MARK: Keys

    /// Writes a key reference: `k + 1` for the k-th interned key, or 0 and the key string, which
    /// interns it as the next index.
    func writeKey(_ key: String) {
        if let index = lookUpKey(key) {
            Varint.append(UInt64(index &+ 1), to: &bytes)
            return
        }
        bytes.append(0)
        PayloadWriter.appendString(key, to: &bytes)
        // One allocation of a useful size instead of growing through 1, 2, 4, 8.
        if keys.capacity == 0 { keys.reserveCapacity(linearKeyLimit) }
        keys.append(key)
        if keys.count > linearKeyLimit {
            if keys.count == linearKeyLimit &+ 1 {
                for (index, existing) in keys.enumerated() { keyIndex[existing] = index }
            } else {
                keyIndex[key] = keys.count &- 1
            }
        }
    }

    @inline(__always)
    private func lookUpKey(_ key: String) -> Int? {
        if keys.count > linearKeyLimit { return keyIndex[key] }
        for index in keys.indices where keys[index] == key { return index }
        return nil
    }

    /// Forgets the keys interned since `mark`, at the end of the region they are scoped to.
    func truncateKeys(to mark: Int) {
        guard keys.count > mark else { return }
        if keys.count > linearKeyLimit {
            if mark <= linearKeyLimit {
                keyIndex.removeAll(keepingCapacity: true)
            } else {
                for index in mark..<keys.count { keyIndex[keys[index]] = nil }
            }
        }
        keys.removeSubrange(mark..<keys.count)
    }

    var keyCount: Int { keys.count }

    // MARK: Nodes

    /// Opens a node; keyed and unkeyed containers and slots reserve their header byte.
    func pushNode(_ kind: PayloadEncodingNode.Kind) -> (index: Int, id: Int) {
        let id = nextNodeID
        nextNodeID &+= 1
        if nodes.capacity == 0 { nodes.reserveCapacity(8) }
        nodes.append(
            PayloadEncodingNode(kind: kind, position: bytes.count, count: 0, keyMark: keys.count, id: id))
        if kind != .scope { bytes.append(0) }
        return (nodes.count &- 1, id)
    }

    /// Makes the node `(index, id)` the innermost open node, closing the nodes above it.
    ///
    /// Writes go to the end of the buffer, so a container can only be written while nothing opened
    /// after it is still open; a container of an enclosing value, or one already closed, cannot.
    @inline(__always)
    func prepareWrite(_ index: Int, _ id: Int) throws {
        if index == nodes.count &- 1 && nodes[index].id == id { return }
        try prepareWriteSlow(index, id)
    }

    private func prepareWriteSlow(_ index: Int, _ id: Int) throws {
        guard index >= frame.base, index < nodes.count, nodes[index].id == id else {
            throw EncodingError.invalidValue(
                id,
                EncodingError.Context(
                    codingPath: path,
                    debugDescription: "write to a container that is already closed, or belongs to an "
                        + "enclosing value, at offset \(bytes.count); the binary payload format is written "
                        + "sequentially, so a nested container must be finished before its parent continues"))
        }
        closeNodes(downTo: index &+ 1)
    }

    /// Like ``prepareWrite(_:_:)`` for the Codable calls that cannot throw.
    func prepareWriteDeferringError(_ index: Int, _ id: Int) {
        do { try prepareWrite(index, id) } catch { deferError(error) }
    }

    func deferError(_ error: any Error) {
        if deferredError == nil, let error = error as? EncodingError { deferredError = error }
    }

    func closeNodes(downTo count: Int) {
        while nodes.count > count {
            close(nodes.removeLast())
        }
    }

    private func close(_ node: PayloadEncodingNode) {
        switch node.kind {
        case .keyed:
            patchVarint(at: node.position, UInt64(node.count))
        case .unkeyed:
            // The decoder rejects counts larger than the bytes that follow (its defence against
            // hostile counts), so an element must never encode to nothing.
            if node.count > bytes.count &- node.position &- 1 {
                deferError(
                    EncodingError.invalidValue(
                        node.count,
                        EncodingError.Context(
                            codingPath: path,
                            debugDescription: "unkeyed container at offset \(node.position) has \(node.count) "
                                + "elements in \(bytes.count - node.position - 1) bytes; every element must "
                                + "encode to at least one byte")))
            }
            patchVarint(at: node.position, UInt64(node.count))
        case .slot:
            patchVarint(at: node.position, UInt64(bytes.count &- node.position &- 1))
            truncateKeys(to: node.keyMark)
        case .scope:
            truncateKeys(to: node.keyMark)
        }
    }

    /// Stores `value` as a varint in the byte reserved at `position`, shifting what follows when
    /// it needs more than one byte.
    func patchVarint(at position: Int, _ value: UInt64) {
        if value < 0x80 {
            bytes[position] = UInt8(truncatingIfNeeded: value)
            return
        }
        let length = Varint.encodedLength(of: value)
        bytes.insert(contentsOf: repeatElement(0, count: length &- 1), at: position &+ 1)
        bytes.withUnsafeMutableBufferPointer { buffer in
            _ = Varint.write(value, to: buffer.baseAddress! + position)
        }
    }

    // MARK: Encoder

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(makeKeyedContainer(in: &frame, codingPath: path, keyedBy: Key.self))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        makeUnkeyedContainer(in: &frame, codingPath: path)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        PayloadSingleValueEncodingContainer(core: self, anchorIndex: 0, anchorID: 0, codingPath: path)
    }
}
