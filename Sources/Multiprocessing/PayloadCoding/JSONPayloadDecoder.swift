/// Decodes `Decodable` values from JSON: codec `1`, which `pool map` sends.
///
/// It reads what `JSONDecoder` with its default strategies reads, and names the same errors,
/// without loading Foundation into the worker (see ``FoundationTypes``): numbers convert to the
/// requested type only if they fit (an integer type also takes `2.0` or `1e3`), `Data` is read
/// from a Base64 string and `URL` from a string. `Decimal` is read as its `Codable` form.
enum JSONPayloadDecoder {
    static func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes)
        } catch {
            throw DecodingError.dataCorrupted(DecodingError.Context(
                codingPath: [], debugDescription: "The given data was not valid JSON: \(error).", underlyingError: error))
        }
        return try JSONValueDecoder(value: value, codingPath: []).decode(T.self)
    }
}

/// The scalars Codable containers name one by one, and their JSON forms.
protocol JSONScalar {
    /// Converts a parsed value, or throws the error `JSONDecoder` would.
    init(json value: JSONValue, codingPath: [any CodingKey]) throws
    /// The value's JSON text.
    func jsonText(codingPath: [any CodingKey]) throws -> String
}

/// The error for a value of the wrong kind: `valueNotFound` for null, as in `JSONDecoder`.
func jsonMismatch<T>(_: T.Type, found value: JSONValue, codingPath: [any CodingKey]) -> DecodingError {
    if case .null = value {
        return .valueNotFound(T.self, DecodingError.Context(codingPath: codingPath, debugDescription: "Expected \(T.self) value but found null instead."))
    }
    return .typeMismatch(T.self, DecodingError.Context(codingPath: codingPath, debugDescription: "Expected to decode \(T.self) but found \(value.kindDescription) instead."))
}

extension Bool: JSONScalar {
    init(json value: JSONValue, codingPath: [any CodingKey]) throws {
        guard case .bool(let bool) = value else { throw jsonMismatch(Bool.self, found: value, codingPath: codingPath) }
        self = bool
    }

    func jsonText(codingPath: [any CodingKey]) -> String { self ? "true" : "false" }
}

extension String: JSONScalar {
    init(json value: JSONValue, codingPath: [any CodingKey]) throws {
        guard case .string(let string) = value else { throw jsonMismatch(String.self, found: value, codingPath: codingPath) }
        self = string
    }

    func jsonText(codingPath: [any CodingKey]) -> String { String(quotedJSON: self) }
}

extension JSONScalar where Self: FixedWidthInteger {
    init(json value: JSONValue, codingPath: [any CodingKey]) throws {
        guard case .number(let text) = value else { throw jsonMismatch(Self.self, found: value, codingPath: codingPath) }
        if let exact = Self(text) {
            self = exact
        } else if let exact = JSONNumber.exactInteger(text, as: Self.self) {
            self = exact  // 2.0, 1e3: integral, written with a fraction or an exponent
        } else {
            throw DecodingError.dataCorrupted(DecodingError.Context(
                codingPath: codingPath, debugDescription: "Parsed JSON number <\(text)> does not fit in \(Self.self)."))
        }
    }

    func jsonText(codingPath: [any CodingKey]) -> String { String(self) }
}

extension JSONScalar where Self: BinaryFloatingPoint & LosslessStringConvertible {
    init(json value: JSONValue, codingPath: [any CodingKey]) throws {
        guard case .number(let text) = value else { throw jsonMismatch(Self.self, found: value, codingPath: codingPath) }
        // Too large (infinite) or too small (a nonzero number that reads as zero) to hold.
        guard let number = Self(text), number.isFinite, number != 0 || !JSONNumber.hasNonzeroDigit(text) else {
            throw DecodingError.dataCorrupted(DecodingError.Context(
                codingPath: codingPath, debugDescription: "Parsed JSON number <\(text)> does not fit in \(Self.self)."))
        }
        self = number
    }

    func jsonText(codingPath: [any CodingKey]) throws -> String {
        guard isFinite else {
            throw EncodingError.invalidValue(self, EncodingError.Context(
                codingPath: codingPath, debugDescription: "Unable to encode \(Self.self).\(self) directly in JSON."))
        }
        // As JSONEncoder writes them: the shortest text that reads back exactly, and "2" for 2.0.
        var text = description
        if text.hasSuffix(".0") { text.removeLast(2) }
        return text
    }
}

extension Int: JSONScalar {}
extension Int8: JSONScalar {}
extension Int16: JSONScalar {}
extension Int32: JSONScalar {}
extension Int64: JSONScalar {}
extension UInt: JSONScalar {}
extension UInt8: JSONScalar {}
extension UInt16: JSONScalar {}
extension UInt32: JSONScalar {}
extension UInt64: JSONScalar {}
extension Int128: JSONScalar {}
extension UInt128: JSONScalar {}
extension Double: JSONScalar {}
extension Float: JSONScalar {}

/// Exact readings of JSON number text.
enum JSONNumber {
    /// The integer `text` denotes if it is one and fits `T`, however it is written (`2.0`,
    /// `1e3`, `12.50e1`), computed exactly rather than through `Double`.
    static func exactInteger<T: FixedWidthInteger>(_ text: String, as: T.Type) -> T? {
        var digits: [UInt8] = []
        var fractionDigits = 0
        var exponent = 0
        var negative = false
        var inFraction = false
        var utf8 = text.utf8[...]
        if utf8.first == UInt8(ascii: "-") {
            negative = true
            utf8 = utf8.dropFirst()
        }
        while let byte = utf8.first {
            utf8 = utf8.dropFirst()
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                digits.append(byte - UInt8(ascii: "0"))
                if inFraction { fractionDigits += 1 }
            case UInt8(ascii: "."):
                inFraction = true
            case UInt8(ascii: "e"), UInt8(ascii: "E"):
                // The parser checked the grammar; an exponent too long for Int is absurd.
                guard let value = Int(String(decoding: utf8, as: UTF8.self)), abs(value) < 10_000 else { return nil }
                exponent = value
                utf8 = utf8.dropFirst(utf8.count)
            default:
                return nil
            }
        }
        // The value is digits × 10^scale; drop trailing zeros while scale < 0.
        var scale = exponent - fractionDigits
        while scale < 0, digits.last == 0 {
            digits.removeLast()
            scale += 1
        }
        let leadingZeros = digits.prefix { $0 == 0 }.count
        digits.removeFirst(leadingZeros)
        if digits.isEmpty { return 0 }
        guard scale >= 0, digits.count + scale <= 40 else { return nil }
        var magnitude: UInt128 = 0
        for digit in digits + Array(repeating: 0, count: scale) {
            let (times10, overflow) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, carry) = times10.addingReportingOverflow(UInt128(digit))
            guard !overflow, !carry else { return nil }
            magnitude = sum
        }
        if !negative { return T(exactly: magnitude) }
        if magnitude == UInt128(1) << 127 { return T(exactly: Int128.min) }
        guard let positive = Int128(exactly: magnitude) else { return nil }
        return T(exactly: -positive)
    }

    /// Whether the significand of `text` has a digit other than 0.
    static func hasNonzeroDigit(_ text: String) -> Bool {
        for byte in text.utf8 {
            if byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") { return false }
            if byte >= UInt8(ascii: "1") && byte <= UInt8(ascii: "9") { return true }
        }
        return false
    }
}

/// A decoder positioned at one parsed value; it is also that value's single-value container.
struct JSONValueDecoder: Decoder, SingleValueDecodingContainer {
    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if FoundationTypes.isData(T.self) {
            guard case .string(let text) = value else { throw jsonMismatch(String.self, found: value, codingPath: codingPath) }
            guard let bytes = Base64.decode(text) else {
                throw DecodingError.dataCorrupted(DecodingError.Context(codingPath: codingPath, debugDescription: "Encountered Data is not valid Base64."))
            }
            return bytes.withUnsafeBytes { FoundationTypes.makeBytes(T.self, copying: $0) }
        }
        if FoundationTypes.isURL(T.self) {
            // JSONEncoder writes a URL as its string; URL's own Codable form is an object.
            guard case .string(let text) = value else { throw jsonMismatch(String.self, found: value, codingPath: codingPath) }
            return try T(from: JSONValueDecoder(value: .object(["relative": .string(text)]), codingPath: codingPath))
        }
        return try T(from: self)
    }

    func scalar<T: JSONScalar>(_: T.Type) throws -> T {
        try T(json: value, codingPath: codingPath)
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let object) = value else {
            throw jsonMismatch([String: Any].self, found: value, codingPath: codingPath)
        }
        return KeyedDecodingContainer(JSONKeyedDecodingContainer<Key>(object: object, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let elements) = value else {
            throw jsonMismatch([Any].self, found: value, codingPath: codingPath)
        }
        return JSONUnkeyedDecodingContainer(elements: elements, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueDecodingContainer { self }

    func decodeNil() -> Bool {
        if case .null = value { return true }
        return false
    }

    func decode(_: Bool.Type) throws -> Bool { try scalar(Bool.self) }
    func decode(_: String.Type) throws -> String { try scalar(String.self) }
    func decode(_: Double.Type) throws -> Double { try scalar(Double.self) }
    func decode(_: Float.Type) throws -> Float { try scalar(Float.self) }
    func decode(_: Int.Type) throws -> Int { try scalar(Int.self) }
    func decode(_: Int8.Type) throws -> Int8 { try scalar(Int8.self) }
    func decode(_: Int16.Type) throws -> Int16 { try scalar(Int16.self) }
    func decode(_: Int32.Type) throws -> Int32 { try scalar(Int32.self) }
    func decode(_: Int64.Type) throws -> Int64 { try scalar(Int64.self) }
    func decode(_: UInt.Type) throws -> UInt { try scalar(UInt.self) }
    func decode(_: UInt8.Type) throws -> UInt8 { try scalar(UInt8.self) }
    func decode(_: UInt16.Type) throws -> UInt16 { try scalar(UInt16.self) }
    func decode(_: UInt32.Type) throws -> UInt32 { try scalar(UInt32.self) }
    func decode(_: UInt64.Type) throws -> UInt64 { try scalar(UInt64.self) }
    func decode(_: Int128.Type) throws -> Int128 { try scalar(Int128.self) }
    func decode(_: UInt128.Type) throws -> UInt128 { try scalar(UInt128.self) }
}

struct JSONKeyedDecodingContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: [String: JSONValue]
    let codingPath: [any CodingKey]

    var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

    private func decoder(for key: Key) throws -> JSONValueDecoder {
        guard let value = object[key.stringValue] else {
            throw DecodingError.keyNotFound(key, DecodingError.Context(
                codingPath: codingPath, debugDescription: "No value associated with key \"\(key.stringValue)\"."))
        }
        return JSONValueDecoder(value: value, codingPath: codingPath + [key])
    }

    func decodeNil(forKey key: Key) throws -> Bool { try decoder(for: key).decodeNil() }
    func decode(_: Bool.Type, forKey key: Key) throws -> Bool { try decoder(for: key).scalar(Bool.self) }
    func decode(_: String.Type, forKey key: Key) throws -> String { try decoder(for: key).scalar(String.self) }
    func decode(_: Double.Type, forKey key: Key) throws -> Double { try decoder(for: key).scalar(Double.self) }
    func decode(_: Float.Type, forKey key: Key) throws -> Float { try decoder(for: key).scalar(Float.self) }
    func decode(_: Int.Type, forKey key: Key) throws -> Int { try decoder(for: key).scalar(Int.self) }
    func decode(_: Int8.Type, forKey key: Key) throws -> Int8 { try decoder(for: key).scalar(Int8.self) }
    func decode(_: Int16.Type, forKey key: Key) throws -> Int16 { try decoder(for: key).scalar(Int16.self) }
    func decode(_: Int32.Type, forKey key: Key) throws -> Int32 { try decoder(for: key).scalar(Int32.self) }
    func decode(_: Int64.Type, forKey key: Key) throws -> Int64 { try decoder(for: key).scalar(Int64.self) }
    func decode(_: UInt.Type, forKey key: Key) throws -> UInt { try decoder(for: key).scalar(UInt.self) }
    func decode(_: UInt8.Type, forKey key: Key) throws -> UInt8 { try decoder(for: key).scalar(UInt8.self) }
    func decode(_: UInt16.Type, forKey key: Key) throws -> UInt16 { try decoder(for: key).scalar(UInt16.self) }
    func decode(_: UInt32.Type, forKey key: Key) throws -> UInt32 { try decoder(for: key).scalar(UInt32.self) }
    func decode(_: UInt64.Type, forKey key: Key) throws -> UInt64 { try decoder(for: key).scalar(UInt64.self) }
    func decode(_: Int128.Type, forKey key: Key) throws -> Int128 { try decoder(for: key).scalar(Int128.self) }
    func decode(_: UInt128.Type, forKey key: Key) throws -> UInt128 { try decoder(for: key).scalar(UInt128.self) }
    func decode<T: Decodable>(_: T.Type, forKey key: Key) throws -> T { try decoder(for: key).decode(T.self) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try decoder(for: key).container(keyedBy: NestedKey.self)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try decoder(for: key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        JSONValueDecoder(value: object[PayloadCodingKey.superKey.stringValue] ?? .null, codingPath: codingPath + [PayloadCodingKey.superKey])
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        JSONValueDecoder(value: object[key.stringValue] ?? .null, codingPath: codingPath + [key])
    }
}

struct JSONUnkeyedDecodingContainer: UnkeyedDecodingContainer {
    let elements: [JSONValue]
    let codingPath: [any CodingKey]
    private(set) var currentIndex = 0

    init(elements: [JSONValue], codingPath: [any CodingKey]) {
        self.elements = elements
        self.codingPath = codingPath
    }

    var count: Int? { elements.count }
    var isAtEnd: Bool { currentIndex >= elements.count }

    /// Decodes the next element with `body`; the index moves on only if that succeeds, so a
    /// caller may try another type, as with `JSONDecoder`.
    private func atEnd<T>(_: T.Type) -> DecodingError {
        DecodingError.valueNotFound(T.self, DecodingError.Context(
            codingPath: codingPath + [PayloadCodingKey(index: currentIndex)],
            debugDescription: "Unkeyed container is at end: the array has \(elements.count) elements."))
    }

    /// Decodes the next element with `body`; the index moves on only if that succeeds, so a
    /// caller may try another type, as with `JSONDecoder`.
    private mutating func next<T>(_: T.Type, _ body: (JSONValueDecoder) throws -> T) throws -> T {
        guard !isAtEnd else { throw atEnd(T.self) }
        let element = JSONValueDecoder(value: elements[currentIndex], codingPath: codingPath + [PayloadCodingKey(index: currentIndex)])
        let value = try body(element)
        currentIndex += 1
        return value
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { throw atEnd(Any?.self) }
        guard case .null = elements[currentIndex] else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode(_: Bool.Type) throws -> Bool { try next(Bool.self) { try $0.scalar(Bool.self) } }
    mutating func decode(_: String.Type) throws -> String { try next(String.self) { try $0.scalar(String.self) } }
    mutating func decode(_: Double.Type) throws -> Double { try next(Double.self) { try $0.scalar(Double.self) } }
    mutating func decode(_: Float.Type) throws -> Float { try next(Float.self) { try $0.scalar(Float.self) } }
    mutating func decode(_: Int.Type) throws -> Int { try next(Int.self) { try $0.scalar(Int.self) } }
    mutating func decode(_: Int8.Type) throws -> Int8 { try next(Int8.self) { try $0.scalar(Int8.self) } }
    mutating func decode(_: Int16.Type) throws -> Int16 { try next(Int16.self) { try $0.scalar(Int16.self) } }
    mutating func decode(_: Int32.Type) throws -> Int32 { try next(Int32.self) { try $0.scalar(Int32.self) } }
    mutating func decode(_: Int64.Type) throws -> Int64 { try next(Int64.self) { try $0.scalar(Int64.self) } }
    mutating func decode(_: UInt.Type) throws -> UInt { try next(UInt.self) { try $0.scalar(UInt.self) } }
    mutating func decode(_: UInt8.Type) throws -> UInt8 { try next(UInt8.self) { try $0.scalar(UInt8.self) } }
    mutating func decode(_: UInt16.Type) throws -> UInt16 { try next(UInt16.self) { try $0.scalar(UInt16.self) } }
    mutating func decode(_: UInt32.Type) throws -> UInt32 { try next(UInt32.self) { try $0.scalar(UInt32.self) } }
    mutating func decode(_: UInt64.Type) throws -> UInt64 { try next(UInt64.self) { try $0.scalar(UInt64.self) } }
    mutating func decode(_: Int128.Type) throws -> Int128 { try next(Int128.self) { try $0.scalar(Int128.self) } }
    mutating func decode(_: UInt128.Type) throws -> UInt128 { try next(UInt128.self) { try $0.scalar(UInt128.self) } }
    mutating func decode<T: Decodable>(_: T.Type) throws -> T { try next(T.self) { try $0.decode(T.self) } }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next(KeyedDecodingContainer<NestedKey>.self) { try $0.container(keyedBy: NestedKey.self) }
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try next((any UnkeyedDecodingContainer).self) { try $0.unkeyedContainer() }
    }

    mutating func superDecoder() throws -> any Decoder {
        try next((any Decoder).self) { $0 }
    }
}
