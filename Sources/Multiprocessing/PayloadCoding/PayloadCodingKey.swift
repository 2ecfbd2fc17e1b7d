/// The coding keys the payload codec makes up itself: array indices in coding paths, and
/// `"super"` for `superEncoder()` / `superDecoder()`.
struct PayloadCodingKey: CodingKey {
    private let storedString: String?
    let intValue: Int?

    // Index keys are pushed for every element of an array of structs; building the
    // "Index 3" string only when someone reads it keeps that push allocation-free.
    var stringValue: String { storedString ?? "Index \(intValue ?? 0)" }

    init(stringValue: String) {
        storedString = stringValue
        intValue = nil
    }

    init(intValue: Int) {
        storedString = nil
        self.intValue = intValue
    }

    init(index: Int) {
        self.init(intValue: index)
    }

    /// The key `superEncoder()` and `superDecoder()` use, as in Foundation's coders.
    static let superKey = PayloadCodingKey(stringValue: "super")
}

/// The deepest nesting of containers the encoder writes and the decoder accepts.
///
/// Decoding recurses once per nested value, so without a limit a hostile payload of a few
/// kilobytes could overflow the stack; 512 levels stays far below any thread's stack size.
let payloadMaxDepth = 512
