import Foundation
import Testing

/// The README and the DocC articles show code that must compile. Each Swift block is kept in a
/// source file under `Examples/`, which the package builds; these tests fail when a block of the
/// Markdown is not found there, so the text cannot drift from the compiled code.
@Suite struct DocumentationTests {
    @Test(arguments: Documentation.markdownFiles)
    func everySwiftBlockIsInACompiledExample(_ markdownFile: String) throws {
        let examples = try Documentation.exampleSources()
        let blocks = try Documentation.codeBlocks(in: markdownFile)
        for block in blocks where block.language == "swift" {
            let found = examples.contains { Documentation.contains($0.lines, block.lines) }
            #expect(
                found,
                "the Swift block at \(markdownFile):\(block.line) is not in any file under Examples/; put it in an example there, word for word (its indentation may differ as a whole)"
            )
        }
    }

    /// A block without a language would not be checked, so every fence names one (`text` for
    /// byte layouts, `sh` for commands).
    @Test(arguments: Documentation.markdownFiles)
    func everyCodeBlockNamesItsLanguage(_ markdownFile: String) throws {
        for block in try Documentation.codeBlocks(in: markdownFile) {
            #expect(!block.language.isEmpty, "the code block at \(markdownFile):\(block.line) names no language")
        }
    }

    /// An example that is not a target would never be compiled.
    @Test func everyExampleFolderIsATarget() throws {
        let manifest = try String(contentsOfFile: Documentation.root + "/Package.swift", encoding: .utf8)
        for folder in try FileManager.default.contentsOfDirectory(atPath: Documentation.root + "/Examples") {
            #expect(manifest.contains("path: \"Examples/\(folder)\""), "Examples/\(folder) is not the path of a target in Package.swift")
        }
    }

    /// The README's two programs work together: the coordinator runs a job type that it shares,
    /// through the `PrimeJobs` library, with a separate worker binary.
    @Test func coordinatorUsesAWorkerBinaryThroughASharedJobType() async throws {
        let (status, output) = try await onDedicatedThread {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Binaries.directory + "/prime-coordinator")
            process.arguments = [Binaries.directory + "/prime-worker"]
            let standardOutput = Pipe()
            process.standardOutput = standardOutput
            try process.run()
            let bytes = standardOutput.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: bytes, as: UTF8.self))
        }
        #expect(status == 0)
        #expect(output == "primes below 100,000: 9592\n")
    }

    @Test func blocksMatchWholeLinesUpToIndentation() {
        let file: [Substring] = ["func f() {", "    let a = 1", "", "    let b = 2", "}"]
        #expect(Documentation.contains(file, ["let a = 1", "", "let b = 2"]))
        #expect(Documentation.contains(file, ["func f() {", "    let a = 1"]))
        #expect(!Documentation.contains(file, ["let a = 1", "let b = 2"]))
        #expect(!Documentation.contains(file, ["a = 1"]))
        #expect(!Documentation.contains(file, ["    let a = 1", "let b = 2"]))
    }
}

/// Reads the package's Markdown and example sources.
enum Documentation {
    /// The package's root folder: this file is `Tests/MultiprocessingTests/DocumentationTests.swift`.
    static let root: String = {
        var path = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        path.removeLast(3)
        return path.joined(separator: "/")
    }()

    /// The README and every DocC article, relative to ``root``.
    static let markdownFiles: [String] = {
        let catalog = "Sources/Multiprocessing/Multiprocessing.docc"
        let articles = (try? FileManager.default.contentsOfDirectory(atPath: root + "/" + catalog)) ?? []
        return ["README.md"] + articles.filter { $0.hasSuffix(".md") }.sorted().map { catalog + "/" + $0 }
    }()

    /// A fenced code block: its language (the fence's info string), first line number and lines.
    struct CodeBlock {
        var language: String
        var line: Int
        var lines: [Substring]
    }

    static func codeBlocks(in markdownFile: String) throws -> [CodeBlock] {
        let text = try String(contentsOfFile: root + "/" + markdownFile, encoding: .utf8)
        var blocks: [CodeBlock] = []
        var open: CodeBlock?
        for (index, line) in lines(of: text).enumerated() {
            guard line.hasPrefix("```") else {
                open?.lines.append(line)
                continue
            }
            if let block = open {
                blocks.append(block)
                open = nil
            } else {
                open = CodeBlock(language: String(line.dropFirst(3)).trimmingCharacters(in: .whitespaces), line: index + 1, lines: [])
            }
        }
        #expect(open == nil, "\(markdownFile) ends inside a code block")
        return blocks
    }

    /// Every Swift file under `Examples/`, as lines.
    static func exampleSources() throws -> [(path: String, lines: [Substring])] {
        let folder = root + "/Examples"
        let paths = FileManager.default.enumerator(atPath: folder)?.compactMap { $0 as? String } ?? []
        return try paths.filter { $0.hasSuffix(".swift") }.map { path in
            (path, lines(of: try String(contentsOfFile: folder + "/" + path, encoding: .utf8)))
        }
    }

    /// Whether `block` is a run of consecutive lines of `file`, every non-empty line indented by
    /// the same extra prefix of spaces (a fragment shown at the margin may sit inside a function).
    static func contains(_ file: [Substring], _ block: [Substring]) -> Bool {
        guard let first = block.first, file.count >= block.count else { return false }
        return (0...(file.count - block.count)).contains { start in
            guard file[start].hasSuffix(first) else { return false }
            let indentation = file[start].dropLast(first.count)
            guard indentation.allSatisfy({ $0 == " " }) else { return false }
            return zip(file[start...], block).allSatisfy { fileLine, blockLine in
                blockLine.isEmpty ? fileLine.isEmpty : fileLine == indentation + blockLine
            }
        }
    }

    private static func lines(of text: String) -> [Substring] {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        return lines
    }
}
