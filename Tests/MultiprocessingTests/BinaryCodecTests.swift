import Foundation
import Testing

@testable import Multiprocessing
@testable import struct fixture_worker.SplitMix64

// MARK: - Fixtures

private struct Point: Codable, Hashable {
    var x: Int
    var y: Int
}

private struct Address: Codable, Equatable {
    var street: String
    var city: String
    var zip: Int32
}

private struct Person: Codable, Equatable {
    var name: String
    var age: Int
    var email: String?
    var tags: [String]
    var home: Address?
    var scores: [Double]
    var flags: Set<Int>
}

private enum Shape: Codable, Equatable {
    case circle(radius: Double)
    case segment(Point, Point)
    case labeled(String, count: Int?)
    case empty
}

private enum Direction: Codable, Equatable {
    case north, south
}

private enum Raw: String, Codable {
    case alpha, beta
}

private struct Optionals: Codable, Equatable {
    var a: Int?
    var b: Int??
    var c: [Int?]
    var d: String?
    var e: [Int??]
    var f: Point?
}

private struct Extremes: Codable, Equatable {
    var int: [Int]
    var int8: [Int8]
    var int16: [Int16]
    var int32: [Int32]
    var int64: [Int64]
    var uint: [UInt]
    var uint8: [UInt8]
    var uint16: [UInt16]
    var uint32: [UInt32]
    var uint64: [UInt64]
    var scalarMin: Int
    var scalarMax: UInt64
    var small: Int8
}

private struct Floats: Codable {
    var double: Double
    var float: Float
    var doubles: [Double]
    var floats: [Float]
}

private class Animal: Codable {
    var name: String
    var legs: Int

    init(name: String, legs: Int) {
        self.name = name
        self.legs = legs
    }
}

/// Encodes its superclass through `superEncoder()`, as hand-written subclass conformances do.
private final class Dog: Animal {
    var breed: String
    var tricks: [String]

    private enum CodingKeys: String, CodingKey { case breed, tricks }

    init(name: String, legs: Int, breed: String, tricks: [String]) {
        self.breed = breed
        self.tricks = tricks
        super.init(name: name, legs: legs)
    }

    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        tricks = try container.decode([String].self, forKey: .tricks)
        breed = try container.decode(String.self, forKey: .breed)
        try super.init(from: container.superDecoder())
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(breed, forKey: .breed)
        try container.encode(tricks, forKey: .tricks)
        try super.encode(to: container.superEncoder())
    }
}

/// Shares its encoder with the superclass, so both write into one keyed container.
private final class Cat: Animal {
    var indoor: Bool

    private enum CodingKeys: String, CodingKey { case indoor }

    init(name: String, legs: Int, indoor: Bool) {
        self.indoor = indoor
        super.init(name: name, legs: legs)
    }

    required init(from decoder: any Decoder) throws {
        indoor = try decoder.container(keyedBy: CodingKeys.self).decode(Bool.self, forKey: .indoor)
        try super.init(from: decoder)
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(indoor, forKey: .indoor)
        try super.encode(to: encoder)
    }
}

/// Reads its keys in a different order than it writes them, and uses every lookup the keyed
/// container offers.
private struct Reordered: Codable, Equatable {
    var a: Int
    var b: String
    var first: Point
    var second: Point
    var points: [Point]
    var maybe: Point?
    var note: String?
    var nothing: Int?
    var inner: [String: Int]

    private enum CodingKeys: String, CodingKey {
        case a, b, first, second, points, maybe, note, nothing, inner, absent
    }

    private enum InnerKeys: String, CodingKey { case values }

    init(
        a: Int, b: String, first: Point, second: Point, points: [Point], maybe: Point?, note: String?,
        inner: [String: Int]
    ) {
        (self.a, self.b, self.first, self.second, self.points) = (a, b, first, second, points)
        (self.maybe, self.note, self.nothing, self.inner) = (maybe, note, nil, inner)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(a, forKey: .a)
        try container.encode(b, forKey: .b)
        try container.encode(first, forKey: .first)
        try container.encode(second, forKey: .second)
        try container.encode(points, forKey: .points)
        try container.encodeIfPresent(maybe, forKey: .maybe)
        try container.encodeIfPresent(note, forKey: .note)
        try container.encodeNil(forKey: .nothing)
        var nested = container.nestedContainer(keyedBy: InnerKeys.self, forKey: .inner)
        try nested.encode(inner, forKey: .values)
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        guard !container.contains(.absent), container.contains(.a) else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "contains is wrong"))
        }
        // Read the parent between taking the nested container and reading it.
        let inner = try container.nestedContainer(keyedBy: InnerKeys.self, forKey: .inner)
        points = try container.decode([Point].self, forKey: .points)
        self.inner = try inner.decode([String: Int].self, forKey: .values)
        second = try container.decode(Point.self, forKey: .second)
        note = try container.decodeIfPresent(String.self, forKey: .note)
        maybe = try container.decodeIfPresent(Point.self, forKey: .maybe)
        first = try container.decode(Point.self, forKey: .first)
        b = try container.decode(String.self, forKey: .b)
        a = try container.decode(Int.self, forKey: .a)
        guard try container.decodeNil(forKey: .nothing),
            try container.decodeIfPresent(Int.self, forKey: .absent) == nil
        else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "nil lookups are wrong"))
        }
        nothing = try container.decodeIfPresent(Int.self, forKey: .nothing)
        _ = container.allKeys
    }
}

/// Synthesized `init(from:)` of an empty struct reads nothing, while `encode(to:)` opens a
/// container; the codec must keep such values aligned in arrays and entries.
private struct Empty: Codable, Equatable {}

private struct HasEmpty: Codable, Equatable {
    var before: Int
    var empty: Empty
    var maybe: Empty?
    var list: [Empty]
    var after: String
}

/// More keys than the linear key table holds, decoded backwards through `allKeys`.
private struct Wide: Codable, Equatable {
    var values: [String: Int]

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(values: [String: Int]) { self.values = values }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: AnyKey.self)
        for (key, value) in values.sorted(by: { $0.key < $1.key }) {
            try container.encode(value, forKey: AnyKey(stringValue: key))
        }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        var values: [String: Int] = [:]
        for key in container.allKeys.reversed() {
            values[key.stringValue] = try container.decode(Int.self, forKey: key)
        }
        self.values = values
    }
}

private struct Pair: Codable, Equatable {
    var b: Int
    var a: Int
}

/// Decodes a value that refers back to keys interned after an entry it decoded first, so the
/// decoder has to put its view of the key table back together.
private struct Crossed: Codable, Equatable {
    var a: Int
    var inner: Point
    var b: Int
    var later: Pair

    private enum CodingKeys: String, CodingKey { case a, inner, b, later }

    init(a: Int, inner: Point, b: Int, later: Pair) {
        (self.a, self.inner, self.b, self.later) = (a, inner, b, later)
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        inner = try container.decode(Point.self, forKey: .inner)
        later = try container.decode(Pair.self, forKey: .later)
        b = try container.decode(Int.self, forKey: .b)
        a = try container.decode(Int.self, forKey: .a)
    }
}

/// Recursion through synthesized enum coding, which uses nested keyed containers.
private indirect enum Tree: Codable, Equatable {
    case leaf
    case node(Tree, label: String?)

    init(depth: Int) {
        self = depth == 0 ? .leaf : .node(Tree(depth: depth - 1), label: depth % 2 == 0 ? "even" : nil)
    }
}

/// A chain written through unkeyed containers, to build payloads of any depth.
private final class Chain: Codable {
    let next: Chain?

    init(depth: Int) {
        next = depth > 0 ? Chain(depth: depth - 1) : nil
    }

    var depth: Int { next.map { $0.depth + 1 } ?? 0 }

    init(from decoder: any Decoder) throws {
        var container = try decoder.unkeyedContainer()
        next = try container.decode(Chain?.self)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.unkeyedContainer()
        try container.encode(next)
    }
}

/// Writes to a nested container after its parent continued, which the sequential format
/// cannot represent.
private struct Interleaved: Encodable {
    private enum Keys: String, CodingKey { case nested, after, value }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        var nested = container.nestedContainer(keyedBy: Keys.self, forKey: .nested)
        try container.encode(1, forKey: .after)
        try nested.encode(2, forKey: .value)
    }
}

private let encoder = BinaryPayloadEncoder()
private let decoder = BinaryPayloadDecoder()

private func roundTrip<T: Codable>(_ value: T) throws -> T {
    let bytes = try encoder.encode(value)
    var appended: [UInt8] = [0xEE]
    try encoder.encode(value, into: &appended)
    #expect(Array(appended.dropFirst()) == bytes, "encode(_:into:) must append the same bytes")
    let fromArray = try decoder.decode(T.self, from: bytes)
    // Decode the same bytes from a slice of a larger buffer, as from a received frame.
    let framed = [0xAA] + bytes + [0xBB]
    _ = try framed.withUnsafeBytes { raw in
        try decoder.decode(T.self, from: UnsafeRawBufferPointer(rebasing: raw[1..<(raw.count - 1)]))
    }
    return fromArray
}

private func samplePerson() -> Person {
    Person(
        name: "Zoë 🚀", age: 42, email: nil, tags: ["a", "", "ünïcödé"],
        home: Address(street: "1 Infinite Loop", city: "Cupertino", zip: 95014),
        scores: [1.5, -0.0, .infinity], flags: [1, 2, 3])
}

// MARK: - Round trips

@Suite struct BinaryCodecRoundTripTests {
    @Test func nestedStructs() throws {
        let person = samplePerson()
        #expect(try roundTrip(person) == person)
        let people = [person, Person(name: "", age: -1, email: "x@y", tags: [], home: nil, scores: [], flags: [])]
        #expect(try roundTrip(people) == people)
        let address = Address(street: "s", city: "c", zip: Int32.min)
        #expect(try roundTrip([[address], [], [address, address]]) == [[address], [], [address, address]])
    }

    @Test func enums() throws {
        let shapes: [Shape] = [
            .circle(radius: 2.5), .segment(Point(x: 1, y: 2), Point(x: -3, y: 4)), .labeled("ü", count: nil),
            .labeled("", count: 7), .empty,
        ]
        #expect(try roundTrip(shapes) == shapes)
        #expect(try roundTrip(Shape.empty) == .empty)
        #expect(try roundTrip([Direction.south, .north]) == [.south, .north])
        #expect(try roundTrip([Raw.beta, .alpha]) == [.beta, .alpha])
    }

    @Test func optionals() throws {
        #expect(try roundTrip(Int?.none) == nil)
        #expect(try roundTrip(Int?.some(5)) == 5)
        #expect(try roundTrip(Int??.some(.none)) == .some(.none))
        #expect(try roundTrip(Int??.none) == .none)
        #expect(try roundTrip(String?.some("")) == "")
        let values = Optionals(
            a: 1, b: .some(.some(2)), c: [1, nil, 3], d: nil, e: [.some(.none), nil, 4], f: Point(x: 0, y: 0))
        #expect(try roundTrip(values) == values)
        let empty = Optionals(a: nil, b: nil, c: [], d: "d", e: [], f: nil)
        #expect(try roundTrip(empty) == empty)
        let points: [Point?] = [nil, Point(x: 1, y: 1), nil]
        #expect(try roundTrip(points) == points)
    }

    @Test func collections() throws {
        #expect(try roundTrip(Set(["a", "b", "ç"])) == Set(["a", "b", "ç"]))
        #expect(try roundTrip(Set<Int>()) == [])
        let byName = ["one": 1, "two": 2, "": 0, "😀": -5]
        #expect(try roundTrip(byName) == byName)
        let byNumber = [1: "one", -2: "minus two", Int.max: "max"]
        #expect(try roundTrip(byNumber) == byNumber)
        let byPoint = [Point(x: 1, y: 2): 3, Point(x: -1, y: 0): 4]
        #expect(try roundTrip(byPoint) == byPoint)
        let nested = ["a": [Point(x: 1, y: 1)], "b": []]
        #expect(try roundTrip(nested) == nested)
        let large = Dictionary(uniqueKeysWithValues: (0..<1000).map { ("key\($0)", $0) })
        #expect(try roundTrip(large) == large)
        #expect(try roundTrip([String]()) == [])
        #expect(try roundTrip([[Int]]()) == [])
        #expect(try roundTrip([String: Int]()) == [:])
    }

    @Test func unicodeStrings() throws {
        let strings = ["", "é", "e\u{301}", "👨‍👩‍👧‍👦", "日本語", "\u{0}", String(repeating: "ß", count: 300)]
        for string in strings {
            // `==` on String ignores normalization; compare the bytes.
            #expect(try Array(roundTrip(string).utf8) == Array(string.utf8))
        }
        #expect(try roundTrip(strings).map { Array($0.utf8) } == strings.map { Array($0.utf8) })
    }

    @Test func bytesAndData() throws {
        var generator = SplitMix64(seed: 1)
        let mebibyte = (0..<(1 << 20)).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        #expect(try roundTrip(mebibyte) == mebibyte)
        #expect(try roundTrip(Data(mebibyte)) == Data(mebibyte))
        #expect(try roundTrip([UInt8]()) == [])
        #expect(try roundTrip(Data()) == Data())
        let sliced = Data(mebibyte)[100..<200]
        #expect(try roundTrip(sliced) == sliced)
        #expect(try encoder.encode(Data([1, 2, 3])) == [3, 1, 2, 3])
        #expect(try encoder.encode([UInt8]([1, 2, 3])) == [3, 1, 2, 3])
    }

    /// Byte and fixed-width arrays in keyed entries have their length written before them
    /// (known from the count) instead of patched in after; the lengths must still be exact.
    @Test func bulkArraysInKeyedEntries() throws {
        struct Entries: Codable, Equatable {
            var bytes: [UInt8]
            var maybeBytes: [UInt8]?
            var floats: [Float]
            var doubles: [Double]?
            var nested: [UInt8]??
            var after: String
        }
        for count in [0, 1, 126, 127, 128, 16_383, 16_384, 300_000] {
            let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            for maybe in [nil, bytes] as [[UInt8]?] {
                // (A nested Optional that is `.some(nil)` decodes as nil, as in JSON.)
                let value = Entries(
                    bytes: bytes, maybeBytes: maybe, floats: bytes.map(Float.init), doubles: maybe?.map(Double.init),
                    nested: maybe.map { .some($0) }, after: "end")
                #expect(try roundTrip(value) == value, "\(count) bytes")
            }
        }
        // The length of `[1, 2, 3]` under key "b": key 0 "b", length 4, count 3, the bytes.
        struct One: Codable { var b: [UInt8] }
        let encoded = try encoder.encode(One(b: [1, 2, 3]))
        #expect(Array(encoded.suffix(5)) == [4, 3, 1, 2, 3])
    }

    @Test func largeArrays() throws {
        var generator = SplitMix64(seed: 2)
        let ints = (0..<100_000).map { _ in Int(truncatingIfNeeded: generator.next()) >> Int.random(in: 0..<64, using: &generator) }
        #expect(try roundTrip(ints) == ints)
        let doubles = (0..<100_000).map { _ in Double.random(in: -1e300...1e300, using: &generator) }
        #expect(try roundTrip(doubles) == doubles)
        let points = (0..<10_000).map { Point(x: $0, y: -$0) }
        #expect(try roundTrip(points) == points)
    }

    @Test func integerExtremes() throws {
        let extremes = Extremes(
            int: [.min, .max, 0, -1], int8: [.min, .max], int16: [.min, .max], int32: [.min, .max],
            int64: [.min, .max], uint: [.min, .max], uint8: [.min, .max], uint16: [.min, .max],
            uint32: [.min, .max], uint64: [.min, .max], scalarMin: .min, scalarMax: .max, small: -128)
        #expect(try roundTrip(extremes) == extremes)
        #expect(try roundTrip(Int.min) == .min)
        #expect(try roundTrip(Int64.max) == .max)
        #expect(try roundTrip(UInt64.max) == .max)
        #expect(try roundTrip(Int8.min) == .min)
        #expect(try roundTrip(Int16.min) == .min)
        #expect(try roundTrip(Int32.max) == .max)
        #expect(try roundTrip(UInt16.max) == .max)
        #expect(try encoder.encode(UInt64.max).count == 10)
    }

    @Test func floatingPointSpecialValues() throws {
        let payload = Double(nan: 0x1234, signaling: false)
        let decoded = try roundTrip(payload)
        #expect(decoded.isNaN)
        #expect(decoded.bitPattern == payload.bitPattern)
        #expect(try roundTrip(Double.infinity) == .infinity)
        #expect(try roundTrip(-Double.infinity) == -.infinity)
        #expect(try roundTrip(-0.0 as Double).sign == .minus)
        #expect(try roundTrip(Float.nan).isNaN)
        #expect(try roundTrip(-0.0 as Float).sign == .minus)
        #expect(try roundTrip(-Float.infinity) == -.infinity)
        let floats = try roundTrip(
            Floats(double: .nan, float: -0.0, doubles: [.nan, -0.0, .infinity], floats: [.nan, -.infinity, -0.0]))
        #expect(floats.double.isNaN)
        #expect(floats.float.sign == .minus)
        #expect(floats.doubles[0].isNaN && floats.doubles[1].sign == .minus && floats.doubles[2] == .infinity)
        #expect(floats.floats[0].isNaN && floats.floats[1] == -.infinity && floats.floats[2].sign == .minus)
    }

    @Test func classHierarchies() throws {
        let dog = try roundTrip(Dog(name: "Rex", legs: 4, breed: "Collie", tricks: ["sit", "roll"]))
        #expect((dog.name, dog.legs, dog.breed, dog.tricks) == ("Rex", 4, "Collie", ["sit", "roll"]))
        let cat = try roundTrip(Cat(name: "Tom", legs: 3, indoor: true))
        #expect((cat.name, cat.legs, cat.indoor) == ("Tom", 3, true))
        let dogs = try roundTrip([Dog(name: "A", legs: 1, breed: "b", tricks: []), Dog(name: "C", legs: 2, breed: "d", tricks: ["e"])])
        #expect(dogs.map(\.name) == ["A", "C"] && dogs.map(\.breed) == ["b", "d"])
    }

    @Test func customOrderAndLookups() throws {
        let value = Reordered(
            a: -7, b: "bee", first: Point(x: 1, y: 2), second: Point(x: 3, y: 4),
            points: [Point(x: 5, y: 6), Point(x: 7, y: 8)], maybe: nil, note: "n", inner: ["k": 1, "l": 2])
        #expect(try roundTrip(value) == value)
        let array = [value, value, value]
        #expect(try roundTrip(array) == array)
        let crossed = Crossed(a: 1, inner: Point(x: 2, y: 3), b: 4, later: Pair(b: 5, a: 6))
        #expect(try roundTrip(crossed) == crossed)
        #expect(try roundTrip([crossed, crossed]) == [crossed, crossed])
    }

    @Test func fastPathsWriteTheGenericBytes() throws {
        // ContiguousArray goes through an unkeyed container element by element.
        let ints = [0, 1, -1, 300, .min, .max]
        #expect(try encoder.encode(ints) == encoder.encode(ContiguousArray(ints)))
        #expect(try decoder.decode(ContiguousArray<Int>.self, from: encoder.encode(ints)) == ContiguousArray(ints))
        let doubles = [1.5, -0.0, .infinity]
        #expect(try encoder.encode(doubles) == encoder.encode(ContiguousArray(doubles)))
        let floats: [Float] = [1.5, -2]
        #expect(try encoder.encode(floats) == encoder.encode(ContiguousArray(floats)))
        let wide: [UInt64] = [0, .max]
        #expect(try encoder.encode(wide) == encoder.encode(ContiguousArray(wide)))
        let int32s: [Int32] = [.min, 5]
        #expect(try encoder.encode(int32s) == encoder.encode(ContiguousArray(int32s)))
        let bytes: [UInt8] = [0, 255]
        #expect(try encoder.encode(bytes) == encoder.encode(ContiguousArray(bytes)))
        #expect(try encoder.encode(Data(bytes)) == encoder.encode(bytes))
    }

    @Test func valuesThatReadNothing() throws {
        #expect(try roundTrip(Empty()) == Empty())
        #expect(try roundTrip([Empty(), Empty()]) == [Empty(), Empty()])
        let value = HasEmpty(before: 1, empty: Empty(), maybe: Empty(), list: [Empty()], after: "x")
        #expect(try roundTrip(value) == value)
        let none = HasEmpty(before: 1, empty: Empty(), maybe: nil, list: [], after: "")
        #expect(try roundTrip(none) == none)
        #expect(try roundTrip([Empty?.some(Empty()), nil]) == [Empty(), nil])
    }

    @Test func manyKeysInAnyOrder() throws {
        let wide = Wide(values: Dictionary(uniqueKeysWithValues: (0..<40).map { ("field\($0)", $0 * 3) }))
        #expect(try roundTrip(wide) == wide)
        #expect(try roundTrip([wide, wide]) == [wide, wide])
    }

    @Test func deepButAllowedNesting() throws {
        #expect(try roundTrip(Chain(depth: 400)).depth == 400)
        #expect(try roundTrip(Tree(depth: 500)) == Tree(depth: 500))
        #expect(throws: EncodingError.self) { try encoder.encode(Tree(depth: 520)) }
    }
}

// MARK: - Exact bytes

@Suite struct BinaryCodecFormatTests {
    @Test func scalars() throws {
        #expect(try encoder.encode(1) == [0x02])
        #expect(try encoder.encode(-1) == [0x01])
        #expect(try encoder.encode(0) == [0x00])
        #expect(try encoder.encode(300 as UInt) == [0xAC, 0x02])
        #expect(try encoder.encode(-1 as Int8) == [0xFF])
        #expect(try encoder.encode(200 as UInt8) == [0xC8])
        #expect(try encoder.encode("é") == [0x02, 0xC3, 0xA9])
        #expect(try encoder.encode("") == [0x00])
        #expect(try encoder.encode(true) == [0x01])
        #expect(try encoder.encode(1.0) == [0, 0, 0, 0, 0, 0, 0xF0, 0x3F])
        #expect(try encoder.encode(1.0 as Float) == [0, 0, 0x80, 0x3F])
        #expect(try encoder.encode(Int?.none) == [0x00])
        #expect(try encoder.encode(Int?.some(1)) == [0x01, 0x02])
        #expect(try encoder.encode(Int??.some(.none)) == [0x01, 0x00])
        #expect(try encoder.encode([1, -1]) == [0x02, 0x02, 0x01])
        #expect(Varint.encode(UInt64.max) == [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
    }

    @Test func keyedContainersInternKeys() throws {
        let point: [UInt8] = [0x02, 0x00, 0x01, 0x78, 0x01, 0x02, 0x00, 0x01, 0x79, 0x01, 0x04]
        #expect(try encoder.encode(Point(x: 1, y: 2)) == point)
        // The second element refers back to the keys the first one interned.
        #expect(
            try encoder.encode([Point(x: 1, y: 2), Point(x: 3, y: 4)])
                == [0x02] + point + [0x02, 0x01, 0x01, 0x06, 0x02, 0x01, 0x08])
        struct Wrapper: Codable { var p: Point?; var q: Int? }
        // A present Optional in a keyed entry is its wrapped value; a nil one from
        // `encodeIfPresent` writes no entry.
        #expect(try encoder.encode(Wrapper(p: nil, q: 3)) == [0x01, 0x00, 0x01, 0x71, 0x01, 0x06])
        #expect(try encoder.encode(Wrapper(p: Point(x: 1, y: 2), q: nil)) == [0x01, 0x00, 0x01, 0x70, 0x0B] + point)
    }

    @Test func standardLibraryShapes() throws {
        let ascii = { (text: String) in Array(text.utf8) }
        #expect(try encoder.encode(Shape.empty) == [0x01, 0x00, 0x05] + ascii("empty") + [0x01, 0x00])
        #expect(
            try encoder.encode(Shape.circle(radius: 2))
                == [0x01, 0x00, 0x06] + ascii("circle") + [0x12, 0x01, 0x00, 0x06] + ascii("radius")
                + [0x08, 0, 0, 0, 0, 0, 0, 0, 0x40])
        #expect(try encoder.encode(Direction.south) == [0x01, 0x00, 0x05] + ascii("south") + [0x01, 0x00])
        #expect(try encoder.encode(Raw.beta) == [0x04] + ascii("beta"))
        #expect(try encoder.encode(["a": 1]) == [0x01, 0x00, 0x01, 0x61, 0x01, 0x02])
        #expect(try encoder.encode([7: "x"]) == [0x01, 0x00, 0x01, 0x37, 0x02, 0x01, 0x78])
        #expect(
            try encoder.encode([Point(x: 1, y: 2): 1])
                == [0x02, 0x02, 0x00, 0x01, 0x78, 0x01, 0x02, 0x00, 0x01, 0x79, 0x01, 0x04, 0x02])
        #expect(try encoder.encode(Empty()) == [0x00])
        #expect(try encoder.encode([Int?.some(1), nil]) == [0x02, 0x01, 0x02, 0x00])
    }

    @Test func longValuesShiftForTheirLength() throws {
        struct Text: Codable, Equatable { var t: String; var u: [Int] }
        let value = Text(t: String(repeating: "a", count: 200), u: Array(repeating: 1, count: 150))
        let bytes = try encoder.encode(value)
        // Entry t: key, length 202 as a two-byte varint, then the string.
        #expect(Array(bytes[0..<6]) == [0x02, 0x00, 0x01, 0x74, 0xCA, 0x01])
        #expect(try decoder.decode(Text.self, from: bytes) == value)
    }
}

// MARK: - Errors and hostile input

@Suite struct BinaryCodecErrorTests {
    @Test func everyTruncationThrows() throws {
        let bytes = try encoder.encode(samplePerson())
        for length in 0..<bytes.count {
            #expect(throws: DecodingError.self, "prefix of \(length) bytes") {
                try decoder.decode(Person.self, from: Array(bytes[..<length]))
            }
        }
        let shapes = try encoder.encode([Shape.segment(Point(x: 1, y: 2), Point(x: 3, y: 4)), .labeled("x", count: 1)])
        for length in 0..<shapes.count {
            #expect(throws: DecodingError.self) { try decoder.decode([Shape].self, from: Array(shapes[..<length])) }
        }
    }

    @Test func truncationMessageNamesTheOffset() throws {
        do {
            _ = try decoder.decode(Double.self, from: [1, 2, 3])
            Issue.record("expected an error")
        } catch let DecodingError.dataCorrupted(context) {
            #expect(context.debugDescription == "truncated payload: expected 8 bytes for Double at offset 0, 3 remain")
        }
    }

    @Test func trailingBytesThrow() throws {
        #expect(throws: DecodingError.self) { try decoder.decode(Int.self, from: [0x02, 0x00]) }
        let bytes = try encoder.encode(samplePerson()) + [0]
        #expect(throws: DecodingError.self) { try decoder.decode(Person.self, from: bytes) }
        #expect(throws: DecodingError.self) { try decoder.decode([Int].self, from: [0x01, 0x02, 0x02]) }
    }

    @Test func hugeCountsFailAtOnce() throws {
        let billion = Varint.encode(1_000_000_000)
        let payload = billion + [1, 2, 3, 4, 5]
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            #expect(throws: DecodingError.self) { try decoder.decode([Int].self, from: payload) }
            #expect(throws: DecodingError.self) { try decoder.decode([Point].self, from: payload) }
            #expect(throws: DecodingError.self) { try decoder.decode([String].self, from: payload) }
            #expect(throws: DecodingError.self) { try decoder.decode([Double].self, from: payload) }
            #expect(throws: DecodingError.self) { try decoder.decode(String.self, from: payload) }
            #expect(throws: DecodingError.self) { try decoder.decode(Data.self, from: payload) }
            #expect(throws: DecodingError.self) { try decoder.decode(Point.self, from: payload) }
            #expect(throws: DecodingError.self) { try decoder.decode(Set<Int>.self, from: payload) }
            #expect(throws: DecodingError.self) { try decoder.decode([Int: Int].self, from: payload) }
        }
        // Microseconds here; the bound only leaves room for a loaded machine.
        #expect(elapsed < .seconds(5))
    }

    @Test func malformedScalarsThrow() throws {
        #expect(throws: DecodingError.self) { try decoder.decode(String.self, from: [0x02, 0xC3, 0x28]) }
        #expect(throws: DecodingError.self) { try decoder.decode(String.self, from: [0x01, 0xFF]) }
        #expect(throws: DecodingError.self) { try decoder.decode(Bool.self, from: [0x02]) }
        #expect(throws: DecodingError.self) { try decoder.decode(Int?.self, from: [0x02, 0x02]) }
        #expect(throws: DecodingError.self) { try decoder.decode(Int8.self, from: []) }
        // Eleven bytes, and a tenth byte with more than bit 63.
        #expect(throws: DecodingError.self) { try decoder.decode(UInt64.self, from: Array(repeating: 0xFF, count: 10) + [0x01]) }
        #expect(throws: DecodingError.self) { try decoder.decode(UInt64.self, from: Array(repeating: 0xFF, count: 9) + [0x02]) }
        // 256 does not fit UInt8's neighbours either.
        #expect(throws: DecodingError.self) { try decoder.decode(UInt16.self, from: Varint.encode(65_536)) }
        #expect(throws: DecodingError.self) { try decoder.decode(Int32.self, from: Varint.encode(Varint.zigzag(Int64(Int32.max) + 1))) }
        // A key reference to a key that was never interned.
        #expect(throws: DecodingError.self) { try decoder.decode(Point.self, from: [0x01, 0x05, 0x01, 0x02]) }
        // Bytes left inside a keyed entry's value.
        #expect(throws: DecodingError.self) { try decoder.decode(Point.self, from: [0x02, 0x00, 0x01, 0x78, 0x02, 0x02, 0x00, 0x00, 0x01, 0x79, 0x01, 0x04]) }
    }

    @Test func invalidUTF8InsideAStructThrows() throws {
        var bytes = try encoder.encode(Address(street: "ab", city: "c", zip: 1))
        let index = try #require(bytes.firstIndex(of: UInt8(ascii: "a")))
        bytes[index] = 0xC0
        #expect(throws: DecodingError.self) { try decoder.decode(Address.self, from: bytes) }
    }

    @Test func deepNestingIsRejected() throws {
        // Each level is an unkeyed container of one present Optional.
        let hostile = Array(repeating: [UInt8]([0x01, 0x01]), count: 100_000).joined() + [0x01, 0x00]
        do {
            _ = try decoder.decode(Chain.self, from: Array(hostile))
            Issue.record("expected an error")
        } catch let DecodingError.dataCorrupted(context) {
            #expect(context.debugDescription.contains("nesting deeper than 512"))
        }
        #expect(throws: EncodingError.self) { try encoder.encode(Chain(depth: 600)) }
    }

    @Test func interleavedNestedContainersAreReported() throws {
        #expect(throws: EncodingError.self) { try encoder.encode(Interleaved()) }
    }

    @Test func randomBytesNeverCrash() async throws {
        // Seconds of decoding on a loaded machine: on a thread of its own, so that it does not
        // hold one of the cooperative pool's few threads (every other test's tasks wait for them).
        let decodedCount = try await onDedicatedThread {
            var generator = SplitMix64(seed: 0xC0DEC)
            var decodedCount = 0
            for _ in 0..<20_000 {
                let length = Int.random(in: 0...64, using: &generator)
                let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                if (try? decoder.decode(Person.self, from: bytes)) != nil { decodedCount += 1 }
                _ = try? decoder.decode([Shape].self, from: bytes)
                _ = try? decoder.decode(Optionals.self, from: bytes)
                _ = try? decoder.decode(Reordered.self, from: bytes)
                _ = try? decoder.decode([String: [Int]].self, from: bytes)
                _ = try? decoder.decode(Chain.self, from: bytes)
            }
            return decodedCount
        }
        #expect(decodedCount < 20_000)
    }

    @Test func mutatedPayloadsNeverCrash() async throws {
        let valid = try encoder.encode(
            [Reordered(
                a: 1, b: "b", first: Point(x: 1, y: 2), second: Point(x: 3, y: 4), points: [Point(x: 5, y: 6)],
                maybe: Point(x: 7, y: 8), note: nil, inner: ["k": 1])])
        // Seconds of decoding: off the cooperative pool, like randomBytesNeverCrash.
        try await onDedicatedThread {
            var generator = SplitMix64(seed: 7)
            for _ in 0..<20_000 {
                var bytes = valid
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                }
                _ = try? decoder.decode([Reordered].self, from: bytes)
            }
        }
    }
}

// MARK: - Decoder lifetime

/// Weak references to the decoders (and nested containers) that `init(from:)` implementations
/// were handed, to check that decoding leaves none of them alive: a decoder kept alive after
/// `decode` returns is in a reference cycle with its containers, and leaks.
private final class DecoderProbes: @unchecked Sendable {
    private struct Weak {
        weak var object: AnyObject?
    }

    @TaskLocal static var current: DecoderProbes?

    private let lock = NSLock()
    private var references: [Weak] = []

    static func record(_ object: Any) {
        guard let probes = current else { return }
        probes.lock.withLock { probes.references.append(Weak(object: object as AnyObject)) }
    }

    var recorded: Int { lock.withLock { references.count } }
    var alive: Int { lock.withLock { references.count { $0.object != nil } } }

    /// Runs `body` (which decodes) with probes recording, then reports how many of the recorded
    /// objects outlived it.
    static func check(_ body: () throws -> Void) rethrows -> (recorded: Int, alive: Int) {
        let probes = DecoderProbes()
        try $current.withValue(probes) { try body() }
        return (probes.recorded, probes.alive)
    }
}

/// Records the decoder it is decoded from, then decodes like synthesized code.
private struct Probe: Codable, Equatable {
    var id: Int

    private enum CodingKeys: String, CodingKey { case id }

    init(id: Int) { self.id = id }

    init(from decoder: any Decoder) throws {
        DecoderProbes.record(decoder)
        id = try decoder.container(keyedBy: CodingKeys.self).decode(Int.self, forKey: .id)
    }
}

/// Opens a container, then throws, whatever the payload.
private struct ThrowingProbe: Codable {
    init() {}

    init(from decoder: any Decoder) throws {
        DecoderProbes.record(decoder)
        _ = try decoder.container(keyedBy: PayloadCodingKey.self)
        throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "always throws"))
    }

    func encode(to encoder: any Encoder) throws {
        _ = encoder.container(keyedBy: PayloadCodingKey.self)
    }
}

/// Synthesized enum coding goes through `nestedContainer(keyedBy:forKey:)`.
private enum ProbedJob: Codable, Equatable {
    case run(Probe)
    case retry(Probe, attempt: Int)
    case stop
}

/// Uses every way of handing out a nested decoder of an unkeyed container, and of a keyed one,
/// including an unkeyed container whose nested element is never read past by its parent.
private struct ProbedNesting: Codable, Equatable {
    var probes: [Probe]

    private enum Keys: String, CodingKey { case list, keyed, probe }

    init(probes: [Probe]) { self.probes = probes }

    func encode(to encoder: any Encoder) throws {
        var outer = encoder.unkeyedContainer()
        var list = outer.nestedUnkeyedContainer()
        try list.encode(probes[0])
        var keyed = outer.nestedContainer(keyedBy: Keys.self)
        try keyed.encode(probes[1], forKey: .probe)
        try probes[2].encode(to: outer.superEncoder())
        var byKey = outer.nestedContainer(keyedBy: Keys.self)
        try probes[3].encode(to: byKey.superEncoder(forKey: .probe))
        var pending = byKey.nestedUnkeyedContainer(forKey: .list)
        var innermost = pending.nestedUnkeyedContainer()
        try innermost.encode(probes[4])
        var nestedKeyed = byKey.nestedContainer(keyedBy: Keys.self, forKey: .keyed)
        try nestedKeyed.encode(probes[5], forKey: .probe)
    }

    init(from decoder: any Decoder) throws {
        var outer = try decoder.unkeyedContainer()
        var list = try outer.nestedUnkeyedContainer()
        DecoderProbes.record(list)
        var probes = [try list.decode(Probe.self)]
        let keyed = try outer.nestedContainer(keyedBy: Keys.self)
        probes.append(try keyed.decode(Probe.self, forKey: .probe))
        let superDecoder = try outer.superDecoder()
        DecoderProbes.record(superDecoder)
        probes.append(try Probe(from: superDecoder))
        let byKey = try outer.nestedContainer(keyedBy: Keys.self)
        probes.append(try Probe(from: byKey.superDecoder(forKey: .probe)))
        var pending = try byKey.nestedUnkeyedContainer(forKey: .list)
        DecoderProbes.record(pending)
        var innermost = try pending.nestedUnkeyedContainer()
        DecoderProbes.record(innermost)
        probes.append(try innermost.decode(Probe.self))
        let nestedKeyed = try byKey.nestedContainer(keyedBy: Keys.self, forKey: .keyed)
        probes.append(try nestedKeyed.decode(Probe.self, forKey: .probe))
        self.probes = probes
    }
}

/// A superclass that reads the decoder its subclass read too (a second container over the
/// same value), and one reached through `superDecoder()`.
private class ProbedBase: Codable {
    var base: Probe

    init(base: Probe) { self.base = base }
}

private final class ProbedShared: ProbedBase {
    var own: Int

    private enum CodingKeys: String, CodingKey { case own }

    init(base: Probe, own: Int) {
        self.own = own
        super.init(base: base)
    }

    required init(from decoder: any Decoder) throws {
        own = try decoder.container(keyedBy: CodingKeys.self).decode(Int.self, forKey: .own)
        try super.init(from: decoder)
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(own, forKey: .own)
        try super.encode(to: encoder)
    }
}

/// Catches the errors of nested values and goes on decoding with the same decoder.
private struct Lenient: Decodable {
    var path: [String]
    var point: Point

    private enum Keys: String, CodingKey { case list, failing, point, probe }

    private struct PathProbe: Decodable {
        var path: [String]
        init(from decoder: any Decoder) throws { path = decoder.codingPath.map(\.stringValue) }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        // More failures than the nesting limit: each must give its level back.
        for _ in 0..<(payloadMaxDepth + 10) {
            _ = try? container.decode(ThrowingProbe.self, forKey: .failing)
            _ = try? container.decode([ThrowingProbe].self, forKey: .list)
        }
        path = try container.decode(PathProbe.self, forKey: .probe).path
        point = try container.decode(Point.self, forKey: .point)
    }
}

private struct LenientPayload: Encodable {
    private enum Keys: String, CodingKey { case list, failing, point, probe }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode([ThrowingProbe(), ThrowingProbe()], forKey: .list)
        try container.encode(ThrowingProbe(), forKey: .failing)
        try container.encode(Empty(), forKey: .probe)
        try container.encode(Point(x: 3, y: -4), forKey: .point)
    }
}

@Suite struct BinaryCodecLifetimeTests {
    @Test func enumsWithAssociatedValuesLeaveNoDecoderAlive() throws {
        let jobs: [ProbedJob] = [.run(Probe(id: 1)), .retry(Probe(id: 2), attempt: 3), .stop]
        let bytes = try encoder.encode(jobs)
        let counts = try DecoderProbes.check { () throws -> Void in
            #expect(try decoder.decode([ProbedJob].self, from: bytes) == jobs)
            #expect(try decoder.decode(ProbedJob.self, from: encoder.encode(jobs[1])) == jobs[1])
        }
        #expect(counts.recorded == 3)
        #expect(counts.alive == 0, "decoders of nested containers outlived the decode")
    }

    @Test func nestedContainersAndSuperDecodersLeaveNoDecoderAlive() throws {
        let value = ProbedNesting(probes: (0..<6).map(Probe.init(id:)))
        let bytes = try encoder.encode(value)
        let counts = try DecoderProbes.check { () throws -> Void in
            #expect(try decoder.decode(ProbedNesting.self, from: bytes) == value)
            #expect(try decoder.decode([ProbedNesting].self, from: encoder.encode([value, value])) == [value, value])
        }
        #expect(counts.recorded == 3 * 10)
        #expect(counts.alive == 0, "decoders or containers outlived the decode")
    }

    @Test func aSecondContainerOverTheSameValueLeavesNoDecoderAlive() throws {
        let bytes = try encoder.encode(ProbedShared(base: Probe(id: 7), own: 8))
        let counts = try DecoderProbes.check { () throws -> Void in
            let shared = try decoder.decode(ProbedShared.self, from: bytes)
            #expect((shared.base.id, shared.own) == (7, 8))
        }
        #expect(counts.recorded == 1)
        #expect(counts.alive == 0, "the decoder of the second container outlived the decode")
    }

    @Test func throwingInitLeavesNoDecoderAlive() throws {
        let counts = DecoderProbes.check { () -> Void in
            #expect(throws: DecodingError.self) { try decoder.decode(ThrowingProbe.self, from: encoder.encode(ThrowingProbe())) }
            #expect(throws: DecodingError.self) {
                try decoder.decode([ThrowingProbe].self, from: encoder.encode([ThrowingProbe()]))
            }
            #expect(throws: DecodingError.self) { try decoder.decode(ThrowingProbe.self, from: [0x00]) }
            // The fuzzer's first finding: one zero byte, decoded as an enum with associated values.
            #expect(throws: DecodingError.self) { try decoder.decode(ProbedJob.self, from: [0x00]) }
            // A valid enum whose associated value fails.
            #expect(throws: DecodingError.self) {
                try decoder.decode(ProbedJob.self, from: Array(encoder.encode(ProbedJob.run(Probe(id: 1))).dropLast()))
            }
        }
        #expect(counts.recorded >= 3)
        #expect(counts.alive == 0, "a decoder whose value threw outlived the decode")
    }

    @Test func caughtNestedErrorsLeaveTheDecoderConsistent() throws {
        let bytes = try encoder.encode(LenientPayload())
        let counts = try DecoderProbes.check { () throws -> Void in
            let value = try decoder.decode(Lenient.self, from: bytes)
            #expect(value.path == ["probe"])
            #expect(value.point == Point(x: 3, y: -4))
        }
        #expect(counts.recorded == 2 * (payloadMaxDepth + 10))
        #expect(counts.alive == 0)
    }
}
