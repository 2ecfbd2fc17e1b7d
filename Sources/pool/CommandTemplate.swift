import Multiprocessing

/// A command line with GNU parallel's replacement strings, turned into an argument vector for
/// one input.
struct CommandTemplate {
    let words: [String]
    /// Run through `/bin/sh -c`: asked for with `--shell`, or implied by a single word with
    /// spaces or shell syntax in it.
    let usesShell: Bool

    init(words: [String], forceShell: Bool) {
        self.words = words
        let shellSyntax = Set(" \t\n|&;<>()$`\\\"'*?[]#~=%")
        usesShell = forceShell || (words.count == 1 && words[0].contains(where: { shellSyntax.contains($0) }))
    }

    /// Whether any word contains a replacement string; if none does, the input is appended.
    var hasReplacement: Bool {
        words.contains { word in Self.replacements.contains { word.contains($0) } }
    }

    static let replacements = ["{}", "{.}", "{/}", "{//}", "{/.}", "{#}", "{%}"]

    /// The argument vector for `input`, the `sequence`-th job (1-based).
    func arguments(for input: String, sequence: Int) -> [String] {
        // In a shell, every substituted input is quoted, so an input can never become code.
        let shell = usesShell
        let quote: (String) -> String = { shell ? Self.shellQuoted($0) : $0 }
        var expanded = words.map { Self.expand($0, input: input, sequence: sequence, quote: quote) }
        if !hasReplacement { expanded.append(quote(input)) }
        return usesShell ? ["/bin/sh", "-c", expanded.joined(separator: " ")] : expanded
    }

    /// The command as a person would type it, for `--dry-run`.
    func display(for input: String, sequence: Int) -> String {
        let arguments = arguments(for: input, sequence: sequence)
        if usesShell { return arguments[2].replacingOccurrences(of: CommandJob.slotPlaceholder, with: "{%}") }
        return arguments.map { Self.displayQuoted($0.replacingOccurrences(of: CommandJob.slotPlaceholder, with: "{%}")) }.joined(separator: " ")
    }

    private static func expand(_ word: String, input: String, sequence: Int, quote: (String) -> String) -> String {
        guard word.contains("{") else { return word }
        var result = ""
        var rest = Substring(word)
        while let open = rest.firstIndex(of: "{") {
            result += rest[..<open]
            let tail = rest[open...]
            if let token = replacements.sorted(by: { $0.count > $1.count }).first(where: { tail.hasPrefix($0) }) {
                result += value(of: token, input: input, sequence: sequence, quote: quote)
                rest = tail.dropFirst(token.count)
            } else {
                result += "{"
                rest = tail.dropFirst()
            }
        }
        return result + rest
    }

    private static func value(of token: String, input: String, sequence: Int, quote: (String) -> String) -> String {
        switch token {
        case "{}": return quote(input)
        case "{.}": return quote(removingExtension(input))
        case "{/}": return quote(basename(input))
        case "{//}": return quote(dirname(input))
        case "{/.}": return quote(removingExtension(basename(input)))
        case "{#}": return String(sequence)
        case "{%}": return CommandJob.slotPlaceholder
        default: return token
        }
    }

    static func basename(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    static func dirname(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// `dir/file.tar.gz` → `dir/file.tar` (only the last extension, and not a leading dot).
    static func removingExtension(_ path: String) -> String {
        let name = basename(path)
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return path }
        let removed = name.distance(from: dot, to: name.endIndex)
        return String(path.dropLast(removed))
    }

    /// Single-quoted for `/bin/sh`: safe for any bytes.
    static func shellQuoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    static func displayQuoted(_ text: String) -> String {
        let plain = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")
        return !text.isEmpty && text.allSatisfy({ plain.contains($0) }) ? text : shellQuoted(text)
    }
}
