import Foundation
import Multiprocessing

/// `--header` with `--pipe` or `--pipepart`: what is taken from the start of the input and
/// put before every block (GNU parallel's semantics: `:` is one line, a number that many
/// lines, anything else a regular expression matched at the start of the input).
enum PipeHeader {
    case lines(Int)
    /// A regular expression (kept as text: a compiled one cannot be shared between tasks).
    case expression(String)

    /// - Throws: `UsageError` if `text` is neither `:`, a number of lines nor a regular expression.
    init(parsing text: String) throws(UsageError) {
        if text == ":" {
            self = .lines(1)
        } else if let count = Int(text) {
            guard (1...1_000_000).contains(count) else { throw UsageError("--header takes a number of lines from 1 to 1000000, not '\(text)'") }
            self = .lines(count)
        } else {
            do {
                _ = try Regex(text)
                self = .expression(text)
            } catch {
                throw UsageError("--header takes ':', a number of lines or a regular expression; '\(text)' is none of them: \(error)")
            }
        }
    }

    /// The length of the header at the start of `input`; nil if it is not there (yet).
    /// Bytes are matched as in `--colsep`: each byte as the character of the same number.
    func length(in input: ArraySlice<UInt8>) -> Int? {
        switch self {
        case .lines(let count):
            var end = input.startIndex
            for _ in 0..<count {
                guard let newline = input[end...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
                end = newline + 1
            }
            return end - input.startIndex
        case .expression(let pattern):
            guard let expression = try? Regex(pattern).matchingSemantics(.unicodeScalar) else { return nil }
            var text = ""
            text.unicodeScalars.append(contentsOf: input.map { Unicode.Scalar($0) })
            guard let match = try? expression.prefixMatch(in: text) else { return nil }
            return text.unicodeScalars.distance(from: text.startIndex, to: match.range.upperBound)
        }
    }

    /// Reads from the start of `descriptor` until the header is found (or the input ends,
    /// when there is none), at most `limit` bytes.
    /// - Returns: The header, and what was read after it.
    func read(from descriptor: Int32, limit: Int) -> (header: Bytes, rest: Bytes) {
        var buffer: Bytes = []
        while buffer.count < limit {
            if let length = length(in: buffer[...]) { return (Array(buffer[..<length]), Array(buffer[length...])) }
            guard appendRead(from: descriptor, upTo: Swift.min(1 << 16, limit - buffer.count), to: &buffer) else { break }
        }
        if let length = length(in: buffer[...]) { return (Array(buffer[..<length]), Array(buffer[length...])) }
        return ([], buffer)
    }
}

/// `--pipepart`: regular files cut into blocks by offsets, never read through: only the bytes
/// around each cut are read, to find where a record ends. Each block is a range of a file
/// that the worker hands to the command.
///
/// As in GNU parallel, a block is at least `--block` bytes: it ends at the first record
/// boundary (`--recend` followed by `--recstart`) after that size, or at the end of the file.
struct PipePartBlocks: IteratorProtocol {
    struct File {
        /// The path given to the worker (absolute, as the worker may not share our directory).
        let path: Bytes
        let size: Int
        /// `--header`: read from the file's start, sent before each of its blocks.
        let header: Bytes
    }

    private var files: [File]
    private let blockSize: Int
    private let boundary: Bytes
    private let recordEndLength: Int
    /// The file being cut, its descriptor (opened when its first block is cut, so that many
    /// files do not hold many descriptors), and where its next block starts.
    private var current = 0
    private var descriptor: Int32?
    private var position: Int

    /// Checks each file and reads its header; keeps none open.
    /// - Throws: ``FileError`` for a file that cannot be opened, `UsageError` for one that is not
    ///   a regular file.
    init(paths: [Bytes], blockSize: Int, recordEnd: Bytes, recordStart: Bytes, header: PipeHeader?) throws {
        var files: [File] = []
        // The directory as bytes: its name need not be UTF-8.
        var directory = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&directory, directory.count) != nil else { throw FileError("find", "the current directory") }
        let here = directory.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        for path in paths {
            let descriptor = try openInputFile(path)
            defer { if descriptor != 0 { close(descriptor) } }
            var status = stat()
            let name = String(decoding: path, as: UTF8.self)
            guard descriptor != 0, fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
                throw UsageError("--pipepart cuts regular files by offsets; \(name) is not one (use --pipe for a pipe or stdin)")
            }
            let found = header.map { $0.read(from: descriptor, limit: Self.longestHeader) }
            let absolute = path.first == UInt8(ascii: "/") ? path : here + [UInt8(ascii: "/")] + path
            files.append(File(path: absolute, size: Int(status.st_size), header: found?.header ?? []))
        }
        self.files = files
        self.blockSize = blockSize
        boundary = recordEnd + recordStart
        recordEndLength = recordEnd.count
        position = files.first?.header.count ?? 0
    }

    /// The longest header read.
    static let longestHeader = 1 << 20

    /// The next block: the header's bytes (if any) and the range of the file after them.
    mutating func next() -> (header: Bytes, range: CommandJob.FileRange)? {
        while current < files.count {
            let file = files[current]
            if position < file.size, descriptor == nil {
                descriptor = try? openInputFile(file.path)
                if descriptor == nil {
                    Output.write("pool: cannot read \(String(decoding: file.path, as: UTF8.self)) any more (\(String(cString: strerror(errno)))); its blocks do not run\n", to: .standardError)
                    position = file.size
                }
            }
            guard position < file.size, let descriptor else {
                if let descriptor { close(descriptor) }
                descriptor = nil
                current += 1
                if current < files.count { position = files[current].header.count }
                continue
            }
            let end = cut(file, descriptor: descriptor, after: position)
            defer { position = end }
            return (file.header, CommandJob.FileRange(path: file.path, offset: position, byteCount: end - position))
        }
        return nil
    }

    /// Where the block that starts at `start` ends: the first boundary at or after
    /// `start + blockSize`, found by reading from there, or the end of the file.
    private func cut(_ file: File, descriptor: Int32, after start: Int) -> Int {
        let from = start + blockSize
        guard from < file.size else { return file.size }
        guard !boundary.isEmpty else { return from }
        var window: Bytes = []
        var windowStart = from
        while windowStart + window.count < file.size {
            // Read on; keep the last bytes that could begin a boundary cut off by the read.
            let wanted = Swift.min(1 << 17, file.size - windowStart - window.count)
            let oldCount = window.count
            window += Bytes(repeating: 0, count: wanted)
            let got = window.withUnsafeMutableBytes { buffer in
                pread(descriptor, buffer.baseAddress! + oldCount, wanted, off_t(windowStart + oldCount))
            }
            guard got > 0 else { return file.size }
            window.removeLast(wanted - got)
            if let match = window.firstRange(of: boundary) { return windowStart + match.lowerBound + recordEndLength }
            let keep = Swift.min(window.count, boundary.count - 1)
            windowStart += window.count - keep
            window = Array(window.suffix(keep))
        }
        return file.size
    }
}
