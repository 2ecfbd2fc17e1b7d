import Foundation
import Testing

@testable import Multiprocessing

// The JSON codec (codec 1) is the library's own, so that workers need not load Foundation.
// These tests hold it to Foundation's JSONEncoder and JSONDecoder: same text out, same values in.

private struct Everything: Codable, Equatable {
    enum Shape: Codable, Equatable {
        case circle(radius: Double)
        case polygon([Int])
        case empty
    }

    struct Inner: Codable, Equatable {
        var name: String
        var tags: [String]
        var weight: Float?
    }

    var int = Int.min
    var intMax = Int.max
    var int8: Int8 = -128
    var int16: Int16 = 32_767
    var int32: Int32 = -7
    var int64 = Int64.min
    var uint = UInt.max
    var uint8: UInt8 = 255
    var uint16: UInt16 = 1
    var uint32 = UInt32.max
    var uint64 = UInt64.max
    var doubles = [0.0, -0.0, 0.1, 2.0, -1e-300, 1e300, .leastNonzeroMagnitude, 123456789012345678.0, .pi]
    var float: Float = 0.1
    var bool = true
    var text = "quote \" backslash \\ slash / controls \u{1}\u{1f}\u{7f}\n\t\r\u{8}\u{c} é 😀 \u{2028}"
    var optionalPresent: String? = "here"
    var optionalAbsent: String?
    var nested = Inner(name: "inner", tags: ["a", "", "c"], weight: nil)
    var nestedList = [Inner(name: "x", tags: [], weight: 1.5), Inner(name: "y", tags: ["z"], weight: -0.25)]
    var byName = ["b": 2, "a": 1, "A": 3, "a10": 4, "a9": 5, "_": 6, "é": 7]
    var byNumber = [10: "ten", 9: "nine", -1: "minus one"]
    var shapes: [Shape] = [.circle(radius: 2.5), .polygon([1, 2, 3]), .empty]
    var data = Data([0, 1, 2, 250, 251, 252, 253, 254, 255])
    var shortData = Data([7])
    var emptyData = Data()
    var url = URL(string: "https://example.com/a/b?c=d#e")!
    var date = Date(timeIntervalSinceReferenceDate: 123_456.789)
    var nothing: [Int] = []
    var nestedArrays = [[1], [], [2, 3]]
}

private func foundationEncoder() -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return encoder
}

private func ours<T: Encodable>(_ value: T) throws -> String {
    var bytes: [UInt8] = []
    try JSONPayloadEncoder.encode(value, into: &bytes)
    return String(decoding: bytes, as: UTF8.self)
}

private func decodeOurs<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
    try Array(text.utf8).withUnsafeBytes { try JSONPayloadDecoder.decode(type, from: $0) }
}

/// The description `PayloadCoding.describe` gives the error `body` throws.
private func describedError(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch {
        return PayloadCoding.describe(error)
    }
}

@Suite struct JSONCodecTests {
    @Test("a command's arguments are text in JSON when they are UTF-8, and byte arrays only when not")
    func commandArguments() throws {
        #expect(try ours(CommandJob.Input(arguments: ["echo", "é"])) == #"{"arguments":["echo","é"]}"#)
        let bytes: [[UInt8]] = [Array("cat".utf8), Array("caf".utf8) + [0xE9]]
        let text = try ours(CommandJob.Input(argumentBytes: bytes))
        #expect(text == #"{"argumentBytes":[[99,97,116],[99,97,102,233]]}"#)
        #expect(try decodeOurs(CommandJob.Input.self, text).argumentBytes == bytes)
    }

    @Test("Encoding writes exactly what JSONEncoder writes with sorted keys")
    func sameTextAsFoundation() throws {
        let value = Everything()
        let expected = String(decoding: try foundationEncoder().encode(value), as: UTF8.self)
        #expect(try ours(value) == expected)
        // Top-level scalars and containers too.
        for sample in [try ours(42), try ours("a/b"), try ours([1.5, 2]), try ours([String: Int]()), try ours(Optional<Int>.none)] {
            #expect(!sample.isEmpty)
        }
        #expect(try ours(42) == String(decoding: try foundationEncoder().encode(42), as: UTF8.self))
        #expect(try ours(Optional<Int>.none) == "null")
        #expect(try ours([String: Int]()) == "{}")
    }

    @Test("Decoding reads what JSONEncoder wrote, and JSONDecoder reads what we write")
    func roundTripsWithFoundation() throws {
        let value = Everything()
        let foundationText = String(decoding: try foundationEncoder().encode(value), as: UTF8.self)
        #expect(try decodeOurs(Everything.self, foundationText) == value)
        #expect(try JSONDecoder().decode(Everything.self, from: Data(try ours(value).utf8)) == value)
    }

    @Test("Numbers: integral floating-point text fits integer types, anything else out of range is an error")
    func numbers() throws {
        #expect(try decodeOurs(Int.self, "2.0") == 2)
        #expect(try decodeOurs(Int.self, "1e3") == 1000)
        #expect(try decodeOurs(Int.self, "-0") == 0)
        #expect(try decodeOurs(Double.self, "1") == 1)
        #expect(try decodeOurs(UInt64.self, "18446744073709551615") == UInt64.max)
        #expect(describedError { _ = try decodeOurs(Int.self, "2.5") }?.contains("<2.5> does not fit in Int") == true)
        #expect(describedError { _ = try decodeOurs(Int8.self, "300") }?.contains("<300> does not fit in Int8") == true)
        #expect(describedError { _ = try decodeOurs(UInt.self, "-1") }?.contains("does not fit in UInt") == true)
        #expect(describedError { _ = try decodeOurs(Double.self, "1e400") }?.contains("does not fit in Double") == true)
        #expect(describedError { _ = try decodeOurs(Float.self, "1e39") }?.contains("does not fit in Float") == true)
        for bad in [Double.nan, .infinity, -.infinity] {
            #expect(throws: EncodingError.self) { _ = try ours([bad]) }
        }
    }

    @Test("Wrong kinds, missing keys and nulls name the path and what was found")
    func decodingErrorsNameThePath() throws {
        struct Item: Codable { var count: Int }
        struct Order: Codable { var items: [Item] }
        let mismatch = describedError { _ = try decodeOurs(Order.self, #"{"items":[{"count":1},{"count":"two"}]}"#) }
        #expect(mismatch == "type mismatch at .items[1].count: expected Int; Expected to decode Int but found a string instead.")
        let missing = describedError { _ = try decodeOurs(Order.self, #"{"items":[{"amount":1}]}"#) }
        #expect(missing?.hasPrefix(#"missing key "count" at .items[0]"#) == true)
        let null = describedError { _ = try decodeOurs(Order.self, #"{"items":null}"#) }
        #expect(null?.hasPrefix("missing value at .items") == true)
        let short = describedError { _ = try decodeOurs([Int].self, "[1") }
        #expect(short?.contains("expected ',' or ']'") == true)
        let notObject = describedError { _ = try decodeOurs(Order.self, "[]") }
        #expect(notObject?.contains("found an array instead") == true)
        // Optional keys may be absent or null.
        struct Maybe: Codable, Equatable { var value: Int? }
        #expect(try decodeOurs(Maybe.self, "{}") == Maybe(value: nil))
        #expect(try decodeOurs(Maybe.self, #"{"value":null}"#) == Maybe(value: nil))
        #expect(try decodeOurs([Int?].self, "[1,null,3]") == [1, nil, 3])
    }

    @Test("Syntax errors give the byte offset; nothing but strict JSON is accepted")
    func syntax() throws {
        let cases: [(String, String)] = [
            ("", "unexpected end of input, expected a value at byte offset 0"),
            ("  [1,]", "unexpected character ']', expected a value at byte offset 5"),
            ("{\"a\" 1}", "expected ':' after key \"a\" at byte offset 5"),
            ("[1] x", "unexpected character 'x' after the value at byte offset 4"),
            ("01", "a number with a leading zero at byte offset 1"),
            ("1.", "expected a digit after '.' at byte offset 2"),
            ("\"abc", "a string that never ends at byte offset 0"),
            ("\"a\u{1}\"", "an unescaped control character (byte 0x1) in a string at byte offset 2"),
            (#""\x""#, #"an invalid escape '\x' at byte offset 2"#),
            (#""\ud800""#, #"a lone UTF-16 surrogate in a \u escape"#),
            (#""\udc00""#, #"a lone UTF-16 surrogate in a \u escape"#),
            ("NaN", "unexpected character 'N', expected a value at byte offset 0"),
            ("tru", "expected true at byte offset 0"),
        ]
        for (text, message) in cases {
            let described = describedError { _ = try decodeOurs(JSONAny.self, text) }
            #expect(described?.contains(message) == true, "\(text): \(described ?? "no error")")
        }
        let invalidUTF8: [UInt8] = [UInt8(ascii: "\""), 0xFF, UInt8(ascii: "\"")]
        #expect(throws: DecodingError.self) { _ = try invalidUTF8.withUnsafeBytes { try JSONPayloadDecoder.decode(String.self, from: $0) } }
        // Nesting is refused past the limit instead of overflowing the stack.
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(describedError { _ = try decodeOurs(JSONAny.self, deep) }?.contains("nesting deeper than 512 levels") == true)
        // Escapes, surrogate pairs and all four whitespace characters.
        #expect(try decodeOurs([String].self, " [\t\"\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\\\"\\\\\"\r\n] ") == ["é😀/\u{8}\u{c}\n\r\t\"\\"])
    }

    @Test("Data is Base64 as in JSONDecoder; bad Base64 is an error")
    func base64() throws {
        for count in 0..<7 {
            let data = Data((0..<count).map { UInt8($0 * 40) })
            let text = try ours(data)
            #expect(text == "\"\(data.base64EncodedString())\"")
            #expect(try decodeOurs(Data.self, text) == data)
        }
        for bad in ["\"abc\"", "\"ab=c\"", "\"a===\"", "\"ab!c\""] {
            #expect(describedError { _ = try decodeOurs(Data.self, bad) }?.contains("not valid Base64") == true, "\(bad)")
        }
    }
}

/// Asks for the same nested containers twice, and for a container after a value: the
/// contents add up, as with JSONEncoder.
private struct NestedTwice: Encodable {
    enum Keys: String, CodingKey { case a, b, c, x, y }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        var first = container.nestedContainer(keyedBy: Keys.self, forKey: .a)
        try first.encode(1, forKey: .x)
        var second = container.nestedContainer(keyedBy: Keys.self, forKey: .a)
        try second.encode(2, forKey: .y)
        var list = container.nestedUnkeyedContainer(forKey: .b)
        try list.encode(1)
        var more = container.nestedUnkeyedContainer(forKey: .b)
        try more.encode(2)
        try container.encode(["x": 0], forKey: .c)
        var after = container.nestedContainer(keyedBy: Keys.self, forKey: .c)
        try after.encode(3, forKey: .y)
    }
}

/// A subclass that takes a keyed container and a superclass that takes a single value from
/// the same encoder: a misuse of Codable that must not bring a worker down.
private class SingleValueBase: Encodable {
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(42)
    }
}

private final class KeyedSubclass: SingleValueBase {
    enum Keys: String, CodingKey { case a, b }
    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(1, forKey: .a)
        try super.encode(to: encoder)
        try container.encode(2, forKey: .b)
    }
}

private struct EncodesNothing: Encodable {
    func encode(to encoder: any Encoder) throws {}
}

/// Arrays nested `depth` deep.
private struct Nested: Encodable {
    var depth: Int
    func encode(to encoder: any Encoder) throws {
        var container = encoder.unkeyedContainer()
        if depth > 1 { try container.encode(Nested(depth: depth - 1)) }
    }
}

@Suite struct JSONCodecEdgeTests {
    private func expectSameText<T: Encodable>(_ value: T, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let expected = String(decoding: try foundationEncoder().encode(value), as: UTF8.self)
        #expect(try ours(value) == expected, sourceLocation: sourceLocation)
    }

    @Test("Integers written with a fraction or an exponent are read exactly")
    func exactIntegers() throws {
        #expect(try decodeOurs(Int64.self, "9007199254740993.0") == 9_007_199_254_740_993)
        #expect(try decodeOurs(UInt64.self, "9223372036854775807e0") == 9_223_372_036_854_775_807)
        #expect(try decodeOurs(UInt64.self, "18446744073709551615.000") == UInt64.max)
        #expect(try decodeOurs(Int64.self, "-9223372036854775808.0") == Int64.min)
        #expect(try decodeOurs(Int.self, "123456789012345678.0") == 123_456_789_012_345_678)
        #expect(try decodeOurs(Int.self, "12.50e1") == 125)
        #expect(try decodeOurs(Int.self, "100e-2") == 1)
        #expect(try decodeOurs(Int.self, "-0.0e7") == 0)
        #expect(try decodeOurs(Int128.self, "170141183460469231731687303715884105727") == Int128.max)
        #expect(try decodeOurs(Int128.self, "-1.70141183460469231731687303715884105728e38") == Int128.min)
        for bad in ["1e40", "1.05", "9223372036854775808.0"] {
            #expect(throws: DecodingError.self, "\(bad)") { _ = try decodeOurs(Int64.self, bad) }
        }
        #expect(throws: DecodingError.self) { _ = try decodeOurs(UInt.self, "-1.0e0") }
    }

    @Test("Int128 and UInt128 are written and read as JSONEncoder does")
    func wideIntegers() throws {
        let values: [Int128] = [.min, -1, 0, .max]
        try expectSameText(values)
        try expectSameText([UInt128.max])
        #expect(try decodeOurs([Int128].self, try ours(values)) == values)
        #expect(try decodeOurs([UInt128].self, try ours([UInt128.max])) == [UInt128.max])
    }

    @Test("Nested containers asked for twice add up; Codable misuse writes what JSONEncoder writes")
    func containers() throws {
        try expectSameText(NestedTwice())
        try expectSameText(KeyedSubclass())
        #expect(throws: EncodingError.self) { _ = try ours(EncodesNothing()) }
        #expect(throws: EncodingError.self) { _ = try foundationEncoder().encode(EncodesNothing()) }
        #expect(try ours([EncodesNothing()]) == "[{}]")
        // Deeper than a decoder accepts: refused, not written.
        #expect(throws: Never.self) { _ = try decodeOurs(JSONAny.self, try ours(Nested(depth: 512))) }
        #expect(throws: EncodingError.self) { _ = try ours(Nested(depth: 513)) }
    }

    @Test("Keys sort by their UTF-8 bytes; a repeated key keeps its first value")
    func keys() throws {
        try expectSameText(["\u{212B}": 1, "\u{00D0}": 2, "e\u{301}": 3, "Z": 5])
        let text = #"{"a":1,"a":2}"#
        #expect(try decodeOurs([String: Int].self, text) == JSONDecoder().decode([String: Int].self, from: Data(text.utf8)))
        #expect(try decodeOurs([String: Int].self, text) == ["a": 1])
    }

    @Test("URLs made relative to a base are written as their absolute string")
    func relativeURLs() throws {
        let base = URL(string: "http://x.org/a/b/c?q#f")!
        for reference in ["d?q=1", "../d", "../../../../g", "/g", "//other.org/p", "?y", "#s", ".", "g/./h/../i", "https://elsewhere.net/x"] {
            try expectSameText([URL(string: reference, relativeTo: base)!])
        }
        try expectSameText(URL(fileURLWithPath: "file.txt"))
        try expectSameText(URL(fileURLWithPath: "/tmp/dir", isDirectory: true))
    }

    @Test("A byte order mark is skipped; numbers too small for the type are errors")
    func inputEdges() throws {
        #expect(try ([0xEF, 0xBB, 0xBF] + Array("[1]".utf8)).withUnsafeBytes { try JSONPayloadDecoder.decode([Int].self, from: $0) } == [1])
        #expect(throws: DecodingError.self) { _ = try decodeOurs(Double.self, "1e-400") }
        #expect(throws: DecodingError.self) { _ = try decodeOurs(Float.self, "1e-50") }
        #expect(try decodeOurs(Double.self, "0.000e99") == 0)
        #expect(try decodeOurs(Double.self, "-0") == 0)
    }
}

/// Any JSON value: for syntax tests, which must parse the whole text whatever its shape.
private struct JSONAny: Decodable {
    init(from decoder: any Decoder) throws {
        if var array = try? decoder.unkeyedContainer() {
            while !array.isAtEnd { _ = try array.decode(JSONAny.self) }
        } else if let object = try? decoder.container(keyedBy: PayloadCodingKey.self) {
            for key in object.allKeys { _ = try object.decode(JSONAny.self, forKey: key) }
        } else {
            _ = try decoder.singleValueContainer()
        }
    }
}
