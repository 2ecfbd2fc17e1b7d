/// Foundation's `Data` and `URL`, recognised without linking Foundation.
///
/// The library imports neither Foundation nor FoundationEssentials: loading FoundationEssentials
/// costs every worker about 2 MiB of resident memory before it runs a job. Yet `Data` deserves
/// its bulk encoding, and in JSON `Data` and `URL` should look as `JSONEncoder` writes them. So
/// the types are looked up by mangled name, which finds them exactly when the program has
/// loaded Foundation (it then can hold such values), and they are handled through the standard
/// library protocols they conform to.
enum FoundationTypes {
    /// `Data`'s type, if the program has loaded Foundation.
    static let data: ObjectIdentifier? = lookUp("20FoundationEssentials4DataV", "10Foundation4DataV")

    /// `URL`'s type, if the program has loaded Foundation.
    static let url: ObjectIdentifier? = lookUp("20FoundationEssentials3URLV", "10Foundation3URLV")

    private static func lookUp(_ names: String...) -> ObjectIdentifier? {
        for name in names {
            // Foundation re-exports FoundationEssentials' types where both exist; the type
            // that is found is the one values carry, whichever module name found it.
            if let type = _typeByName(name) { return ObjectIdentifier(type) }
        }
        return nil
    }

    /// Whether `T` is Foundation's `Data`.
    @inline(__always)
    static func isData<T>(_: T.Type) -> Bool {
        guard let data else { return false }
        return ObjectIdentifier(T.self) == data
    }

    /// Whether `T` is Foundation's `URL`.
    static func isURL<T>(_: T.Type) -> Bool {
        guard let url else { return false }
        return ObjectIdentifier(T.self) == url
    }

    /// Calls `body` with the bytes of a `Data` (or any other collection of bytes).
    static func withBytes<Result>(of value: Any, _ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        guard let collection = value as? any Collection<UInt8> else {
            preconditionFailure("\(type(of: value)) is not a collection of bytes")
        }
        return try withContiguousBytes(of: collection, body)
    }

    private static func withContiguousBytes<C: Collection<UInt8>, Result>(
        of collection: C, _ body: (UnsafeRawBufferPointer) throws -> Result
    ) rethrows -> Result {
        if let result = try collection.withContiguousStorageIfAvailable({ try body(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return try Array(collection).withUnsafeBytes(body)
    }

    /// A value of `type`, a `Data` (or any other replaceable collection of bytes), holding
    /// a copy of `bytes`.
    static func makeBytes<T>(_ type: T.Type, copying bytes: UnsafeRawBufferPointer) -> T {
        guard let collectionType = T.self as? any RangeReplaceableCollection<UInt8>.Type else {
            preconditionFailure("\(T.self) is not a collection of bytes")
        }
        return makeCollection(collectionType, copying: bytes) as! T
    }

    private static func makeCollection<C: RangeReplaceableCollection<UInt8>>(
        _: C.Type, copying bytes: UnsafeRawBufferPointer
    ) -> C {
        C(bytes)
    }
}
