// Fuzz target for the binary payload codec: BinaryPayloadDecoder with scalar, bulk-array,
// synthesized Codable (nested structs, optionals, dictionaries, enums with associated values,
// recursion up to the depth limit) and hand-written Codable types that use unkeyed and nested
// containers, superDecoder, out-of-order keys, allKeys and contains.
//
// Compiled together with Sources/Multiprocessing/Wire/*.swift and PayloadCoding/*.swift. Define
// FUZZ_PAYLOAD_ENTRY to get the libFuzzer entry point; MutationDriver.swift calls `fuzzPayload`
// directly.

import Foundation

struct FuzzInner: Codable, Equatable {
    var name: String
    var score: Double?
    var tags: [String]
    var flag: Bool
    var small: Int8
    var wide: UInt64
}

enum FuzzShape: Codable, Equatable {
    case point
    case circle(radius: Double)
    case labeled(String, Int?)
    case nested(FuzzInner)
    case many([FuzzShape])
}

struct FuzzRecord: Codable, Equatable {
    var id: Int
    var title: String?
    var values: [Int]
    var counts: [String: Int]
    var inner: FuzzInner?
    var children: [FuzzInner]
    var shape: FuzzShape
    var blob: Data
    var matrix: [[Double]]
    var maybeNumbers: [Int?]
    var byIndex: [Int: String]
    var floats: [Float]
    var unsigned: [UInt32]
}

/// A recursive type: the payload chooses how deep it goes (bounded by `payloadMaxDepth`).
indirect enum FuzzTree: Codable, Equatable {
    case leaf(Int)
    case node(String, [FuzzTree])
    case wrap(FuzzTree?)
}

/// Hand-written Codable that walks the container APIs synthesized code does not use.
struct FuzzCustom: Codable, Equatable {
    var a: Int
    var b: String?
    var c: [Int16]
    var d: Bool
    var nested: [String: Double]

    enum Keys: String, CodingKey { case a, b, c, d, nested, extra }
    enum NestedKeys: String, CodingKey { case x, y }

    init(a: Int, b: String?, c: [Int16], d: Bool, nested: [String: Double]) {
        self.a = a; self.b = b; self.c = c; self.d = d; self.nested = nested
    }

    func encode(to encoder: any Encoder) throws {
        var outer = encoder.unkeyedContainer()
        try outer.encode(a)
        try outer.encode(b)
        var list = outer.nestedUnkeyedContainer()
        for value in c { try list.encode(value) }
        var keyed = outer.nestedContainer(keyedBy: Keys.self)
        try keyed.encode(d, forKey: .d)
        try keyed.encode(a, forKey: .a)
        try keyed.encodeIfPresent(b, forKey: .b)
        var inner = keyed.nestedContainer(keyedBy: NestedKeys.self, forKey: .nested)
        try inner.encode(nested["x"] ?? 0, forKey: .x)
        try inner.encode(nested["y"] ?? 0, forKey: .y)
        try nested.encode(to: outer.superEncoder())
    }

    init(from decoder: any Decoder) throws {
        var outer = try decoder.unkeyedContainer()
        _ = outer.count
        a = try outer.decode(Int.self)
        b = try outer.decodeIfPresent(String.self)
        var list = try outer.nestedUnkeyedContainer()
        var c: [Int16] = []
        while !list.isAtEnd {
            if try list.decodeNil() { continue }
            c.append(try list.decode(Int16.self))
        }
        self.c = c
        // Keys asked for out of order, plus allKeys / contains: the container's scan path.
        let keyed = try outer.nestedContainer(keyedBy: Keys.self)
        sink(keyed.allKeys.count)
        _ = keyed.contains(.extra)
        sink(try keyed.decode(Int.self, forKey: .a))
        d = try keyed.decode(Bool.self, forKey: .d)
        _ = try keyed.decodeIfPresent(String.self, forKey: .b)
        _ = try? keyed.decodeNil(forKey: .extra)
        let inner = try keyed.nestedContainer(keyedBy: NestedKeys.self, forKey: .nested)
        let y = try inner.decode(Double.self, forKey: .y)
        let x = try inner.decode(Double.self, forKey: .x)
        var nested = try [String: Double](from: outer.superDecoder())
        nested["x"] = x
        nested["y"] = y
        self.nested = nested
        _ = try? outer.decodeNil()
    }
}

/// A class hierarchy decoded through `superDecoder()` of a keyed container.
class FuzzBase: Codable {
    var baseValue: [String]
    init(baseValue: [String]) { self.baseValue = baseValue }
}

final class FuzzDerived: FuzzBase {
    var derivedValue: Int?
    enum Keys: String, CodingKey { case derivedValue }

    init(baseValue: [String], derivedValue: Int?) {
        self.derivedValue = derivedValue
        super.init(baseValue: baseValue)
    }

    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        derivedValue = try container.decodeIfPresent(Int.self, forKey: .derivedValue)
        try super.init(from: container.superDecoder())
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encodeIfPresent(derivedValue, forKey: .derivedValue)
        try super.encode(to: container.superEncoder())
    }
}

/// Catches errors of nested values and goes on decoding with the same decoder, as lenient
/// `init(from:)` implementations do: the decoder must stay consistent after a failed nested value.
struct FuzzTolerant: Codable, Equatable {
    var first: FuzzInner?
    var second: [FuzzShape]?
    var third: Int
    var rest: [FuzzTree]

    enum Keys: String, CodingKey { case first, second, third, rest }

    init(first: FuzzInner?, second: [FuzzShape]?, third: Int, rest: [FuzzTree]) {
        self.first = first; self.second = second; self.third = third; self.rest = rest
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        first = try? container.decode(FuzzInner.self, forKey: .first)
        second = try? container.decode([FuzzShape].self, forKey: .second)
        third = (try? container.decode(Int.self, forKey: .third)) ?? -1
        var list = try container.nestedUnkeyedContainer(forKey: .rest)
        var rest: [FuzzTree] = []
        while !list.isAtEnd, rest.count < 64 {
            guard let tree = try? list.decode(FuzzTree.self) else { break }
            rest.append(tree)
        }
        self.rest = rest
        // Ask again after the failures, in another order.
        if first == nil { first = try? container.decode(FuzzInner.self, forKey: .first) }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(first, forKey: .first)
        try container.encode(second, forKey: .second)
        try container.encode(third, forKey: .third)
        var list = container.nestedUnkeyedContainer(forKey: .rest)
        for tree in rest { try list.encode(tree) }
    }
}

/// Decodes the input as every fuzzed type; returns how many decodes threw (errors are fine).
@discardableResult
func fuzzPayload(_ input: UnsafeRawBufferPointer) -> Int {
    var errors = 0
    func attempt<T: Decodable>(_: T.Type, _ use: (T) -> Int) {
        do {
            sink(use(try BinaryPayloadDecoder().decode(T.self, from: input)))
        } catch {
            errors += 1
        }
    }
    attempt(FuzzRecord.self) { $0.id &+ $0.values.count &+ $0.counts.count }
    attempt([FuzzRecord].self) { $0.count }
    attempt(FuzzInner?.self) { $0?.tags.count ?? 0 }
    attempt(FuzzShape.self) { if case .many(let shapes) = $0 { shapes.count } else { 1 } }
    attempt(FuzzTree.self) { if case .node(_, let children) = $0 { children.count } else { 1 } }
    attempt(FuzzCustom.self) { $0.c.count }
    attempt(FuzzTolerant.self) { $0.rest.count &+ $0.third }
    attempt(FuzzDerived.self) { $0.baseValue.count &+ ($0.derivedValue ?? 0) }
    attempt([String: Int].self) { $0.count }
    attempt(String.self) { $0.utf8.count }
    attempt([Int].self) { $0.count }
    attempt([String?].self) { $0.count }
    attempt([UInt8].self) { $0.count }
    attempt([Double].self) { $0.count }
    attempt(Data.self) { $0.count }
    attempt(Double.self) { Int($0.bitPattern & 0xFF) }
    attempt(Int?.self) { $0 ?? 0 }
    attempt(Int8.self) { Int($0) }
    return errors
}

#if FUZZ_PAYLOAD_ENTRY
@_cdecl("LLVMFuzzerTestOneInput")
public func payloadFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    fuzzPayload(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#endif
