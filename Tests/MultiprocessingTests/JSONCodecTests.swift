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
