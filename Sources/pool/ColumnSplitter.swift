/// `--colsep REGEX`: splits an input into columns, which become the job's values `{1}`, `{2}`….
///
/// Inputs are bytes, and a regular expression matches text: a line in UTF-8 is matched as
/// text, and any other line byte by byte (each byte read as the character of the same number),
/// so a separator in ASCII splits every line, whatever its encoding, and no byte is changed.
struct ColumnSplitter {
    private enum Matcher {
        /// A separator of one byte: split without a regular expression.
        case byte(UInt8)
        case expression(Regex<AnyRegexOutput>)
    }

    private let matcher: Matcher

    /// - Throws: `UsageError` if `pattern` is not a regular expression, or matches nothing but
    ///   empty strings.
    init(pattern: String) throws(UsageError) {
        let escapes: [String: UInt8] = [#"\t"#: UInt8(ascii: "\t"), #"\|"#: UInt8(ascii: "|"), #"\."#: UInt8(ascii: ".")]
        let plain = Set(",;:\t -_/=@#%&~!".utf8)
        if let byte = escapes[pattern] {
            matcher = .byte(byte)
        } else if pattern.utf8.count == 1, let byte = pattern.utf8.first, plain.contains(byte) {
            matcher = .byte(byte)
        } else {
            do {
                matcher = .expression(try Regex(pattern))
            } catch {
                throw UsageError("--colsep needs a regular expression; '\(pattern)' is not one: \(error)")
            }
            if (try? Regex(pattern).wholeMatch(in: "")) != nil {
                throw UsageError("--colsep '\(pattern)' matches an empty string, so it cannot separate columns")
            }
        }
    }

    /// The columns of `input`, without the separators.
    func split(_ input: Bytes) -> [Bytes] {
        switch matcher {
        case .byte(let byte):
            return input.split(separator: byte, omittingEmptySubsequences: false).map(Array.init)
        case .expression(let expression):
            // Where each match starts and ends, in bytes of the input.
            var separators: [Range<Int>] = []
            if let text = String(validating: input, as: UTF8.self) {
                for match in text.matches(of: expression) where !match.range.isEmpty {
                    let lower = text.utf8.distance(from: text.startIndex, to: match.range.lowerBound)
                    separators.append(lower..<(lower + text.utf8.distance(from: match.range.lowerBound, to: match.range.upperBound)))
                }
            } else {
                var text = ""
                text.unicodeScalars.append(contentsOf: input.map { Unicode.Scalar($0) })
                for match in text.matches(of: expression) where !match.range.isEmpty {
                    let lower = text.unicodeScalars.distance(from: text.startIndex, to: match.range.lowerBound)
                    separators.append(lower..<(lower + text.unicodeScalars.distance(from: match.range.lowerBound, to: match.range.upperBound)))
                }
            }
            var columns: [Bytes] = []
            var start = 0
            for separator in separators {
                columns.append(Array(input[start..<separator.lowerBound]))
                start = separator.upperBound
            }
            columns.append(Array(input[start...]))
            return columns
        }
    }
}
