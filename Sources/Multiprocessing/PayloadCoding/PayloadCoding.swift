/// Encodes and decodes payloads in either codec, so the rest of the library names a codec tag
/// rather than an encoder type.
@usableFromInline
enum PayloadCoding {
    @usableFromInline
    static func encode<Value: Encodable>(_ value: Value, codec: PayloadCodec, into bytes: inout [UInt8]) throws {
        switch codec {
        case .binary:
            try BinaryPayloadEncoder().encode(value, into: &bytes)
        case .json:
            try JSONPayloadEncoder.encode(value, into: &bytes)
        }
    }

    @usableFromInline
    static func decode<Value: Decodable>(_ type: Value.Type, codec: PayloadCodec, from payload: UnsafeRawBufferPointer) throws -> Value {
        switch codec {
        case .binary:
            return try BinaryPayloadDecoder().decode(type, from: payload)
        case .json:
            return try JSONPayloadDecoder.decode(type, from: payload)
        }
    }

    /// ``decode(_:codec:from:)``, with `Int` decoded by a direct call when the caller is
    /// specialised (a job's entry point): the commonest input of tiny jobs skips the generic
    /// scalar dispatch.
    @inlinable
    static func decodeSpecialised<Value: Decodable>(_ type: Value.Type, codec: PayloadCodec, from payload: UnsafeRawBufferPointer) throws -> Value {
        if Value.self == Int.self && codec == .binary {
            return unsafeBitCast(try decodeBinaryInt(from: payload), to: Value.self)
        }
        return try decode(type, codec: codec, from: payload)
    }

    /// An `Int` in the binary codec: exactly what `decode(Int.self, codec: .binary, from:)` does.
    @usableFromInline
    static func decodeBinaryInt(from payload: UnsafeRawBufferPointer) throws -> Int {
        try BinaryPayloadDecoder().decode(Int.self, from: payload)
    }

    /// A one-line account of a coding error, with the coding path where there is one.
    @usableFromInline
    static func describe(_ error: any Error) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.isEmpty ? "the top level" : codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        }
        switch error {
        case DecodingError.typeMismatch(let type, let context):
            return "type mismatch at \(path(context.codingPath)): expected \(type); \(context.debugDescription)"
        case DecodingError.valueNotFound(let type, let context):
            return "missing value at \(path(context.codingPath)): expected \(type); \(context.debugDescription)"
        case DecodingError.keyNotFound(let key, let context):
            return "missing key \"\(key.stringValue)\" at \(path(context.codingPath)); \(context.debugDescription)"
        case DecodingError.dataCorrupted(let context):
            var text = "corrupt data at \(path(context.codingPath)): \(context.debugDescription)"
            if let underlying = context.underlyingError { text += " (\(underlying))" }
            return text
        case EncodingError.invalidValue(let value, let context):
            return "cannot encode \(value) at \(path(context.codingPath)): \(context.debugDescription)"
        default:
            return String(describing: error)
        }
    }
}
