import Foundation

/// One of `pool run`'s input sources: the values after a `:::`, or the records of a file
/// (`::::`, `-a`; `-` is stdin).
struct InputSource {
    enum Origin {
        case values([Bytes])
        case file(Bytes)
    }

    var origin: Origin
    /// `:::+` or `::::+`: paired element by element with the source before it, not combined.
    var linkedToPrevious = false

    /// Whether `token` is spelled like a source separator: three colons, then only colons and
    /// plus signs. One that is not a known separator is a usage error, never an input.
    static func looksLikeSeparator(_ token: Bytes) -> Bool {
        token.starts(with: Array(":::".utf8)) && token.allSatisfy { $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "+") }
    }

    /// Reads the source sections after the command: `::: VALUE…`, `:::+ VALUE…`,
    /// `:::: FILE…` and `::::+ FILE…`.
    /// - Throws: `UsageError` for a separator that is not one of these, or `::::` without a file.
    static func parse(_ tokens: ArraySlice<Bytes>) throws(UsageError) -> [InputSource] {
        var sources: [InputSource] = []
        enum Mode { case values, files(linked: Bool) }
        var mode = Mode.values
        var filesInSection = 0
        for token in tokens {
            if looksLikeSeparator(token) {
                if case .files = mode, filesInSection == 0 { throw UsageError("'::::' needs at least one input file after it") }
                switch String(decoding: token, as: UTF8.self) {
                case ":::": sources.append(InputSource(origin: .values([])))
                    mode = .values
                case ":::+": sources.append(InputSource(origin: .values([]), linkedToPrevious: true))
                    mode = .values
                case "::::": mode = .files(linked: false)
                case "::::+": mode = .files(linked: true)
                default:
                    throw UsageError("'\(String(decoding: token, as: UTF8.self))' is not an input source separator (they are :::, :::+, :::: and ::::+)")
                }
                filesInSection = 0
                continue
            }
            switch mode {
            case .values:
                guard case .values(var values) = sources[sources.count - 1].origin else { continue }
                values.append(token)
                sources[sources.count - 1].origin = .values(values)
            case .files(let linked):
                sources.append(InputSource(origin: .file(token), linkedToPrevious: linked))
                filesInSection += 1
            }
        }
        if case .files = mode, filesInSection == 0 { throw UsageError("'::::' needs at least one input file after it") }
        if sources.first?.linkedToPrevious == true { throw UsageError("':::+' and '::::+' link to a source before them, and there is none") }
        return sources
    }
}

/// The arguments of each job, from the input sources: every combination of them, the last
/// source varying fastest, as GNU parallel does; sources linked with `:::+` (or all of them,
/// with `--link`) go element by element instead.
///
/// The first source is read as the jobs need it (so `tail -f | pool run` works); the others
/// are read whole before the first job, since every one of their values is needed again for
/// each value of the first.
struct JobArguments: IteratorProtocol {
    typealias Record = InputRecords.Record

    /// The first group of sources, one tuple at a time.
    private var first: AnyIterator<[Record]>
    /// The tuples of each later group.
    private let rest: [[[Record]]]
    /// The first group's current tuple, and where each later group is.
    private var current: [Record]?
    private var odometer: [Int] = []
    /// The number of jobs, when every group was read whole up front.
    let count: Int?
    /// `--header`: the name of each value's position (from 1), for `{name}`.
    let names: [Bytes: Int]

    /// Opens every input file (an error names the one that cannot be opened, before any job
    /// runs) and reads all but the first group.
    ///
    /// - Parameters:
    ///   - sources: The sources in order; none means stdin.
    ///   - linkAll: `--link`: pair every source element by element, the shorter ones wrapping
    ///     around; `:::+` pairs a source with the one before it, up to the shorter of them.
    ///   - columns: `--colsep`: splits each input into several values.
    ///   - headerLines: `--header`: how many inputs at the start of each source are its header,
    ///     which names its values (the first of them, split into columns) instead of being run.
    ///   - records: Makes the records of a file (`-` is stdin).
    static func open(
        _ sources: [InputSource], linkAll: Bool, columns: ColumnSplitter? = nil, headerLines: Int = 0,
        records: (Int32) -> InputRecords
    ) throws -> JobArguments {
        let sources = sources.isEmpty ? [InputSource(origin: .file(Array("-".utf8)))] : sources
        // Every file opens before anything is read, so a missing one stops the run at once.
        var inputs: [AnyIterator<Record>] = []
        for source in sources {
            switch source.origin {
            case .values(let values): inputs.append(AnyIterator(values.lazy.map { Record.complete($0) }.makeIterator()))
            case .file(let path): inputs.append(AnyIterator(records(try openInputFile(path))))
            }
        }
        /// An input as the job's values: itself, or its columns.
        func values(_ record: Record) -> [Record] {
            guard let columns, case .complete(let bytes) = record else { return [record] }
            return columns.split(bytes).map(Record.complete)
        }
        var names: [Bytes: Int] = [:]
        if headerLines > 0 {
            var position = 1
            for input in inputs {
                let header = (0..<headerLines).compactMap { _ in input.next() }
                for name in header.first.map(values) ?? [] {
                    if case .complete(let bytes) = name, names[bytes] == nil { names[bytes] = position }
                    position += 1
                }
            }
        }
        let streams = inputs.map { input in AnyIterator { input.next().map(values) } }
        // Groups of linked sources.
        var groups: [[Int]] = []
        for (index, source) in sources.enumerated() {
            if index > 0 && (linkAll || source.linkedToPrevious) { groups[groups.count - 1].append(index) } else { groups.append([index]) }
        }
        func tuples(of group: [Int]) -> [[Record]] {
            let lists = group.map { Array(streams[$0]) }
            guard !lists.contains(where: \.isEmpty) else { return [] }
            let length = linkAll ? lists.map(\.count).max()! : lists.map(\.count).min()!
            return (0..<length).map { row in Array(lists.map { $0[row % $0.count] }.joined()) }
        }
        let rest = groups.dropFirst().map(tuples(of:))
        let firstGroup = groups[0]
        if firstGroup.count == 1, case .file = sources[firstGroup[0]].origin {
            return JobArguments(first: streams[firstGroup[0]], rest: rest, count: nil, names: names)
        }
        let firstTuples = tuples(of: firstGroup)
        let (count, overflow) = rest.reduce((firstTuples.count, false)) { partial, group in
            let product = partial.0.multipliedReportingOverflow(by: group.count)
            return (product.partialValue, partial.1 || product.overflow)
        }
        return JobArguments(first: AnyIterator(firstTuples.makeIterator()), rest: rest, count: overflow ? nil : count, names: names)
    }

    private init(first: AnyIterator<[Record]>, rest: [[[Record]]], count: Int?, names: [Bytes: Int]) {
        self.first = first
        self.rest = rest
        self.count = count
        self.names = names
    }

    mutating func next() -> [Record]? {
        guard !rest.contains(where: \.isEmpty) else { return nil }
        if current == nil || !advance() {
            guard let tuple = first.next() else { return nil }
            current = tuple
            odometer = Array(repeating: 0, count: rest.count)
        }
        var arguments = current!
        for (group, index) in zip(rest, odometer) { arguments += group[index] }
        return arguments
    }

    /// Moves to the next combination of the later groups; false after the last.
    private mutating func advance() -> Bool {
        var position = rest.count - 1
        while position >= 0 {
            odometer[position] += 1
            if odometer[position] < rest[position].count { return true }
            odometer[position] = 0
            position -= 1
        }
        return false
    }
}

/// Opens an input file for reading (`-` is stdin).
/// - Throws: ``FileError`` naming the file and the system's reason.
func openInputFile(_ path: Bytes) throws -> Int32 {
    if path == Array("-".utf8) { return 0 }
    let descriptor = (path + [0]).withUnsafeBufferPointer { buffer in
        buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { open($0, O_RDONLY | O_CLOEXEC) }
    }
    guard descriptor >= 0 else { throw FileError("read the input file", String(decoding: path, as: UTF8.self)) }
    return descriptor
}

/// Several inputs per job (`-n`, `-N`, `-m`, `-X`): groups the input tuples into jobs, whose
/// values are the tuples' values one after another.
struct PackedJobArguments: IteratorProtocol {
    enum Packing {
        /// One input per job.
        case single
        /// `-n N`, `-N N`: up to N inputs per job (0: one input per job, none of it passed).
        case count(Int)
        /// `-m`, `-X`: as many as keep the command within `maximumLength` bytes (`-s`).
        case fit(maximumLength: Int)
    }

    typealias Record = InputRecords.Record

    private var inputs: JobArguments
    private let packing: Packing
    private let template: CommandTemplate
    private var lookahead: [Record]?
    private var sequence = 0
    /// `-m`, `-X` with several job slots: inputs read ahead to count them.
    private var readAhead: [[Record]] = []
    private var readAheadIndex = 0
    /// `-m`, `-X` with several job slots, when the inputs are counted: at most this many per
    /// job, so that they spread evenly over the slots (as in GNU parallel).
    private var mostPerJob = Int.max

    /// The most inputs read ahead to count them for `-m` and `-X`; with more, each command line
    /// is filled.
    static let longestReadAhead = 1 << 16

    /// - Parameter slots: The job slots (`-j`), over which `-m` and `-X` spread the inputs.
    init(_ inputs: JobArguments, packing: Packing, template: CommandTemplate, slots: Int = 1) {
        self.inputs = inputs
        self.packing = packing
        self.template = template
        guard case .fit = packing, slots > 1 else { return }
        var total = inputs.count
        if total == nil {
            while readAhead.count <= Self.longestReadAhead, let input = self.inputs.next() { readAhead.append(input) }
            if readAhead.count <= Self.longestReadAhead { total = readAhead.count }
        }
        if let total, total > 0 { mostPerJob = (total + slots - 1) / slots }
    }

    /// The next input tuple: read ahead, or from the sources.
    private mutating func nextInput() -> [Record]? {
        if readAheadIndex < readAhead.count {
            defer { readAheadIndex += 1 }
            return readAhead[readAheadIndex]
        }
        if !readAhead.isEmpty { readAhead = [] }
        return inputs.next()
    }

    /// The number of jobs, when known before they run.
    var count: Int? {
        switch packing {
        case .single: return inputs.count
        case .count(let size): return inputs.count.map { size == 0 ? $0 : ($0 + size - 1) / size }
        case .fit: return nil
        }
    }

    mutating func next() -> [Record]? {
        guard let first = lookahead ?? nextInput() else { return nil }
        lookahead = nil
        sequence += 1
        switch packing {
        case .single: return first
        case .count(let size):
            guard size > 0 else { return [] }
            var job = first
            for _ in 1..<size {
                guard let more = nextInput() else { break }
                job += more
            }
            return job
        case .fit(let maximumLength):
            var job = first
            var length = template.length(for: Self.values(first), sequence: sequence)
            var count = 1
            while count < mostPerJob, let more = nextInput() {
                let increase = Self.values(more).reduce(0) { $0 + template.lengthIncrease(adding: $1, sequence: sequence) }
                guard length + increase <= maximumLength else {
                    lookahead = more
                    break
                }
                job += more
                length += increase
                count += 1
            }
            return job
        }
    }

    /// The values of records, a too-long one counted as empty (its job fails anyway).
    private static func values(_ records: [Record]) -> [Bytes] {
        records.map { if case .complete(let bytes) = $0 { bytes } else { [] } }
    }
}
