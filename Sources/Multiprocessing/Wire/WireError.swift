/// A violation of the wire protocol found while reading a stream: what was wrong, in words a
/// person can act on.
struct WireError: Error, Equatable, CustomStringConvertible {
    var description: String

    init(_ description: String) { self.description = description }

    static func truncated(_ what: String, needed: Int, remaining: Int) -> WireError {
        WireError("truncated \(what): needed \(needed) bytes, \(remaining) remain")
    }
}
