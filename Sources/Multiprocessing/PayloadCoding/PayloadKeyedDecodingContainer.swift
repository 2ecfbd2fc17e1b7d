/// One entry of a keyed container, located in the payload.
struct PayloadKeyedEntry {
    var key: PayloadKeyRange
    var value: Int
    var length: Int
    /// How many keys this container had interned once this entry's key was read: the view of the
    /// key table that the entry's value was encoded with.
    var introsAfter: Int
}

/// Reads a keyed container, fastest when keys are asked for in the order they were written.
///
/// In order, each request reads the next entry's key and compares it: no scan, no allocation.
/// The first request that does not match (a missing key, another order, `allKeys`, `contains`)
/// switches to a scan of all entries, after which any key can be looked up in any order.
final class PayloadKeyedDecodingContainer<Key: CodingKey>: KeyedDecodingContainerProtocol, PayloadFrameRoot {
    let core: PayloadDecoderCore
    let codingPath: [any CodingKey]
    private let containerOffset: Int
    private let entryCount: Int
    private let entriesStart: Int
    private let end: Int
    /// Where this container's part of the key table starts. Keys below it were interned before
    /// the container; nested values only append above its part.
    private let tableBase: Int
    /// How many keys this container has interned so far.
    @exclusivity(unchecked) private var introCount = 0
    /// How many of them are in the table right now. Only decoding entries out of order lowers it
    /// below `introCount`, and then `intros` has the keys to put back.
    @exclusivity(unchecked) private var validIntros = 0
    @exclusivity(unchecked) private var cursor: Int
    @exclusivity(unchecked) private var consumed = 0
    private var intros: [PayloadKeyRange] = []
    private var scanning = false
    private var entries: [PayloadKeyedEntry]?
    private var hint = 0
    private var entryIndex: [String: Int]?
    /// `allKeys` and `contains` cannot throw; a malformed container is reported by the next call
    /// that can.
    private var scanError: (any Error)?

    init(
        core: PayloadDecoderCore, start: Int, end: Int, tableBase: Int, codingPath: [any CodingKey]
    ) throws {
        var offset = start
        let count = try core.reader.readVarint(&offset, end, "keyed container entry count", codingPath)
        // Every entry takes at least a key byte and a length byte.
        guard count <= UInt64((end &- offset) / 2) else {
            throw core.reader.corrupted(
                "keyed container entry count \(count) at offset \(start) exceeds what the "
                    + "\(end - offset) remaining bytes can hold",
                codingPath)
        }
        self.core = core
        self.codingPath = codingPath
        self.containerOffset = start
        self.entryCount = Int(count)
        self.entriesStart = offset
        self.end = end
        self.tableBase = tableBase
        self.cursor = offset
    }

    // MARK: Key table

    /// Makes the key table this container's view for an entry: the keys before the container
    /// plus its first `count` interned keys, dropping whatever a nested value appended.
    @inline(__always)
    private func setView(_ count: Int) throws {
        let valid = tableBase &+ validIntros
        guard core.table.count >= valid else {
            throw core.reader.corrupted(
                "keyed container at offset \(containerOffset) used after the value it belongs to was "
                    + "finished", codingPath)
        }
        if count <= validIntros {
            core.table.removeSubrange((tableBase &+ count)..<core.table.count)
        } else {
            core.table.removeSubrange(valid..<core.table.count)
            core.table.append(contentsOf: intros[validIntros..<count])
        }
        validIntros = count
    }

    /// Reads a key reference; the table must be this container's view.
    private func readKey(_ offset: inout Int) throws -> PayloadKeyRange {
        let start = offset
        let reference = try core.reader.readVarint(&offset, end, "key reference", codingPath)
        if reference == 0 {
            let count = try core.reader.readLength(&offset, end, "key length", codingPath)
            let range = PayloadKeyRange(start: offset, count: count)
            offset &+= count
            // One allocation of a useful size instead of growing through 1, 2, 4, 8.
            if core.table.capacity == 0 { core.table.reserveCapacity(16) }
            core.table.append(range)
            introCount &+= 1
            validIntros &+= 1
            // Only a scan keeps the keys: in order, the table itself holds them safely.
            if scanning { intros.append(range) }
            return range
        }
        guard reference <= UInt64(core.table.count) else {
            offset = start
            throw core.reader.corrupted(
                "key reference \(reference) at offset \(start) names interned key #\(reference - 1), but "
                    + "only \(core.table.count) keys are interned there",
                codingPath)
        }
        return core.table[Int(reference) &- 1]
    }

    @inline(__always)
    private func matches(_ range: PayloadKeyRange, _ key: String) -> Bool {
        var key = key
        return key.withUTF8 { utf8 in
            guard utf8.count == range.count else { return false }
            return range.count == 0
                || bytesAreEqual(UnsafeRawPointer(utf8.baseAddress!), core.reader.base.baseAddress! + range.start, count: range.count)
        }
    }

    private func keyString(_ range: PayloadKeyRange) -> String? {
        PayloadReader.validatedString(core.reader.slice(range.start, range.count))
    }

    // MARK: Locating entries

    /// Finds the entry for `key` and sets the key table to the view its value was written with.
    private func locate(_ key: String) throws -> PayloadKeyedEntry? {
        if entries == nil {
            if consumed < entryCount {
                try setView(introCount)
                var offset = cursor
                let introsBefore = introCount
                let range = try readKey(&offset)
                if matches(range, key) {
                    let length = try core.reader.readLength(&offset, end, "value length", codingPath)
                    cursor = offset &+ length
                    consumed &+= 1
                    return PayloadKeyedEntry(key: range, value: offset, length: length, introsAfter: introCount)
                }
                if introCount > introsBefore {
                    introCount &-= 1
                    validIntros &-= 1
                    core.table.removeLast()
                }
            }
            try scan()
        }
        return try find(key)
    }

    private func scan() throws {
        if let scanError { throw scanError }
        do {
            try setView(0)
            introCount = 0
            intros.removeAll(keepingCapacity: true)
            scanning = true
            defer { scanning = false }
            var list: [PayloadKeyedEntry] = []
            list.reserveCapacity(entryCount)
            var offset = entriesStart
            for _ in 0..<entryCount {
                let range = try readKey(&offset)
                let length = try core.reader.readLength(&offset, end, "value length", codingPath)
                list.append(PayloadKeyedEntry(key: range, value: offset, length: length, introsAfter: introCount))
                offset &+= length
            }
            cursor = offset
            consumed = entryCount
            entries = list
        } catch {
            scanError = error
            throw error
        }
    }

    private func find(_ key: String) throws -> PayloadKeyedEntry? {
        guard let list = entries else { return nil }
        let found: Int?
        if hint < list.count && matches(list[hint].key, key) {
            found = hint
        } else if list.count > 16 {
            found = lookUpInIndex(key, list)
        } else {
            found = list.firstIndex { matches($0.key, key) }
        }
        guard let found else { return nil }
        // Codable implementations that go through `allKeys` ask in entry order; guess the next.
        hint = found &+ 1
        try setView(list[found].introsAfter)
        return list[found]
    }

    private func lookUpInIndex(_ key: String, _ list: [PayloadKeyedEntry]) -> Int? {
        if entryIndex == nil {
            var index: [String: Int] = [:]
            index.reserveCapacity(list.count)
            for (position, entry) in list.enumerated() {
                // The first of duplicate keys wins, as in the linear search.
                if let name = keyString(entry.key), index[name] == nil { index[name] = position }
            }
            entryIndex = index
        }
        return entryIndex?[key]
    }

    func consumedEnd() throws -> Int {
        if entries == nil && consumed < entryCount {
            try setView(introCount)
            var offset = cursor
            while consumed < entryCount {
                _ = try readKey(&offset)
                offset &+= try core.reader.readLength(&offset, end, "value length", codingPath)
                consumed &+= 1
            }
            cursor = offset
        }
        try setView(introCount)
        return cursor
    }

    // MARK: Errors

    private func keyNotFound(_ key: any CodingKey) -> DecodingError {
        .keyNotFound(
            key,
            DecodingError.Context(
                codingPath: codingPath,
                debugDescription: "no entry for key '\(key.stringValue)' in the keyed container at offset "
                    + "\(containerOffset)"))
    }

    private func valueNotFound(_ type: Any.Type, _ key: Key, _ entry: PayloadKeyedEntry) -> DecodingError {
        .valueNotFound(
            type,
            DecodingError.Context(
                codingPath: codingPath + [key],
                debugDescription: "expected \(type) for key '\(key.stringValue)' but the value at offset "
                    + "\(entry.value) is nil (zero-length)"))
    }

    // MARK: KeyedDecodingContainerProtocol

    var allKeys: [Key] {
        if entries == nil { try? scan() }
        guard let list = entries else { return [] }
        return list.compactMap { entry in keyString(entry.key).flatMap(Key.init(stringValue:)) }
    }

    func contains(_ key: Key) -> Bool {
        if entries == nil { try? scan() }
        let name = key.stringValue
        return entries?.contains { matches($0.key, name) } ?? false
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        guard let entry = try locate(key.stringValue) else { throw keyNotFound(key) }
        return entry.length == 0
    }

    @inline(__always)
    private func decodeScalar<T>(_ type: T.Type, forKey key: Key) throws -> T {
        guard let entry = try locate(key.stringValue) else { throw keyNotFound(key) }
        return try readScalar(T.self, entry, key)
    }

    @inline(__always)
    private func decodeScalarIfPresent<T>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let entry = try locate(key.stringValue), entry.length > 0 else { return nil }
        return try readScalar(T.self, entry, key)
    }

    @inline(__always)
    private func readScalar<T>(_ type: T.Type, _ entry: PayloadKeyedEntry, _ key: Key) throws -> T {
        guard entry.length > 0 else { throw valueNotFound(T.self, key, entry) }
        var offset = entry.value
        let valueEnd = entry.value &+ entry.length
        let value = try core.reader.readScalar(
            PayloadReader.scalarKind(T.self)!, as: T.self, &offset, valueEnd, self.codingPath + [key])
        try core.reader.requireEnd(offset, valueEnd, "\(T.self) for key '\(key.stringValue)'", self.codingPath + [key])
        return value
    }

    private func decodeEntry<T: Decodable>(_ type: T.Type, _ entry: PayloadKeyedEntry, _ key: Key) throws -> T {
        if PayloadReader.scalarKind(T.self) != nil { return try readScalar(T.self, entry, key) }
        if let special = T.self as? any PayloadDecodableSpecial.Type {
            return try inRegion(of: entry, key) { try decodeEntryPayload(special, as: T.self) }
        }
        return try inRegion(of: entry, key) { try core.decodeComposite(T.self) }
    }

    private func decodeEntryPayload<S: PayloadDecodableSpecial, T>(_: S.Type, as: T.Type) throws -> T {
        try S.decodeEntryPayload(from: core) as! T
    }

    @inline(__always)
    private func inRegion<R>(of entry: PayloadKeyedEntry, _ key: Key, _ body: () throws -> R) throws -> R {
        let savedPos = core.pos
        let savedEnd = core.end
        core.pos = entry.value
        core.end = entry.value &+ entry.length
        core.path.append(key)
        defer {
            core.path.removeLast()
            core.pos = savedPos
            core.end = savedEnd
        }
        return try body()
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        guard let entry = try locate(key.stringValue) else { throw keyNotFound(key) }
        return try decodeEntry(T.self, entry, key)
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let entry = try locate(key.stringValue), entry.length > 0 else { return nil }
        return try decodeEntry(T.self, entry, key)
    }

    // Entries have lengths, so nobody asks a nested core where its value ends, and it keeps no
    // root container: the container the caller gets owns the core, and nothing owns it back.
    func nestedContainer<NestedKey: CodingKey>(
        keyedBy type: NestedKey.Type, forKey key: Key
    ) throws -> KeyedDecodingContainer<NestedKey> {
        try detachedCore(for: key).container(keyedBy: NestedKey.self)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try detachedCore(for: key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        try detachedCore(for: PayloadCodingKey.superKey)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        try detachedCore(for: key)
    }

    private func detachedCore(for key: any CodingKey) throws -> PayloadDecoderCore {
        guard let entry = try locate(key.stringValue) else { throw keyNotFound(key) }
        return try core.detached(
            start: entry.value, end: entry.value &+ entry.length, path: codingPath + [key], keepsRoot: false)
    }

    // The concrete overloads exist so that synthesized `Codable` code, which calls them through
    // `KeyedDecodingContainer`, never pays for the generic dispatch above.
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try decodeScalar(type, forKey: key) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try decodeScalar(type, forKey: key) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try decodeScalar(type, forKey: key) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try decodeScalar(type, forKey: key) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try decodeScalar(type, forKey: key) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try decodeScalar(type, forKey: key) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try decodeScalar(type, forKey: key) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try decodeScalar(type, forKey: key) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try decodeScalar(type, forKey: key) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try decodeScalar(type, forKey: key) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try decodeScalar(type, forKey: key) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try decodeScalar(type, forKey: key) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try decodeScalar(type, forKey: key) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try decodeScalar(type, forKey: key) }

    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? { try decodeScalarIfPresent(type, forKey: key) }
    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? { try decodeScalarIfPresent(type, forKey: key) }
    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? { try decodeScalarIfPresent(type, forKey: key) }
    func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? { try decodeScalarIfPresent(type, forKey: key) }
    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try decodeScalarIfPresent(type, forKey: key) }
    func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { try decodeScalarIfPresent(type, forKey: key) }
    func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { try decodeScalarIfPresent(type, forKey: key) }
    func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try decodeScalarIfPresent(type, forKey: key) }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try decodeScalarIfPresent(type, forKey: key) }
    func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { try decodeScalarIfPresent(type, forKey: key) }
    func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { try decodeScalarIfPresent(type, forKey: key) }
    func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? { try decodeScalarIfPresent(type, forKey: key) }
    func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? { try decodeScalarIfPresent(type, forKey: key) }
    func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? { try decodeScalarIfPresent(type, forKey: key) }
}
