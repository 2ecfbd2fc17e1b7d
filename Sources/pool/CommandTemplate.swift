import Multiprocessing

/// Bytes of an argument, an input or a file name: Linux promises no encoding, so `pool run`
/// never decodes them and every byte reaches the command as it was given.
typealias Bytes = [UInt8]

/// A command line with GNU parallel's replacement strings, turned into an argument vector for
/// one job's arguments (one per input source, or several with argument packing).
///
/// It works on bytes: every character with a meaning here (braces, slashes, dots, quotes and
/// the shell's syntax) is ASCII, and a byte below 0x80 never occurs inside a multi-byte UTF-8
/// character, so text in any encoding passes through unchanged. The command is parsed once;
/// each job only fills in the pieces.
struct CommandTemplate {
    /// One word of the command (or, under a shell, the whole line): literal bytes and
    /// replacement strings.
    typealias Word = [Piece]

    enum Piece: Equatable {
        case literal(Bytes)
        /// A replacement string, and the shell quoting in force where it stands.
        case replacement(Replacement, Quoting)
    }

    let words: [Word]
    /// Run through `/bin/sh -c`: asked for with `--shell`, or implied by a single word with
    /// spaces or shell syntax in it. Then `words` is the one line.
    let usesShell: Bool
    /// Whether any word contains a replacement string; if none does, the arguments are appended.
    let hasReplacement: Bool
    /// `-X`: a word holding `{}` is repeated for each of the job's values (`x{}y` with `a b`
    /// gives `xay xby`) instead of being split between them. Not under a shell, where the
    /// line has no words of its own yet; there `-X` packs like `-m`.
    let repeatsWords: Bool

    /// The spellings of the replacement strings: GNU parallel's, or others chosen with `-I`
    /// and its relatives.
    struct Spellings {
        var input = Array("{}".utf8)
        var withoutExtension = Array("{.}".utf8)
        var basename = Array("{/}".utf8)
        var dirname = Array("{//}".utf8)
        var basenameWithoutExtension = Array("{/.}".utf8)
        var sequence = Array("{#}".utf8)
        var slot = Array("{%}".utf8)
    }

    /// `--header`'s names of the values' positions (from 1), for `{name}`.
    let names: [Bytes: Int]

    /// - Parameters:
    ///   - names: `--header`: `{name}` stands for the value at this position (from 1).
    ///   - isCommand: False for a template that makes text, not a command (`--tagstring`):
    ///     then no word means a shell.
    init(
        words: [Bytes], forceShell: Bool, spellings: Spellings = Spellings(), repeatsWords: Bool = false,
        names: [Bytes: Int] = [:], isCommand: Bool = true
    ) {
        self.repeatsWords = repeatsWords
        self.names = names
        let shellSyntax = Set(" \t\n|&;<>()$`\\\"'*?[]#~=%".utf8)
        usesShell = isCommand && (forceShell || (words.count == 1 && words[0].contains(where: shellSyntax.contains)))
        let parser = Parser(spellings: spellings, names: names)
        if usesShell {
            self.words = [parser.parse(Array(words.joined(separator: [UInt8(ascii: " ")])), quoting: .unquoted)]
        } else {
            self.words = words.map { parser.parse($0, quoting: .none) }
        }
        hasReplacement = self.words.contains { $0.contains { if case .replacement = $0 { true } else { false } } }
    }

    /// The argument vector for a job with `arguments` (one per input source, or several with
    /// `-n`), the `sequence`-th job (1-based).
    func arguments(for arguments: [Bytes], sequence: Int) -> [Bytes] {
        guard usesShell else {
            var expanded: [Bytes] = []
            for word in words {
                if repeatsWords && Self.holdsAll(word) {
                    for value in arguments { Self.expand(word, arguments: [value], sequence: sequence, into: &expanded) }
                } else {
                    Self.expand(word, arguments: arguments, sequence: sequence, into: &expanded)
                }
            }
            if !hasReplacement { expanded += arguments }
            return expanded
        }
        // In a shell, every substituted argument is quoted for the place it lands in (outside
        // quotes, inside '…', inside "…"), so an input can never become code.
        var line: Bytes = []
        for piece in words[0] {
            switch piece {
            case .literal(let bytes): line += bytes
            case .replacement(let replacement, let quoting):
                let values = replacement.values(arguments: arguments, sequence: sequence)
                line += Array(values.map(quoting.apply).joined(separator: [UInt8(ascii: " ")]))
            }
        }
        if !hasReplacement {
            for argument in arguments { line += [UInt8(ascii: " ")] + Self.shellQuoted(argument) }
        }
        return [Array("/bin/sh".utf8), Array("-c".utf8), line]
    }

    /// The length of the command for `arguments`, as `-s` counts it: every argument with its
    /// terminating NUL (under a shell, the line).
    func length(for arguments: [Bytes], sequence: Int) -> Int {
        self.arguments(for: arguments, sequence: sequence).reduce(0) { $0 + $1.count + 1 }
    }

    /// How much longer the command grows when `value` joins a job that has values already
    /// (`-m`, `-X`): once for each place the job's values go, with a separator.
    func lengthIncrease(adding value: Bytes, sequence: Int) -> Int {
        guard hasReplacement else {
            return (usesShell ? Self.shellQuoted(value).count : value.count) + 1
        }
        var increase = 0
        for word in words {
            if !usesShell && repeatsWords && Self.holdsAll(word) {
                var expanded: [Bytes] = []
                Self.expand(word, arguments: [value], sequence: sequence, into: &expanded)
                increase += expanded.reduce(0) { $0 + $1.count + 1 }
                continue
            }
            for case .replacement(let replacement, let quoting) in word where replacement.source == .all {
                increase += quoting.apply(replacement.modifier.apply(value)).count + 1
            }
        }
        return increase
    }

    /// Whether `word` holds `{}` or one of its modified forms.
    private static func holdsAll(_ word: Word) -> Bool {
        word.contains { if case .replacement(let replacement, _) = $0 { replacement.source == .all } else { false } }
    }

    /// The command as a person would type it, for `--dry-run`, the job log and `--results`.
    func display(for arguments: [Bytes], sequence: Int) -> Bytes {
        let vector = self.arguments(for: arguments, sequence: sequence)
        let placeholder = Array(CommandJob.slotPlaceholder.utf8)
        let shown = Array("{%}".utf8)
        if usesShell { return vector[2].replacing(placeholder, with: shown) }
        return Array(vector.map { Self.displayQuoted($0.replacing(placeholder, with: shown)) }.joined(separator: [UInt8(ascii: " ")]))
    }

    /// Expands one word (not under a shell). A replacement string that stands for several
    /// arguments (`{}` with two sources, or with `-n 2`) splits the word there, as the shell
    /// splits GNU parallel's space-joined arguments: `pre{}post` with `a b` gives `prea` and
    /// `bpost`. A word with no replacement is one argument, even when empty.
    private static func expand(_ word: Word, arguments: [Bytes], sequence: Int, into result: inout [Bytes]) {
        var current: Bytes = []
        for piece in word {
            switch piece {
            case .literal(let bytes): current += bytes
            case .replacement(let replacement, _):
                let values = replacement.values(arguments: arguments, sequence: sequence)
                for (index, value) in values.enumerated() {
                    if index > 0 {
                        result.append(current)
                        current = []
                    }
                    current += value
                }
            }
        }
        result.append(current)
    }

    /// A replacement string: what it stands for, and how it changes each value.
    struct Replacement: Equatable {
        enum Source: Equatable {
            /// `{}` and its modified forms: every argument of the job.
            case all
            /// `{N}` (from 1) or `{-N}` (from the end): one argument; empty if there is none.
            case position(Int)
            /// `{#}`: the job's sequence number.
            case sequence
            /// `{%}`: the worker's slot number.
            case slot
        }

        enum Modifier: Equatable {
            case none
            /// `.`: without the last extension.
            case withoutExtension
            /// `/`: the last path component.
            case basename
            /// `//`: the directory.
            case dirname
            /// `/.`: the last path component without its extension.
            case basenameWithoutExtension

            func apply(_ value: Bytes) -> Bytes {
                switch self {
                case .none: value
                case .withoutExtension: CommandTemplate.removingExtension(value)
                case .basename: CommandTemplate.basename(value)
                case .dirname: CommandTemplate.dirname(value)
                case .basenameWithoutExtension: CommandTemplate.removingExtension(CommandTemplate.basename(value))
                }
            }
        }

        var source: Source
        var modifier: Modifier = .none

        func values(arguments: [Bytes], sequence: Int) -> [Bytes] {
            switch source {
            case .all: return arguments.map(modifier.apply)
            case .position(let position):
                let index = position > 0 ? position - 1 : arguments.count + position
                return [arguments.indices.contains(index) ? modifier.apply(arguments[index]) : []]
            case .sequence: return [Array(String(sequence).utf8)]
            case .slot: return [Array(CommandJob.slotPlaceholder.utf8)]
            }
        }
    }

    /// Finds replacement strings in the command's words.
    private struct Parser {
        /// The fixed spellings, longest first so that `{//}` wins over `{/}`.
        let fixed: [(Bytes, Replacement)]
        /// `--header`'s column names.
        let names: [Bytes: Int]

        init(spellings: Spellings, names: [Bytes: Int]) {
            self.names = names
            fixed = [
                (spellings.input, Replacement(source: .all)),
                (spellings.withoutExtension, Replacement(source: .all, modifier: .withoutExtension)),
                (spellings.basename, Replacement(source: .all, modifier: .basename)),
                (spellings.dirname, Replacement(source: .all, modifier: .dirname)),
                (spellings.basenameWithoutExtension, Replacement(source: .all, modifier: .basenameWithoutExtension)),
                (spellings.sequence, Replacement(source: .sequence)),
                (spellings.slot, Replacement(source: .slot)),
            ].filter { !$0.0.isEmpty }.sorted { $0.0.count > $1.0.count }
        }

        /// The replacement string `text` starts with, and its length.
        func replacement(at text: ArraySlice<UInt8>) -> (Replacement, length: Int)? {
            for (spelling, replacement) in fixed where text.starts(with: spelling) {
                return (replacement, spelling.count)
            }
            if let found = Self.positional(at: text) { return found }
            if !names.isEmpty, text.first == UInt8(ascii: "{"), let close = text.dropFirst().firstIndex(of: UInt8(ascii: "}")),
               let position = names[Array(text[(text.startIndex + 1)..<close])] {
                return (Replacement(source: .position(position)), close + 1 - text.startIndex)
            }
            return nil
        }

        /// `{N}`, `{-N}`, and each with `.`, `/`, `//` or `/.` after the number.
        private static func positional(at text: ArraySlice<UInt8>) -> (Replacement, length: Int)? {
            guard text.first == UInt8(ascii: "{") else { return nil }
            var index = text.startIndex + 1
            let negative = index < text.endIndex && text[index] == UInt8(ascii: "-")
            if negative { index += 1 }
            let digitsStart = index
            while index < text.endIndex, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(text[index]), index - digitsStart < 9 { index += 1 }
            guard index > digitsStart, let number = Int(String(decoding: text[digitsStart..<index], as: UTF8.self)), number > 0,
                  let close = text[index...].prefix(4).firstIndex(of: UInt8(ascii: "}"))
            else { return nil }
            let modifier: Replacement.Modifier
            switch String(decoding: text[index..<close], as: UTF8.self) {
            case "": modifier = .none
            case ".": modifier = .withoutExtension
            case "/": modifier = .basename
            case "//": modifier = .dirname
            case "/.": modifier = .basenameWithoutExtension
            default: return nil
            }
            return (Replacement(source: .position(negative ? -number : number), modifier: modifier), close + 1 - text.startIndex)
        }

        /// Parses one word (`quoting` is `.none`) or a shell command line (`.unquoted`: the
        /// quoting state is then tracked the way /bin/sh reads the line, so that each
        /// replacement is quoted for where it stands).
        func parse(_ line: Bytes, quoting: Quoting) -> Word {
            var pieces: Word = []
            var literal: Bytes = []
            var state = quoting
            var index = line.startIndex
            while index < line.endIndex {
                if let (replacement, length) = replacement(at: line[index...]) {
                    if !literal.isEmpty { pieces.append(.literal(literal)) }
                    literal = []
                    pieces.append(.replacement(replacement, state))
                    index += length
                    continue
                }
                let byte = line[index]
                literal.append(byte)
                switch (state, byte) {
                case (.unquoted, UInt8(ascii: "'")): state = .singleQuoted
                case (.singleQuoted, UInt8(ascii: "'")): state = .unquoted
                case (.unquoted, UInt8(ascii: "\"")): state = .doubleQuoted
                case (.doubleQuoted, UInt8(ascii: "\"")): state = .unquoted
                case (.unquoted, UInt8(ascii: "\\")), (.doubleQuoted, UInt8(ascii: "\\")):
                    // A backslash takes the next byte literally.
                    if index + 1 < line.endIndex {
                        index += 1
                        literal.append(line[index])
                    }
                default: break
                }
                index += 1
            }
            if !literal.isEmpty || pieces.isEmpty { pieces.append(.literal(literal)) }
            return pieces
        }
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

        func apply(_ value: Bytes) -> Bytes {
            switch self {
            case .none: return value
            case .unquoted: return CommandTemplate.shellQuoted(value)
            case .singleQuoted: return value.replacing([UInt8(ascii: "'")], with: Array("'\\''".utf8))
            case .doubleQuoted:
                var escaped: Bytes = []
                escaped.reserveCapacity(value.count)
                for byte in value {
                    if Self.specialInDoubleQuotes.contains(byte) { escaped.append(UInt8(ascii: "\\")) }
                    escaped.append(byte)
                }
                return escaped
            }
        }

        private static let specialInDoubleQuotes = Set("$`\"\\".utf8)
    }

    static func basename(_ path: Bytes) -> Bytes {
        guard let slash = path.lastIndex(of: UInt8(ascii: "/")) else { return path }
        return Array(path[(slash + 1)...])
    }

    static func dirname(_ path: Bytes) -> Bytes {
        guard let slash = path.lastIndex(of: UInt8(ascii: "/")) else { return Array(".".utf8) }
        return slash == path.startIndex ? Array("/".utf8) : Array(path[..<slash])
    }

    /// `dir/file.tar.gz` → `dir/file.tar`: from the last dot of the last path component on,
    /// as GNU parallel does (so `.hidden` → nothing, and `dir.d/file` is left as it is).
    static func removingExtension(_ path: Bytes) -> Bytes {
        let name = basename(path)
        guard let dot = name.lastIndex(of: UInt8(ascii: ".")) else { return path }
        return Array(path.dropLast(name.count - dot))
    }

    /// Single-quoted for `/bin/sh`: safe for any bytes.
    static func shellQuoted(_ text: Bytes) -> Bytes {
        [UInt8(ascii: "'")] + text.replacing([UInt8(ascii: "'")], with: Array("'\\''".utf8)) + [UInt8(ascii: "'")]
    }

    private static let plain = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%".utf8)

    static func displayQuoted(_ text: Bytes) -> Bytes {
        !text.isEmpty && text.allSatisfy(plain.contains) ? text : shellQuoted(text)
    }
}
