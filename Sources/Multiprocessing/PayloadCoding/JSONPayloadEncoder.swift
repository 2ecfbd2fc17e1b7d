/// Encodes `Encodable` values as JSON: codec `1`, the outputs `pool map` prints.
///
/// The text is what `JSONEncoder` writes with `[.sortedKeys, .withoutEscapingSlashes]` and its
/// default strategies, without loading Foundation into the worker (see ``FoundationTypes``):
/// keys in order, `2.0` written as `2`, non-finite numbers refused, `Data` as Base64 and `URL` as
/// its string. `Decimal` is written in its `Codable` form.
enum JSONPayloadEncoder {
    static func encode<T: Encodable>(_ value: T, into bytes: inout [UInt8]) throws {
        let root = JSONNode()
        try JSONValueEncoder(node: root, codingPath: []).encode(value)
        guard !root.isEmpty else {
            throw EncodingError.invalidValue(value, EncodingError.Context(
                codingPath: [], debugDescription: "Top-level \(T.self) did not encode any values."))
        }
        guard root.write(to: &bytes, depth: 0) else {
            throw EncodingError.invalidValue(value, EncodingError.Context(
                codingPath: [], debugDescription: "Too many nested arrays or dictionaries: more than \(payloadMaxDepth) levels."))
        }
    }
}

/// One value being encoded. Containers hold on to their node and fill it in as the value's
/// `encode(to:)` runs, so a node is a class; exactly one of its three forms is set once the
/// value has encoded anything.
final class JSONNode {
    /// The JSON text of a scalar.
    var scalar: String?
    var array: [JSONNode]?
    var object: [String: JSONNode]?

    init() {}

    init(scalar: String) { self.scalar = scalar }

    var isEmpty: Bool { scalar == nil && array == nil && object == nil }

    /// Writes the node's JSON text; false if containers nest deeper than ``payloadMaxDepth``
    /// (more than a decoder accepts).
    func write(to bytes: inout [UInt8], depth: Int) -> Bool {
        if let scalar {
            bytes.append(contentsOf: scalar.utf8)
        } else if let array {
            guard depth < payloadMaxDepth else { return false }
            bytes.append(UInt8(ascii: "["))
            for (index, element) in array.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                guard element.write(to: &bytes, depth: depth + 1) else { return false }
            }
            bytes.append(UInt8(ascii: "]"))
        } else if let object {
            guard depth < payloadMaxDepth else { return false }
            bytes.append(UInt8(ascii: "{"))
            // In order of their UTF-8 bytes, as JSONEncoder sorts (not Swift's String order,
            // which compares canonical forms).
            for (index, key) in object.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }).enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                Self.appendQuoted(key, to: &bytes)
                bytes.append(UInt8(ascii: ":"))
                guard object[key]!.write(to: &bytes, depth: depth + 1) else { return false }
            }
            bytes.append(UInt8(ascii: "}"))
        } else {
            // A nested value that encoded nothing: JSONEncoder writes an empty object.
            bytes.append(contentsOf: "{}".utf8)
        }
        return true
    }

    /// Appends `string` in quotes, escaping what JSON requires (quote, backslash and control
    /// characters); other characters, "/" included, are written as UTF-8.
    static func appendQuoted(_ string: String, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): bytes.append(contentsOf: #"\\"#.utf8)
            case 0x0A: bytes.append(contentsOf: #"\n"#.utf8)
            case 0x0D: bytes.append(contentsOf: #"\r"#.utf8)
            case 0x09: bytes.append(contentsOf: #"\t"#.utf8)
            case 0x08: bytes.append(contentsOf: #"\b"#.utf8)
            case 0x0C: bytes.append(contentsOf: #"\f"#.utf8)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: #"\u00"#.utf8)
                bytes.append(hex[Int(byte >> 4)])
                bytes.append(hex[Int(byte & 0xF)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    // A node keeps the first container asked of it. A type that asks one encoder for two
    // kinds (a subclass keyed, its superclass single-valued) misuses Codable; what the second
    // writes is dropped then, as far as JSONEncoder's output shows, rather than trapping.

    /// Makes this node an object, unless it is already a container.
    func makeObject() {
        guard object == nil && array == nil else { return }
        scalar = nil
        object = [:]
    }

    /// Makes this node an array, unless it is already a container.
    func makeArray() {
        guard array == nil && object == nil else { return }
        scalar = nil
        array = []
    }

    /// Makes this node a scalar, unless it is already a container.
    func setScalar(_ text: String) {
        guard array == nil && object == nil else { return }
        scalar = text
    }
}

/// An encoder writing into one node; it is also that node's single-value container.
struct JSONValueEncoder: Encoder, SingleValueEncodingContainer {
    let node: JSONNode
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func encode<T: Encodable>(_ value: T) throws {
        if FoundationTypes.isData(T.self) {
            // JSONEncoder's default for Data: a Base64 string.
            node.setScalar(FoundationTypes.withBytes(of: value) { String(quotedJSON: Base64.encode($0)) })
            return
        }
        try value.encode(to: self)
        if FoundationTypes.isURL(T.self), let object = node.object,
           let relative = object["relative"]?.scalar.flatMap(JSONNode.unquoted) {
            // URL's Codable form is {"relative": …, "base": …}; JSONEncoder writes the URL's
            // absolute string, the relative reference resolved against the base.
            let base = object["base"]?.scalar.flatMap(JSONNode.unquoted)
            node.object = nil
            node.setScalar(String(quotedJSON: base.map { URIReference.resolve(relative, against: $0) } ?? relative))
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        node.makeObject()
        return KeyedEncodingContainer(JSONKeyedEncodingContainer<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        node.makeArray()
        return JSONUnkeyedEncodingContainer(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { self }

    func scalar<T: JSONScalar>(_ value: T) throws { node.setScalar(try value.jsonText(codingPath: codingPath)) }

    func encodeNil() { node.setScalar("null") }
    func encode(_ value: Bool) throws { try scalar(value) }
    func encode(_ value: String) throws { try scalar(value) }
    func encode(_ value: Double) throws { try scalar(value) }
    func encode(_ value: Float) throws { try scalar(value) }
    func encode(_ value: Int) throws { try scalar(value) }
    func encode(_ value: Int8) throws { try scalar(value) }
    func encode(_ value: Int16) throws { try scalar(value) }
    func encode(_ value: Int32) throws { try scalar(value) }
    func encode(_ value: Int64) throws { try scalar(value) }
    func encode(_ value: UInt) throws { try scalar(value) }
    func encode(_ value: UInt8) throws { try scalar(value) }
    func encode(_ value: UInt16) throws { try scalar(value) }
    func encode(_ value: UInt32) throws { try scalar(value) }
    func encode(_ value: UInt64) throws { try scalar(value) }
    func encode(_ value: Int128) throws { try scalar(value) }
    func encode(_ value: UInt128) throws { try scalar(value) }
}

extension JSONNode {
    /// The string a scalar's JSON text holds, or nil if it is not a string.
    static func unquoted(_ text: String) -> String? {
        var text = text
        let value = text.withUTF8 { try? JSONParser.parse(UnsafeRawBufferPointer($0)) }
        guard case .string(let string)? = value else { return nil }
        return string
    }
}

extension String {
    init(quotedJSON string: String) {
        var text: [UInt8] = []
        JSONNode.appendQuoted(string, to: &text)
        self.init(decoding: text, as: UTF8.self)
    }
}

struct JSONKeyedEncodingContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: JSONNode
    let codingPath: [any CodingKey]

    /// A new node for `key`, replacing any value encoded for it before (as in JSONEncoder).
    private func child(for key: some CodingKey) -> JSONValueEncoder {
        let child = JSONNode()
        node.object?[key.stringValue] = child
        return JSONValueEncoder(node: child, codingPath: codingPath + [key])
    }

    /// The node already at `key`, or a new one: a nested container asked for twice, or after
    /// a value, adds to what is there, as in JSONEncoder.
    private func existingChild(for key: some CodingKey) -> JSONValueEncoder {
        guard let existing = node.object?[key.stringValue] else { return child(for: key) }
        return JSONValueEncoder(node: existing, codingPath: codingPath + [key])
    }

    mutating func encodeNil(forKey key: Key) { child(for: key).encodeNil() }
    mutating func encode(_ value: Bool, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode(_ value: String, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode(_ value: Float, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode(_ value: Int, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode(_ value: Int128, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode(_ value: UInt128, forKey key: Key) throws { try child(for: key).scalar(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try child(for: key).encode(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        existingChild(for: key).container(keyedBy: NestedKey.self)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        existingChild(for: key).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { existingChild(for: PayloadCodingKey.superKey) }

    mutating func superEncoder(forKey key: Key) -> any Encoder { existingChild(for: key) }
}

struct JSONUnkeyedEncodingContainer: UnkeyedEncodingContainer {
    let node: JSONNode
    let codingPath: [any CodingKey]

    var count: Int { node.array?.count ?? 0 }

    private func next() -> JSONValueEncoder {
        let child = JSONNode()
        let path = codingPath + [PayloadCodingKey(index: count)]
        node.array?.append(child)
        return JSONValueEncoder(node: child, codingPath: path)
    }

    mutating func encodeNil() { next().encodeNil() }
    mutating func encode(_ value: Bool) throws { try next().scalar(value) }
    mutating func encode(_ value: String) throws { try next().scalar(value) }
    mutating func encode(_ value: Double) throws { try next().scalar(value) }
    mutating func encode(_ value: Float) throws { try next().scalar(value) }
    mutating func encode(_ value: Int) throws { try next().scalar(value) }
    mutating func encode(_ value: Int8) throws { try next().scalar(value) }
    mutating func encode(_ value: Int16) throws { try next().scalar(value) }
    mutating func encode(_ value: Int32) throws { try next().scalar(value) }
    mutating func encode(_ value: Int64) throws { try next().scalar(value) }
    mutating func encode(_ value: UInt) throws { try next().scalar(value) }
    mutating func encode(_ value: UInt8) throws { try next().scalar(value) }
    mutating func encode(_ value: UInt16) throws { try next().scalar(value) }
    mutating func encode(_ value: UInt32) throws { try next().scalar(value) }
    mutating func encode(_ value: UInt64) throws { try next().scalar(value) }
    mutating func encode(_ value: Int128) throws { try next().scalar(value) }
    mutating func encode(_ value: UInt128) throws { try next().scalar(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try next().encode(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        next().container(keyedBy: NestedKey.self)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { next().unkeyedContainer() }

    mutating func superEncoder() -> any Encoder { next() }
}

/// Base64 (RFC 4648, standard alphabet, with padding), as `Data(base64Encoded:)` and
/// `base64EncodedString()` read and write it.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: UnsafeRawBufferPointer) -> String {
        var text: [UInt8] = []
        text.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let count = min(3, bytes.count - index)
            var group: UInt32 = 0
            for offset in 0..<3 { group = group << 8 | UInt32(offset < count ? bytes[index + offset] : 0) }
            for position in 0..<4 {
                let sextet = Int((group >> UInt32(18 - 6 * position)) & 0x3F)
                text.append(position <= count ? alphabet[sextet] : UInt8(ascii: "="))
            }
            index += 3
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// The bytes `text` encodes, or nil if it is not padded standard Base64.
    static func decode(_ text: String) -> [UInt8]? {
        let characters = Array(text.utf8)
        guard characters.count % 4 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(characters.count / 4 * 3)
        var index = 0
        while index < characters.count {
            var group: UInt32 = 0
            var padding = 0
            for offset in 0..<4 {
                let character = characters[index + offset]
                let value: UInt8
                switch character {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = character - UInt8(ascii: "A")
                case UInt8(ascii: "a")...UInt8(ascii: "z"): value = character - UInt8(ascii: "a") + 26
                case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character - UInt8(ascii: "0") + 52
                case UInt8(ascii: "+"): value = 62
                case UInt8(ascii: "/"): value = 63
                case UInt8(ascii: "=") where index + 4 == characters.count && offset >= 2:
                    value = 0
                    padding += 1
                default: return nil
                }
                // Padding ends the text: no data character may follow it.
                if padding > 0 && character != UInt8(ascii: "=") { return nil }
                group = group << 6 | UInt32(value)
            }
            let produced = 3 - padding
            for offset in 0..<produced { bytes.append(UInt8((group >> UInt32(16 - 8 * offset)) & 0xFF)) }
            index += 4
        }
        return bytes
    }
}
