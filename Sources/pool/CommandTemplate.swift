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
        guard usesShell else {
            var expanded = words.map { Self.expand($0, input: input, sequence: sequence, quoting: .none) }
            if !hasReplacement { expanded.append(input) }
            return expanded
        }
        // In a shell, every substituted input is quoted for the place it lands in (outside
        // quotes, inside '…', inside "…"), so an input can never become code.
        var line = Self.expandShell(words.joined(separator: " "), input: input, sequence: sequence)
        if !hasReplacement { line += " " + Self.shellQuoted(input) }
        return ["/bin/sh", "-c", line]
    }

    /// The command as a person would type it, for `--dry-run`.
    func display(for input: String, sequence: Int) -> String {
        let arguments = arguments(for: input, sequence: sequence)
        if usesShell { return arguments[2].replacingOccurrences(of: CommandJob.slotPlaceholder, with: "{%}") }
        return arguments.map { Self.displayQuoted($0.replacingOccurrences(of: CommandJob.slotPlaceholder, with: "{%}")) }.joined(separator: " ")
    }

    /// How a substituted value must be quoted where it lands.
    enum Quoting {
        /// Not in a shell: the value is one argument as it is.
        case none
        /// Unquoted shell text: wrap it in single quotes.
        case unquoted
        /// Inside '…': end the quote, add the value as '\'' pieces, reopen.
        case singleQuoted
        /// Inside "…": backslash the four characters that are special there.
        case doubleQuoted

        func apply(_ value: String) -> String {
            switch self {
            case .none: return value
            case .unquoted: return CommandTemplate.shellQuoted(value)
            case .singleQuoted: return value.replacingOccurrences(of: "'", with: "'\\''")
            case .doubleQuoted:
                var escaped = ""
                for character in value {
                    if "$`\"\\".contains(character) { escaped.append("\\") }
                    escaped.append(character)
                }
                return escaped
            }
        }
    }

    private static func expand(_ word: String, input: String, sequence: Int, quoting: Quoting) -> String {
        guard word.contains("{") else { return word }
        var result = ""
        var rest = Substring(word)
        while let open = rest.firstIndex(of: "{") {
            result += rest[..<open]
            let tail = rest[open...]
            if let token = replacementToken(at: tail) {
                result += quoting.apply(value(of: token, input: input, sequence: sequence))
                rest = tail.dropFirst(token.count)
            } else {
                result += "{"
                rest = tail.dropFirst()
            }
        }
        return result + rest
    }

    /// Expands a shell command line, tracking the quoting state the way /bin/sh reads it.
    private static func expandShell(_ line: String, input: String, sequence: Int) -> String {
        var result = ""
        var state = Quoting.unquoted
        var index = line.startIndex
        while index < line.endIndex {
            let character = line[index]
            if character == "{", let token = replacementToken(at: line[index...]) {
                result += state.apply(value(of: token, input: input, sequence: sequence))
                index = line.index(index, offsetBy: token.count)
                continue
            }
            result.append(character)
            switch (state, character) {
            case (.unquoted, "'"): state = .singleQuoted
            case (.singleQuoted, "'"): state = .unquoted
            case (.unquoted, "\""): state = .doubleQuoted
            case (.doubleQuoted, "\""): state = .unquoted
            case (.unquoted, "\\"), (.doubleQuoted, "\\"):
                // A backslash takes the next character literally.
                let next = line.index(after: index)
                if next < line.endIndex {
                    result.append(line[next])
                    index = next
                }
            default: break
            }
            index = line.index(after: index)
        }
        return result
    }

    private static func replacementToken(at text: Substring) -> String? {
        replacements.sorted(by: { $0.count > $1.count }).first(where: { text.hasPrefix($0) })
    }

    private static func value(of token: String, input: String, sequence: Int) -> String {
        switch token {
        case "{}": return input
        case "{.}": return removingExtension(input)
        case "{/}": return basename(input)
        case "{//}": return dirname(input)
        case "{/.}": return removingExtension(basename(input))
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
