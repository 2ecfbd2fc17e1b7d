import Multiprocessing

/// Bytes of an argument, an input or a file name: Linux promises no encoding, so `pool run`
/// never decodes them and every byte reaches the command as it was given.
typealias Bytes = [UInt8]

/// A command line with GNU parallel's replacement strings, turned into an argument vector for
/// one input.
///
/// It works on bytes: every character with a meaning here (braces, slashes, dots, quotes and
/// the shell's syntax) is ASCII, and a byte below 0x80 never occurs inside a multi-byte UTF-8
/// character, so text in any encoding passes through unchanged.
struct CommandTemplate {
    let words: [Bytes]
    /// Run through `/bin/sh -c`: asked for with `--shell`, or implied by a single word with
    /// spaces or shell syntax in it.
    let usesShell: Bool

    init(words: [Bytes], forceShell: Bool) {
        self.words = words
        let shellSyntax = Set(" \t\n|&;<>()$`\\\"'*?[]#~=%".utf8)
        usesShell = forceShell || (words.count == 1 && words[0].contains(where: shellSyntax.contains))
    }

    /// Whether any word contains a replacement string; if none does, the input is appended.
    var hasReplacement: Bool {
        words.contains { word in word.indices.contains { Replacement.parse(word[$0...]) != nil } }
    }

    /// The argument vector for `input`, the `sequence`-th job (1-based).
    func arguments(for input: Bytes, sequence: Int) -> [Bytes] {
        guard usesShell else {
            var expanded = words.map { Self.expand($0, input: input, sequence: sequence) }
            if !hasReplacement { expanded.append(input) }
            return expanded
        }
        // In a shell, every substituted input is quoted for the place it lands in (outside
        // quotes, inside '…', inside "…"), so an input can never become code.
        var line = Self.expandShell(Array(words.joined(separator: [UInt8(ascii: " ")])), input: input, sequence: sequence)
        if !hasReplacement { line += [UInt8(ascii: " ")] + Self.shellQuoted(input) }
        return [Array("/bin/sh".utf8), Array("-c".utf8), line]
    }

    /// The command as a person would type it, for `--dry-run`, the job log and `--results`.
    func display(for input: Bytes, sequence: Int) -> Bytes {
        let arguments = arguments(for: input, sequence: sequence)
        let placeholder = Array(CommandJob.slotPlaceholder.utf8)
        let shown = Array("{%}".utf8)
        if usesShell { return arguments[2].replacing(placeholder, with: shown) }
        return Array(arguments.map { Self.displayQuoted($0.replacing(placeholder, with: shown)) }.joined(separator: [UInt8(ascii: " ")]))
    }

    /// GNU parallel's replacement strings.
    enum Replacement: CaseIterable {
        /// `{}`: the input.
        case input
        /// `{.}`: the input without its last extension.
        case withoutExtension
        /// `{/}`: the input's last path component.
        case basename
        /// `{//}`: the input's directory.
        case dirname
        /// `{/.}`: the last path component without its extension.
        case basenameWithoutExtension
        /// `{#}`: the job's sequence number.
        case sequence
        /// `{%}`: the worker's slot number.
        case slot

        var token: Bytes {
            switch self {
            case .input: Array("{}".utf8)
            case .withoutExtension: Array("{.}".utf8)
            case .basename: Array("{/}".utf8)
            case .dirname: Array("{//}".utf8)
            case .basenameWithoutExtension: Array("{/.}".utf8)
            case .sequence: Array("{#}".utf8)
            case .slot: Array("{%}".utf8)
            }
        }

        /// The replacement string `text` starts with, and its length.
        static func parse(_ text: ArraySlice<UInt8>) -> (Replacement, length: Int)? {
            guard text.first == UInt8(ascii: "{") else { return nil }
            // Longest first: `{//}` before `{/}`.
            for replacement in byLength where text.starts(with: replacement.token) {
                return (replacement, replacement.token.count)
            }
            return nil
        }

        private static let byLength = allCases.sorted { $0.token.count > $1.token.count }

        func value(input: Bytes, sequence: Int) -> Bytes {
            switch self {
            case .input: input
            case .withoutExtension: CommandTemplate.removingExtension(input)
            case .basename: CommandTemplate.basename(input)
            case .dirname: CommandTemplate.dirname(input)
            case .basenameWithoutExtension: CommandTemplate.removingExtension(CommandTemplate.basename(input))
            case .sequence: Array(String(sequence).utf8)
            case .slot: Array(CommandJob.slotPlaceholder.utf8)
            }
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

    private static func expand(_ word: Bytes, input: Bytes, sequence: Int) -> Bytes {
        guard word.contains(UInt8(ascii: "{")) else { return word }
        var result: Bytes = []
        var index = word.startIndex
        while index < word.endIndex {
            if let (replacement, length) = Replacement.parse(word[index...]) {
                result += replacement.value(input: input, sequence: sequence)
                index += length
            } else {
                result.append(word[index])
                index += 1
            }
        }
        return result
    }

    /// Expands a shell command line, tracking the quoting state the way /bin/sh reads it.
    private static func expandShell(_ line: Bytes, input: Bytes, sequence: Int) -> Bytes {
        var result: Bytes = []
        var state = Quoting.unquoted
        var index = line.startIndex
        while index < line.endIndex {
            if let (replacement, length) = Replacement.parse(line[index...]) {
                result += state.apply(replacement.value(input: input, sequence: sequence))
                index += length
                continue
            }
            let byte = line[index]
            result.append(byte)
            switch (state, byte) {
            case (.unquoted, UInt8(ascii: "'")): state = .singleQuoted
            case (.singleQuoted, UInt8(ascii: "'")): state = .unquoted
            case (.unquoted, UInt8(ascii: "\"")): state = .doubleQuoted
            case (.doubleQuoted, UInt8(ascii: "\"")): state = .unquoted
            case (.unquoted, UInt8(ascii: "\\")), (.doubleQuoted, UInt8(ascii: "\\")):
                // A backslash takes the next byte literally.
                if index + 1 < line.endIndex {
                    index += 1
                    result.append(line[index])
                }
            default: break
            }
            index += 1
        }
        return result
    }

    static func basename(_ path: Bytes) -> Bytes {
        guard let slash = path.lastIndex(of: UInt8(ascii: "/")) else { return path }
        return Array(path[(slash + 1)...])
    }

    static func dirname(_ path: Bytes) -> Bytes {
        guard let slash = path.lastIndex(of: UInt8(ascii: "/")) else { return Array(".".utf8) }
        return slash == path.startIndex ? Array("/".utf8) : Array(path[..<slash])
    }

    /// `dir/file.tar.gz` → `dir/file.tar` (only the last extension, and not a leading dot).
    static func removingExtension(_ path: Bytes) -> Bytes {
        let name = basename(path)
        guard let dot = name.lastIndex(of: UInt8(ascii: ".")), dot != name.startIndex else { return path }
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
