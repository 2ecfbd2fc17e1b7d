/// Resolution of a relative URI reference against a base (RFC 3986, section 5.2), for writing
/// a `URL` made relative to another as the absolute string `JSONEncoder` writes, without
/// Foundation.
enum URIReference {
    private struct Components {
        var scheme: Substring?
        var authority: Substring?
        var path: Substring
        var query: Substring?
        var fragment: Substring?

        /// RFC 3986, appendix B.
        init(_ text: String) {
            var rest = text[...]
            if let colon = rest.firstIndex(where: { ":/?#".contains($0) }), rest[colon] == ":",
               let first = rest.first, first.isASCII, first.isLetter,
               rest[..<colon].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) }) {
                scheme = rest[..<colon]
                rest = rest[rest.index(after: colon)...]
            }
            if rest.hasPrefix("//") {
                rest = rest.dropFirst(2)
                let end = rest.firstIndex { "/?#".contains($0) } ?? rest.endIndex
                authority = rest[..<end]
                rest = rest[end...]
            }
            if let hash = rest.firstIndex(of: "#") {
                fragment = rest[rest.index(after: hash)...]
                rest = rest[..<hash]
            }
            if let question = rest.firstIndex(of: "?") {
                query = rest[rest.index(after: question)...]
                rest = rest[..<question]
            }
            path = rest
        }
    }

    /// The target URI of `reference` resolved against `base` (RFC 3986, 5.2.2).
    static func resolve(_ reference: String, against base: String) -> String {
        let r = Components(reference)
        let b = Components(base)
        var target = Components("")
        if let scheme = r.scheme {
            target = r
            target.path = removeDotSegments(r.path)[...]
            target.scheme = scheme
        } else {
            if r.authority != nil {
                target.authority = r.authority
                target.path = removeDotSegments(r.path)[...]
                target.query = r.query
            } else {
                if r.path.isEmpty {
                    target.path = b.path
                    target.query = r.query ?? b.query
                } else {
                    if r.path.hasPrefix("/") {
                        target.path = removeDotSegments(r.path)[...]
                    } else {
                        target.path = removeDotSegments(merge(base: b, path: r.path))[...]
                    }
                    target.query = r.query
                }
                target.authority = b.authority
            }
            target.scheme = b.scheme
        }
        target.fragment = r.fragment
        // 5.3: recomposition.
        var result = ""
        if let scheme = target.scheme { result += scheme + ":" }
        if let authority = target.authority { result += "//" + authority }
        result += target.path
        if let query = target.query { result += "?" + query }
        if let fragment = target.fragment { result += "#" + fragment }
        return result
    }

    /// 5.2.3.
    private static func merge(base: Components, path: Substring) -> String {
        if base.authority != nil && base.path.isEmpty { return "/" + path }
        guard let slash = base.path.lastIndex(of: "/") else { return String(path) }
        return String(base.path[...slash]) + path
    }

    /// 5.2.4: removes "." and ".." segments.
    private static func removeDotSegments(_ path: some StringProtocol) -> String {
        var input = Substring(path)
        var output: [Substring] = []  // each starts with "/" unless it is the first, relative one
        while !input.isEmpty {
            if input.hasPrefix("../") {
                input = input.dropFirst(3)
            } else if input.hasPrefix("./") {
                input = input.dropFirst(2)
            } else if input.hasPrefix("/./") {
                input = input.dropFirst(2)
            } else if input == "/." {
                input = "/"
            } else if input.hasPrefix("/../") {
                input = input.dropFirst(3)
                if !output.isEmpty { output.removeLast() }
            } else if input == "/.." {
                input = "/"
                if !output.isEmpty { output.removeLast() }
            } else if input == "." || input == ".." {
                input = ""
            } else {
                let start = input.hasPrefix("/") ? input.index(after: input.startIndex) : input.startIndex
                let end = input[start...].firstIndex(of: "/") ?? input.endIndex
                output.append(input[..<end])
                input = input[end...]
            }
        }
        return output.joined()
    }
}
