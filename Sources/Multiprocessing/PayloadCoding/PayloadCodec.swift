/// How a payload's bytes encode its value: the codec byte a frame carries before each payload.
///
/// It belongs to payload coding, not to framing: ``PayloadCoding`` switches on it, and the wire
/// layer only stores and checks the byte.
@usableFromInline
enum PayloadCodec: UInt8, Sendable {
    /// The compact binary format of ``BinaryPayloadEncoder``.
    case binary = 0
    /// UTF-8 JSON, as `JSONEncoder` writes it (``JSONPayloadEncoder``).
    case json = 1
}
