/// Where an interned key's UTF-8 bytes are in the payload.
struct PayloadKeyRange {
    var start: Int
    var count: Int
}

/// A container that can say where the value it belongs to ends, once the value's
/// `init(from:)` has returned.
protocol PayloadFrameRoot: AnyObject {
    /// The offset just past the container. Entries the value did not ask for are read past, and
    /// their keys interned, so that the table of interned keys is right for what follows.
    func consumedEnd() throws -> Int
}

/// The value a `Decoder` is currently decoding.
///
/// A container holds its core strongly, so a core that holds its root container forms a cycle.
/// It is broken by whoever asked for the root to be kept: `decodeComposite` restores the
/// enclosing frame however `init(from:)` ends, and an unkeyed container releases the root of a
/// nested element's core once it has read past the element, or when it is itself freed.
struct PayloadDecodingFrame {
    var start: Int
    var end: Int
    /// `table.count` when the value started; its keyed containers intern keys after it.
    var tableBase: Int
    /// Whether someone will ask this frame where the value ends, so that `root` must be kept.
    var keepsRoot: Bool
    /// The value's first container, kept only while `keepsRoot` is true.
    var root: (any PayloadFrameRoot)? = nil
    /// Whether the value has had a container; a second one reads the value again (`sibling()`).
    var hasContainer = false
}

/// The state of one decoding pass over a region of the payload.
///
/// It is also the `Decoder` handed to nested values. Nested containers and super decoders, which
/// may be used out of step with their parent, get a core of their own that shares the bytes but
/// copies the key table. Not `Sendable`: one decoding, one thread. It never outlives the
/// `decode` call whose buffer it reads.
final class PayloadDecoderCore: Decoder {
    let reader: PayloadReader
    // Read and written for every value; dynamic exclusivity checks would cost more than the
    // decoding. Only this class and its containers touch them, one call at a time.
    @exclusivity(unchecked) var pos: Int
    @exclusivity(unchecked) var end: Int
    /// Interned keys by index; see `PayloadFormat.md` for their scope. A keyed container owns
    /// the part from its base up while it is in use; nested values only append above that.
    @exclusivity(unchecked) var table: [PayloadKeyRange]
    @exclusivity(unchecked) var path: [any CodingKey]
    @exclusivity(unchecked) var depth: Int
    @exclusivity(unchecked) var frame: PayloadDecodingFrame

    init(
        reader: PayloadReader, start: Int, end: Int, table: [PayloadKeyRange], path: [any CodingKey],
        depth: Int, keepsRoot: Bool
    ) {
        self.reader = reader
        self.pos = start
        self.end = end
        self.table = table
        self.path = path
        self.depth = depth
        frame = PayloadDecodingFrame(start: start, end: end, tableBase: table.count, keepsRoot: keepsRoot)
    }

    var codingPath: [any CodingKey] { path }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    // MARK: Values

    /// Decodes a value at `pos` that has no length prefix of its own: top level, unkeyed
    /// elements, single-value containers and Optional payloads.
    @inline(__always)
    func decodeValue<T: Decodable>(_ type: T.Type) throws -> T {
        if let kind = PayloadReader.scalarKind(T.self) {
            return try reader.readScalar(kind, as: T.self, &pos, end, path)
        }
        return try decodeNonScalar(T.self)
    }

    // Arrays and Optionals do not count towards the depth limit: their nesting is bounded by the
    // type, and any recursion the payload controls goes through `decodeComposite`.
    func decodeNonScalar<T: Decodable>(_ type: T.Type) throws -> T {
        if let special = T.self as? any PayloadDecodableSpecial.Type {
            return try decodeSpecial(special, as: T.self)
        }
        return try decodeComposite(T.self)
    }

    func decodeSpecial<S: PayloadDecodableSpecial, T>(_: S.Type, as: T.Type) throws -> T {
        try S.decodePayload(from: self) as! T
    }

    /// Decodes an Optional's tag byte, then its wrapped value if the tag says it is present.
    func decodeTagged<Wrapped: Decodable>(_: Wrapped.Type) throws -> Wrapped? {
        let tagOffset = pos
        switch try reader.readByte(&pos, end, "Optional tag", path) {
        case 0:
            return nil
        case 1:
            return try decodeValue(Wrapped.self)
        case let tag:
            pos = tagOffset
            throw reader.corrupted("invalid Optional tag \(tag) at offset \(tagOffset) (expected 0 or 1)", path)
        }
    }

    /// Runs `T.init(from:)` in a frame of its own, then moves past whatever its root container
    /// covers, including entries it did not read.
    ///
    /// The enclosing frame and depth come back however this ends: a thrown error must neither
    /// leave the frame's root container (which holds this core) behind, nor the frame and depth
    /// of a value that was abandoned to a caller that catches the error and goes on decoding.
    func decodeComposite<T: Decodable>(_ type: T.Type) throws -> T {
        try enterNested()
        let enclosing = frame
        frame = PayloadDecodingFrame(start: pos, end: end, tableBase: table.count, keepsRoot: true)
        defer {
            frame = enclosing
            depth &-= 1
        }
        let value = try T(from: self)
        if let root = frame.root {
            pos = try root.consumedEnd()
        } else if pos == frame.start && pos < end && reader.base[pos] == 0 {
            // The value read nothing; step over the empty container the encoder wrote for it.
            pos &+= 1
        }
        return value
    }

    /// Counts one more level of nesting; the caller undoes it when the level is done.
    @inline(__always)
    func enterNested() throws {
        guard depth < payloadMaxDepth else {
            throw reader.corrupted(
                "nesting deeper than \(payloadMaxDepth) levels at offset \(pos)", path)
        }
        depth &+= 1
    }

    /// Decodes the elements of an array whose count has been read.
    func decodeElements<Element: Decodable>(count: Int, of: Element.Type) throws -> [Element] {
        var elements: [Element] = []
        // The count is at most the remaining bytes, but elements can be much larger than a
        // byte; cap what is reserved before any element has been seen.
        elements.reserveCapacity(Swift.min(count, (1 << 20) / Swift.max(1, MemoryLayout<Element>.stride)))
        if let kind = PayloadReader.scalarKind(Element.self) {
            for _ in 0..<count {
                elements.append(try reader.readScalar(kind, as: Element.self, &pos, end, path))
            }
            return elements
        }
        // Classify the element type once per array, not once per element.
        if let special = Element.self as? any PayloadDecodableSpecial.Type {
            try appendSpecialElements(special, count: count, to: &elements)
            return elements
        }
        for index in 0..<count {
            path.append(PayloadCodingKey(index: index))
            defer { path.removeLast() }
            elements.append(try decodeComposite(Element.self))
        }
        return elements
    }

    private func appendSpecialElements<S: PayloadDecodableSpecial, Element>(
        _: S.Type, count: Int, to elements: inout [Element]
    ) throws {
        for index in 0..<count {
            path.append(PayloadCodingKey(index: index))
            defer { path.removeLast() }
            elements.append(try S.decodePayload(from: self) as! Element)
        }
    }

    /// A core for a nested container or super decoder over `start..<end`, with the key table as
    /// it stands now.
    ///
    /// It continues the current value, so it keeps the depth: the encoder counts a level per value
    /// too, and anything recursive inside the nested container goes through `decodeComposite`.
    ///
    /// - Parameter keepsRoot: Whether the caller will ask the core where its value ends
    ///   (`consumedEnd()`); it must then call `releaseRoot()` once it no longer will.
    func detached(start: Int, end: Int, path: [any CodingKey], keepsRoot: Bool) throws -> PayloadDecoderCore {
        PayloadDecoderCore(
            reader: reader, start: start, end: end, table: table, path: path, depth: depth, keepsRoot: keepsRoot)
    }

    /// Where this core's value ends: its root container's end, or how far single-value reads got.
    func consumedEnd() throws -> Int {
        if let root = frame.root { return try root.consumedEnd() }
        return pos
    }

    /// Drops the root container of a detached core's value, which holds this core, once nobody
    /// will ask where the value ends; a container made after this is not kept either.
    func releaseRoot() {
        frame.keepsRoot = false
        frame.root = nil
    }

    // MARK: Decoder

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        if frame.hasContainer { return try sibling().container(keyedBy: Key.self) }
        let container = try PayloadKeyedDecodingContainer<Key>(
            core: self, start: frame.start, end: frame.end, tableBase: frame.tableBase, codingPath: path)
        setRoot(container)
        return KeyedDecodingContainer(container)
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        if frame.hasContainer { return try sibling().unkeyedContainer() }
        let container = try PayloadUnkeyedDecodingContainer(
            core: self, start: frame.start, end: frame.end, codingPath: path)
        setRoot(container)
        return container
    }

    @inline(__always)
    private func setRoot(_ container: any PayloadFrameRoot) {
        frame.hasContainer = true
        if frame.keepsRoot { frame.root = container }
    }

    /// A core for a second container over the current value (a superclass handed the same
    /// decoder, say), which reads the same bytes again from the start of the value.
    ///
    /// It gets its own copy of the key table: a keyed container relies on nobody else writing
    /// the table at or above its base while it is in use, and two containers over the same
    /// entries would. Where the value ends is the first container's business, so the sibling keeps
    /// no root.
    private func sibling() throws -> PayloadDecoderCore {
        let core = try detached(start: frame.start, end: frame.end, path: path, keepsRoot: false)
        core.table.removeSubrange(frame.tableBase..<core.table.count)
        core.frame.tableBase = frame.tableBase
        return core
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        PayloadSingleValueDecodingContainer(core: self, codingPath: path)
    }
}
