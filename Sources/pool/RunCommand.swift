import Foundation
import Multiprocessing

/// `pool run`: options, then a command, then input sources (`:::`, `::::`; or `-a`; or stdin).
struct RunCommand {
    var jobs = ProcessInfo.processInfo.activeProcessorCount
    var keepOrder = false
    var tag = false
    var timeout: Duration?
    var retries = 0
    var dryRun = false
    var nullSeparated = false
    var forceShell = false
    var workerPath: String?
    var jobLogPath: String?
    var resume = false
    var resumeFailed = false
    var resultsDirectory: String?
    var halt: HaltPolicy?
    var lineBuffer = false
    /// `--max-output`: the most output one command may write.
    var outputLimit: Int?
    /// The command's words, as bytes: they may hold file names, which need not be UTF-8.
    var command: [Bytes] = []
    /// The input sources, `-a` files first; none means stdin.
    var sources: [InputSource] = []
    /// `-d`: what ends an input in stdin and input files, instead of a newline.
    var delimiter: Bytes?
    /// `-n`, `-N`, `-m`, `-X`: how many inputs make one job.
    var packing = PackedJobArguments.Packing.single
    /// `-X`: repeat the word around `{}` for each value.
    var repeatsWords = false
    /// `-s`: the longest command `-m` and `-X` make.
    var maximumCommandLength = RunCommand.longestInput
    /// `--tagstring`: the tag, with replacement strings.
    var tagString: Bytes?
    /// `--delay`: the least time between two jobs' starts.
    var delay: Duration?
    /// `--nice`: the niceness commands run with.
    var niceness: Int?
    /// `--shuf`: run the jobs in a random order.
    var shuffle = false
    /// `--eta`, `--progress`: which progress line to draw.
    var progressStyle: ProgressBar.Style?
    /// `--pipe`: stdin is cut into blocks, each one job's stdin.
    var pipe = false
    /// `--pipepart`: the blocks are ranges of the `-a` files, which workers read themselves.
    var pipePart = false
    /// `--cat` or `--fifo`: a block goes to the command as a file named by `{}`.
    var blockPassing: CommandJob.InputPassing?
    /// `--header` with `--pipe`: what precedes every block.
    var pipeHeader: PipeHeader?
    /// `--header` as given, until the options are all read.
    private var headerText: String?
    /// `--memfree SIZE`: no job starts while less memory than this is available.
    var memoryFloor: Int?
    /// No command given: each job's values, joined by spaces, are the command, run by /bin/sh.
    var inputsAreCommands = false
    /// `--block`: a `--pipe` block's size.
    var blockSize = 1 << 20
    /// `--recend`, `--recstart`: where `--pipe` may cut.
    var recordEnd = Array("\n".utf8)
    var recordStart: Bytes = []
    /// `-N` with `--pipe`: records per block.
    var recordsPerBlock: Int?
    /// `--colsep`: split each input into columns.
    var columnSeparator: String?
    /// `--header`: how many inputs at the start of each source name its values.
    var headerLines = 0
    /// `--link`: pair all sources element by element instead of combining them.
    var linkAll = false
    /// `-I` and its relatives: other spellings of the replacement strings.
    var spellings = CommandTemplate.Spellings()
    /// `-S`, `--slf`, `--ssh`, `--slurm`: other machines to run on.
    var hostOptions = HostOptions()
    /// `--transferfile`, `--return`, `--cleanup`, `--trc`, `--workdir`.
    var remoteFiles = RemoteFileOptions()

    /// Parses the arguments after `run`, byte for byte as the kernel passed them.
    /// - Throws: `UsageError` naming the bad option.
    init(arguments: [Bytes]) throws(UsageError) {
        var rest = arguments[...]
        func value(for option: String) throws(UsageError) -> String {
            guard let value = rest.popFirst() else { throw UsageError("option \(option) needs a value") }
            // Numbers and keywords: text that is not UTF-8 is wrong anyway, and says so below.
            return String(decoding: value, as: UTF8.self)
        }
        func bytes(for option: String) throws(UsageError) -> Bytes {
            guard let value = rest.popFirst() else { throw UsageError("option \(option) needs a value") }
            return value
        }
        /// A replacement string's new spelling: not empty.
        func spelling(for option: String) throws(UsageError) -> Bytes {
            let value = try bytes(for: option)
            guard !value.isEmpty else { throw UsageError("option \(option) needs a replacement string that is not empty") }
            return value
        }
        var argumentFiles: [InputSource] = []
        var recordEndGiven = false
        /// A path option's value. The library takes paths as text, so one that is not UTF-8 is
        /// refused rather than changed.
        func path(for option: String) throws(UsageError) -> String {
            guard let value = rest.popFirst() else { throw UsageError("option \(option) needs a value") }
            guard let path = String(validating: value, as: UTF8.self) else {
                throw UsageError("\(option) needs a path in UTF-8; '\(String(decoding: value, as: UTF8.self))' is not")
            }
            return path
        }
        parsing: while let first = rest.first {
            let argument = String(decoding: first, as: UTF8.self)
            guard argument.hasPrefix("-"), argument != "-" else { break }
            rest.removeFirst()
            if try hostOptions.parse(argument, value: { () throws(UsageError) in try value(for: argument) }) { continue }
            if try remoteFiles.parse(argument, value: { () throws(UsageError) in try bytes(for: argument) }) { continue }
            switch argument {
            case "--": break parsing
            case "-k", "--keep-order": keepOrder = true
            case "--tag": tag = true
            case "--dry-run": dryRun = true
            case "-0", "--null": nullSeparated = true
            case "--shell": forceShell = true
            case "-j", "--jobs": jobs = try Self.parseJobs(try value(for: argument))
            case "--timeout":
                timeout = try Self.parseTimeout(try value(for: argument))
            case "--retries":
                let text = try value(for: argument)
                guard let count = Int(text), count >= 0 else { throw UsageError("--retries needs a whole number, not '\(text)'") }
                retries = count
            case "--worker": workerPath = try path(for: argument)
            case "--joblog": jobLogPath = try path(for: argument)
            case "--resume": resume = true
            case "--resume-failed": resumeFailed = true
            case "--results": resultsDirectory = try path(for: argument)
            case "--halt": halt = try HaltPolicy(parsing: try value(for: argument))
            case "--bar": progressStyle = .bar
            case "--eta": progressStyle = .eta
            case "--progress": progressStyle = .progress
            case "--tagstring":
                tagString = try bytes(for: argument)
                tag = true
            case "--delay":
                delay = try Self.parseDuration(try value(for: argument), for: argument, allowingZero: true)
            case "--nice":
                let text = try value(for: argument)
                guard let value = Int(text), (-20...19).contains(value) else {
                    throw UsageError("--nice needs a niceness from -20 to 19, not '\(text)'")
                }
                niceness = value
            case "--shuf": shuffle = true
            case "--line-buffer": lineBuffer = true
            case "--max-output": outputLimit = try Self.parseSize(try value(for: argument), for: argument)
            case "-a", "--arg-file": argumentFiles.append(InputSource(origin: .file(try bytes(for: argument))))
            case "--link", "--xapply": linkAll = true
            case "-d", "--delimiter": delimiter = try Self.parseDelimiter(try bytes(for: argument))
            case "-C", "--colsep":
                let pattern = try value(for: argument)
                _ = try ColumnSplitter(pattern: pattern)
                columnSeparator = pattern
            case "--header":
                let text = try value(for: argument)
                headerText = text
                // As in GNU parallel, without --pipe a header that is not a number is the
                // first line.
                headerLines = Int(text) ?? 1
            case "-n", "--max-args", "-N", "--max-replace-args":
                let text = try value(for: argument)
                guard let count = Int(text), (0...Self.largestPack).contains(count) else {
                    throw UsageError("\(argument) needs a whole number from 0 to \(Self.largestPack), not '\(text)'")
                }
                packing = .count(count)
                if argument == "-N" || argument == "--max-replace-args" { recordsPerBlock = count }
            case "--pipe", "--spreadstdin": pipe = true
            case "--pipepart":
                pipe = true
                pipePart = true
            case "--cat": blockPassing = .temporaryFile
            case "--fifo": blockPassing = .namedPipe
            case "--memfree": memoryFloor = try Self.parseSize(try value(for: argument), for: argument, largest: Self.largestMemoryFloor)
            case "--block", "--block-size":
                blockSize = try Self.parseSize(try value(for: argument), for: argument, largest: Self.largestBlock)
            case "--recend":
                recordEnd = try Self.parseDelimiter(try bytes(for: argument), allowingEmpty: true)
                recordEndGiven = true
            case "--recstart": recordStart = try Self.parseDelimiter(try bytes(for: argument), allowingEmpty: true)
            case "-m": packing = .fit(maximumLength: 0)
            case "-X":
                packing = .fit(maximumLength: 0)
                repeatsWords = true
            case "-s", "--max-chars":
                let text = try value(for: argument)
                guard let count = Int(text), (1...Self.longestCommand).contains(count) else {
                    throw UsageError("\(argument) needs a number of bytes from 1 to \(Self.longestCommand), not '\(text)'")
                }
                maximumCommandLength = count
            case "-I", "--replace": spellings.input = try spelling(for: argument)
            case "--extensionreplace", "--er": spellings.withoutExtension = try spelling(for: argument)
            case "--basenamereplace", "--bnr": spellings.basename = try spelling(for: argument)
            case "--dirnamereplace", "--dnr": spellings.dirname = try spelling(for: argument)
            case "--basenameextensionreplace", "--bner": spellings.basenameWithoutExtension = try spelling(for: argument)
            case "--seqreplace": spellings.sequence = try spelling(for: argument)
            case "--slotreplace": spellings.slot = try spelling(for: argument)
            default:
                if argument.hasPrefix("-j"), argument.count > 2 {
                    jobs = try Self.parseJobs(String(argument.dropFirst(2)))
                } else {
                    throw UsageError("unknown option '\(argument)' (see 'pool help run')")
                }
            }
        }
        // The command ends at the first word spelled like a source separator; a misspelled one
        // is an error there, never a word of the command or an input.
        let separator = rest.firstIndex(where: InputSource.looksLikeSeparator) ?? rest.endIndex
        command = Array(rest[..<separator])
        sources = argumentFiles + (try InputSource.parse(rest[separator...]))
        if command.isEmpty {
            // As in GNU parallel, the inputs are the commands; but a bare `pool run` at a
            // terminal would only wait for them, so it is told what is missing instead.
            guard !sources.isEmpty || isatty(0) == 0, !pipe else { throw UsageError("no command given (see 'pool help run')") }
            inputsAreCommands = true
        }
        // As in GNU parallel, a record start alone needs no record end before it.
        if !recordStart.isEmpty && !recordEndGiven { recordEnd = [] }
        if shuffle && pipe { throw UsageError("--shuf does not go with --pipe or --pipepart (as in GNU parallel): blocks run in input order") }
        if let headerText {
            pipeHeader = try PipeHeader(parsing: headerText)
            if case .lines(let count)? = pipeHeader { headerLines = count }
        }
        if blockPassing != nil && !pipe { throw UsageError("--cat and --fifo go with --pipe or --pipepart") }
        if !remoteFiles.isEmpty && pipe {
            throw UsageError("--transferfile, --return, --cleanup and --workdir are for jobs with input values, not --pipe blocks")
        }
        if pipePart && hostOptions.namesHosts {
            throw UsageError("--pipepart has workers read the file where they run: it does not go with -S, --slf or --slurm (use --pipe)")
        }
        if pipePart {
            guard !sources.isEmpty, sources.allSatisfy({ if case .file(let path) = $0.origin { path != Array("-".utf8) } else { false } }) else {
                throw UsageError("--pipepart cuts files given with -a FILE or :::: FILE (not ::: values or stdin)")
            }
            if recordsPerBlock != nil { throw UsageError("--pipepart cuts by --block size; -N needs --pipe") }
        } else if pipe {
            guard sources.isEmpty else { throw UsageError("--pipe reads its input from stdin; it takes no ::: or :::: sources") }
            guard !recordEnd.isEmpty || !recordStart.isEmpty else { throw UsageError("--recend and --recstart cannot both be empty") }
            if recordsPerBlock == 0 { throw UsageError("-N with --pipe needs at least 1 record per block") }
        }
        if case .fit = packing { packing = .fit(maximumLength: maximumCommandLength) }
        if (resume || resumeFailed) && jobLogPath == nil { throw UsageError("--resume and --resume-failed need --joblog FILE") }
    }

    /// `-d DELIM`: bytes, with `\n`, `\t`, `\r`, `\0` and `\\` for a newline, a tab, a carriage
    /// return, a NUL and a backslash.
    static func parseDelimiter(_ text: Bytes, allowingEmpty: Bool = false) throws(UsageError) -> Bytes {
        var result: Bytes = []
        var index = text.startIndex
        while index < text.endIndex {
            guard text[index] == UInt8(ascii: "\\"), index + 1 < text.endIndex else {
                result.append(text[index])
                index += 1
                continue
            }
            switch text[index + 1] {
            case UInt8(ascii: "n"): result.append(UInt8(ascii: "\n"))
            case UInt8(ascii: "t"): result.append(UInt8(ascii: "\t"))
            case UInt8(ascii: "r"): result.append(UInt8(ascii: "\r"))
            case UInt8(ascii: "0"): result.append(0)
            case UInt8(ascii: "\\"): result.append(UInt8(ascii: "\\"))
            default: result += text[index...(index + 1)]
            }
            index += 2
        }
        guard !result.isEmpty || allowingEmpty else { throw UsageError("-d needs a delimiter of at least one byte") }
        return result
    }

    /// The largest `--max-output`: a frame's length field holds at most 4 GiB.
    static let largestOutputLimit = 3 << 30

    /// `SIZE`: bytes, or with a suffix K, M, G, T, P or E (powers of 1024; k, m, g, t, p, e:
    /// of 1000), above zero and at most
    /// ``largestOutputLimit``.
    static func parseSize(_ text: String, for option: String, largest: Int = largestOutputLimit) throws(UsageError) -> Int {
        // As in GNU parallel: capitals are powers of 1024, small letters of 1000.
        let units: [Character: Int] = [
            "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60,
            "k": 1_000, "m": 1_000_000, "g": 1_000_000_000, "t": 1_000_000_000_000, "p": 1_000_000_000_000_000, "e": 1_000_000_000_000_000_000,
        ]
        var digits = Substring(text)
        var unit = 1
        if let last = digits.last, let multiplier = units[last] {
            unit = multiplier
            digits = digits.dropLast()
        }
        guard let count = Int(digits), count > 0, count <= largest / unit else {
            throw UsageError("\(option) needs a size above 0 and at most \(largest >> 20)M (bytes, or with K, M, G, T, P or E; k, m, ... for powers of 1000), not '\(text)'")
        }
        return count * unit
    }

    /// The longest `--timeout`: about 31 years, far below what a `Duration` of nanoseconds holds.
    static let longestTimeout = 1e9

    /// `SECS`: a finite number of seconds above zero and at most ``longestTimeout``.
    static func parseTimeout(_ text: String) throws(UsageError) -> Duration {
        try parseDuration(text, for: "--timeout", allowingZero: false)
    }

    /// A finite number of seconds, above zero (or from zero) and at most ``longestTimeout``.
    static func parseDuration(_ text: String, for option: String, allowingZero: Bool) throws(UsageError) -> Duration {
        guard let seconds = Double(text), seconds.isFinite, allowingZero ? seconds >= 0 : seconds > 0, seconds <= longestTimeout else {
            throw UsageError("\(option) needs a number of seconds \(allowingZero ? "from 0" : "above 0") and at most \(Int(longestTimeout)), not '\(text)'")
        }
        return .nanoseconds(Int64((seconds * 1e9).rounded(.up)))
    }

    /// The largest `-j N%`: a hundred workers per core.
    static let largestJobsPercentage = 10_000.0

    /// `N`, or `N%` of the cores (at least one).
    static func parseJobs(_ text: String) throws(UsageError) -> Int {
        if text.hasSuffix("%") {
            guard let percent = Double(text.dropLast()), percent.isFinite, percent > 0, percent <= largestJobsPercentage else {
                throw UsageError("-j N% needs N above 0 and at most \(Int(largestJobsPercentage)), not '\(text)'")
            }
            return max(1, Int((Double(ProcessInfo.processInfo.activeProcessorCount) * percent / 100).rounded()))
        }
        guard let count = Int(text), count > 0 else { throw UsageError("-j needs a positive number or a percentage, not '\(text)'") }
        return count
    }

    /// The largest `--block`: a block travels to the worker in one frame, with its last record.
    static let largestBlock = 128 << 20

    /// The largest `--memfree`: 1 EiB.
    static let largestMemoryFloor = 1 << 60

    /// The most inputs `-n` packs into one job.
    static let largestPack = 1 << 20

    /// The largest `-s`: the kernel's limit on a command's arguments and environment together
    /// (`ARG_MAX` on Linux).
    static let longestCommand = 2 << 20

    /// The longest input `pool run` takes: the kernel's limit on one argument
    /// (`MAX_ARG_STRLEN`, 128 KiB with its terminating NUL).
    static let longestInput = (128 << 10) - 1

    /// The command and each job's arguments, from the input sources (the command's `{name}`s
    /// come from their headers).
    /// - Throws: ``FileError`` naming an input file that cannot be opened.
    private func commandAndInputs() throws -> (CommandTemplate, AnyIterator<[InputRecords.Record]>, count: Int?) {
        let separator = delimiter ?? (nullSeparated ? [0] : Array("\n".utf8))
        if pipePart {
            let template = CommandTemplate(words: command, forceShell: forceShell, spellings: spellings)
            let paths = sources.compactMap { if case .file(let path) = $0.origin { path } else { nil } }
            var blocks = try PipePartBlocks(paths: paths, blockSize: blockSize, recordEnd: recordEnd, recordStart: recordStart, header: pipeHeader)
            return (template, AnyIterator { blocks.next().map { [.part(header: $0.header, range: $0.range)] } }, nil)
        }
        if pipe {
            let template = CommandTemplate(words: command, forceShell: forceShell, spellings: spellings)
            let (header, rest) = pipeHeader?.read(from: 0, limit: PipePartBlocks.longestHeader) ?? ([], [])
            // Each block is read after room for the rest of its job's input, which is encoded
            // there: the block's bytes are then never copied on their way to the worker.
            let headroom = header.isEmpty ? Self.pipeHeadroom : 0
            var blocks = PipeBlocks(
                blockSize: blockSize, recordEnd: recordEnd, recordStart: recordStart, recordsPerBlock: recordsPerBlock, initialBytes: rest,
                headroom: headroom)
            var sequence = 0
            return (template, AnyIterator { [self] in
                guard var block = blocks.next() else { return nil }
                sequence += 1
                let input = pipeCommand(template, sequence: sequence)
                if headroom > 0, let prefix = try? input.binaryPrefix(standardInputCount: block.count - headroom), prefix.count <= headroom {
                    let start = headroom - prefix.count
                    block.withUnsafeMutableBufferPointer { buffer in
                        _ = UnsafeMutableBufferPointer(rebasing: buffer[start..<headroom]).initialize(fromContentsOf: prefix)
                    }
                    return [.encoded(block, start: start)]
                }
                return [.complete(header + block[headroom...])]
            }, nil)
        }
        let columns = try columnSeparator.map { pattern throws(UsageError) in try ColumnSplitter(pattern: pattern) }
        let inputs = try JobArguments.open(sources, linkAll: linkAll, columns: columns, headerLines: headerLines) { descriptor in
            InputRecords(descriptor: descriptor, separator: separator, maximumLength: Self.longestInput)
        }
        // With no command, the values are the command line itself (run as the user gave it,
        // unquoted, by /bin/sh when the job starts); `{}` only measures them for -m.
        let template = CommandTemplate(
            words: inputsAreCommands ? [Array("{}".utf8)] : command, forceShell: forceShell, spellings: spellings,
            repeatsWords: repeatsWords, names: inputs.names)
        var packed = PackedJobArguments(inputs, packing: packing, template: template, slots: jobs)
        let count = packed.count
        return (template, AnyIterator { packed.next() }, count)
    }

    /// A job's arguments as one line, for `--tag`, messages and `--results`: joined by spaces,
    /// as GNU parallel shows them.
    static func label(_ arguments: [Bytes]) -> Bytes { Array(arguments.joined(separator: [UInt8(ascii: " ")])) }

    /// The error line for an input too long to run.
    private static func tooLongMessage(_ records: [InputRecords.Record], sequence: Int) -> String {
        let length = records.lazy.compactMap { if case .tooLong(let length) = $0 { length } else { nil } }.first ?? 0
        return "pool: input \(sequence) is \(length) bytes; an argument holds at most \(longestInput) (the kernel's MAX_ARG_STRLEN), so its job did not run\n"
    }

    /// The arguments of a job, or nil if one of them was too long to keep.
    private static func complete(_ records: [InputRecords.Record]) -> [Bytes]? {
        var arguments: [Bytes] = []
        arguments.reserveCapacity(records.count)
        for record in records {
            guard case .complete(let bytes) = record else { return nil }
            arguments.append(bytes)
        }
        return arguments
    }

    /// The room before each `--pipe` block for the rest of its job's input: the command line,
    /// mostly. A longer one is encoded the usual way, with the block copied.
    static let pipeHeadroom = 4096

    /// The input of `--pipe` job number `sequence`, but for its block.
    private func pipeCommand(_ template: CommandTemplate, sequence: Int) -> CommandJob.Input {
        // With --cat or --fifo, {} is the block's file, which the worker makes.
        let values = blockPassing != nil ? [Array(CommandJob.inputFilePlaceholder.utf8)] : []
        var command = CommandJob.Input(argumentBytes: niced(template.arguments(for: values, sequence: sequence)), streamsOutput: lineBuffer)
        command.inputPassing = blockPassing
        command.outputLimit = outputLimit
        return command
    }

    /// As GNU parallel does it: with `--nice`, the command runs under nice(1).
    private func niced(_ vector: [Bytes]) -> [Bytes] {
        guard let niceness else { return vector }
        return [Array("nice".utf8), Array("-n".utf8), Array(String(niceness).utf8)] + vector
    }

    /// Runs every job; returns the exit status (failed jobs, at most 101).
    func run() async throws -> Int32 {
        let (template, inputs, inputCount) = try commandAndInputs()
        if dryRun {
            // Written in blocks: one write per line would be most of the time for many lines.
            var block: Bytes = []
            var rejected = 0
            for (index, records) in IteratorSequence(inputs).enumerated() {
                guard !pipe else {
                    block += template.display(for: [], sequence: index + 1)
                    block.append(UInt8(ascii: "\n"))
                    continue
                }
                guard let arguments = Self.complete(records) else {
                    Output.write(Self.tooLongMessage(records, sequence: index + 1), to: .standardError)
                    rejected += 1
                    continue
                }
                block += inputsAreCommands ? Self.label(arguments) : template.display(for: arguments, sequence: index + 1)
                block.append(UInt8(ascii: "\n"))
                if block.count >= 1 << 16 {
                    Output.write(Data(block), to: .standardOutput)
                    block.removeAll(keepingCapacity: true)
                }
            }
            Output.write(Data(block), to: .standardOutput)
            return Int32(min(rejected, 101))
        }
        var configuration = ProcessPoolConfiguration(workerCount: jobs, executablePath: try workerExecutable(workerPath))
        configuration.jobTimeout = timeout
        if hostOptions.namesHosts {
            configuration.hosts = try hostOptions.hosts(slots: jobs)
            configuration.hostEventHandler = HostOptions.reportEvents
        }
        if let outputLimit {
            // The output travels back in one frame, with room for the rest of the result.
            configuration.maximumFrameSize = max(configuration.maximumFrameSize, outputLimit + (1 << 20))
        }
        // Commands cost at least a process start (half a millisecond): batches of about 5 ms
        // send several of the shortest per round trip; anything slower still goes one by one.
        configuration.targetBatchDuration = .milliseconds(5)
        let retries = retries
        let printer = ResultPrinter(keepOrder: keepOrder, tag: tag)
        // --tagstring: the tag is made like a command, from the job's values.
        let tagTemplate = tagString.map {
            CommandTemplate(words: [$0], forceShell: false, spellings: spellings, names: template.names, isCommand: false)
        }
        // --transferfile and --return name files like a command, from the job's values.
        let fileTemplate: ((Bytes, [Bytes], Int) -> Bytes)? = remoteFiles.isEmpty ? nil : { [spellings, names = template.names] word, arguments, sequence in
            CommandTemplate(words: [word], forceShell: false, spellings: spellings, names: names, isCommand: false)
                .arguments(for: arguments, sequence: sequence).first ?? []
        }
        /// What --tag puts before a job's lines: its values, or --tagstring filled in.
        func label(_ arguments: [Bytes], sequence: Int) -> Bytes {
            guard let tagTemplate else { return Self.label(arguments) }
            return Self.label(tagTemplate.arguments(for: arguments, sequence: sequence + 1))
        }
        // With --resume, jobs the log shows as done are skipped (with --resume-failed, only
        // those that succeeded); their sequence numbers stay the same.
        let skip = jobLogPath.map { JobLog.finishedSequences(in: $0, successfulOnly: resumeFailed) } ?? []
        let log = try jobLogPath.map { try JobLog(path: $0, appending: resume || resumeFailed) }
        defer { log?.close() }
        let interrupt = Interrupt.shared
        let results = try resultsDirectory.map { try ResultsDirectory(path: $0) }
        let bar = progressStyle.map { ProgressBar(style: $0, total: inputCount, workers: jobs) }
        let halt = halt
        var halted = false
        var finished = 0
        /// Prints, logs and counts one finished job; true when --halt says to stop.
        /// With --line-buffer, what each running job has streamed, kept only where the job log
        /// or --results need it (they record a job's output once it ends).
        var streamed: [Int: [Data]] = [:]
        let keepsStreamed = lineBuffer && (log != nil || results != nil)
        func finish(_ sequence: Int, _ arguments: [Bytes], _ result: Result<CommandJob.Output, ProcessPoolError>) -> Bool {
            bar?.clear()
            if case .success(let output) = result, let returned = output.returnedFiles, let fileTemplate {
                // Only what this job asked for is written here: a host cannot choose paths.
                let asked = Set(remoteFiles.returns.map { RemoteFileOptions.remotePath(fileTemplate($0, arguments, sequence + 1)) })
                let (wanted, unasked) = (returned.filter { asked.contains($0.path) }, returned.filter { !asked.contains($0.path) })
                for file in unasked {
                    Output.write("pool: job \(sequence + 1): the host returned \(String(decoding: file.path, as: UTF8.self)), which was not asked for; it is ignored\n", to: .standardError)
                }
                for problem in RemoteFileOptions.keep(wanted) {
                    Output.write("pool: job \(sequence + 1): \(problem)\n", to: .standardError)
                    printer.countFailure()
                }
            }
            printer.print(sequence: sequence, input: label(arguments, sequence: sequence), result: result)
            if log != nil || results != nil {
                var result = result
                if let output = streamed.removeValue(forKey: sequence), case .success(var whole) = result {
                    whole.standardOutput = Array(output[0])
                    whole.standardError = Array(output[1])
                    result = .success(whole)
                }
                let display = inputsAreCommands ? Self.label(arguments) : template.display(for: arguments, sequence: sequence + 1)
                log?.record(sequence: sequence + 1, command: display, result: result)
                do {
                    try results?.record(sequence: sequence + 1, input: Self.label(arguments), command: display, result: result)
                } catch {
                    // Saving failed: say where and why, and count the job as failed.
                    Output.write("pool: \(error)\n", to: .standardError)
                    printer.countFailure()
                }
            }
            return countFinished()
        }
        /// Counts a job as ended; true when --halt says to stop.
        func countFinished() -> Bool {
            finished += 1
            bar?.update(finished: finished, failed: printer.failures)
            return halt?.isReached(failed: printer.failures, finished: finished) ?? false
        }
        try await withProcessPool(configuration: configuration) { pool in
            reportCapacity(of: pool)
            interrupt.setEmergencyStop { pool.killWorkersNow() }
            // One stream of events drives the run: inputs arriving (read on a thread of their
            // own, so a slow stdin such as `tail -f` blocks nothing), and jobs finishing. So
            // results print as soon as jobs end, and Ctrl-C never waits for another input.
            // With --halt or --delay, no job waits queued behind the running ones.
            // With --pipe, a block or two per worker: each holds up to --block bytes.
            let window = halt != nil || delay != nil || memoryFloor != nil ? jobs : pipe ? jobs * 2 : max(64, jobs * 16)
            let (events, sink) = AsyncStream<RunEvent>.makeStream()
            let feed = InputFeed(records: inputs, events: sink, delay: delay, shuffled: shuffle, memoryFloor: memoryFloor)
            // Jobs are followed with completion callbacks rather than a task each: a finished
            // job costs one event here, not a task switch or two.
            var running: [Int: JobFuture<CommandJob.Output>] = [:]
            var requested = 0
            var inputsEnded = false
            var sequence = 0
            /// Asks for inputs to keep `window` jobs queued or running, in batches so that the
            /// reader thread wakes once for many inputs.
            func requestInputs() {
                guard !inputsEnded, !halted else { return }
                let wanted = window - running.count - requested
                guard wanted > 0, wanted >= window / 4 || running.count + requested < jobs else { return }
                requested += wanted
                feed.request(wanted)
            }
            func start(_ index: Int, _ arguments: [Bytes], _ command: JobInput, attempt: Int) async {
                let future: JobFuture<CommandJob.Output>
                if keepsStreamed { streamed[index] = [Data(), Data()] }
                var onOutput: (@Sendable (Int, [UInt8]) -> Void)?
                if lineBuffer {
                    onOutput = { stream, bytes in sink.yield(.output(index, arguments, stream, bytes)) }
                }
                do {
                    switch command {
                    case .command(let input): future = try await pool.submit(CommandJob.self, input, onOutput: onOutput)
                    case .encoded(let buffer, let start):
                        future = try await pool.submit(CommandJob.self, encodedInput: buffer, from: start, onOutput: onOutput)
                    }
                } catch let error as ProcessPoolError {
                    sink.yield(.finished(index, arguments, .failure(error)))
                    return
                } catch {
                    return  // Cancelled: the run is stopping.
                }
                running[index] = future
                future.whenComplete { outcome in
                    switch outcome {
                    case .success(let output):
                        sink.yield(.finished(index, arguments, .success(output), attempt: attempt, command: command))
                    case .failure(let error as ProcessPoolError):
                        sink.yield(.finished(index, arguments, .failure(error), attempt: attempt, command: command))
                    case .failure:
                        sink.yield(.cancelled(index))
                    }
                }
            }
            /// --halt is reached: start nothing more, and with `now` stop what runs.
            func stopForHalt() {
                guard !halted else { return }
                halted = true
                if halt?.stopsRunningJobs == true { for future in running.values { future.cancel() } }
            }
            requestInputs()
            eventLoop: for await event in events {
                switch event {
                case .input(let records):
                    let index = sequence
                    sequence += 1
                    requested -= 1
                    if halted || interrupt.signal != nil { break }
                    if pipe {
                        // A block read into place comes encoded; the others are encoded here.
                        switch records.first {
                        case .encoded(let buffer, let offset)?:
                            await start(index, [], .encoded(buffer, start: offset), attempt: 0)
                        case .part(let header, let range)?:
                            var command = pipeCommand(template, sequence: index + 1)
                            command.standardInput = header.isEmpty ? nil : header
                            command.standardInputFile = range
                            await start(index, [], .command(command), attempt: 0)
                        case .complete(let block)?:
                            var command = pipeCommand(template, sequence: index + 1)
                            command.standardInput = block
                            await start(index, [], .command(command), attempt: 0)
                        default: break
                        }
                        break
                    }
                    guard let arguments = Self.complete(records) else {
                        // It cannot be an argument: it fails alone, and the run goes on.
                        bar?.clear()
                        Output.write(Self.tooLongMessage(records, sequence: index + 1), to: .standardError)
                        printer.countFailure()
                        printer.skip(sequence: index)
                        if countFinished() { stopForHalt() }
                        break
                    }
                    if skip.contains(index + 1) {
                        printer.skip(sequence: index)
                    } else {
                        let vector = inputsAreCommands
                            ? [Array("/bin/sh".utf8), Array("-c".utf8), Self.label(arguments)]
                            : template.arguments(for: arguments, sequence: index + 1)
                        var command = CommandJob.Input(argumentBytes: niced(vector), streamsOutput: lineBuffer)
                        command.outputLimit = outputLimit
                        if let fileTemplate {
                            do {
                                command.remoteFiles = try remoteFiles.files { fileTemplate($0, arguments, index + 1) }
                            } catch {
                                // Its file cannot be sent: it fails alone, and the run goes on.
                                bar?.clear()
                                Output.write("pool: job \(index + 1): \(error)\n", to: .standardError)
                                printer.countFailure()
                                printer.skip(sequence: index)
                                if countFinished() { stopForHalt() }
                                break
                            }
                        }
                        await start(index, arguments, .command(command), attempt: 0)
                    }
                case .inputsEnded:
                    inputsEnded = true
                    requested = 0
                    // Now the number of jobs is known: the bar can show a percentage and an ETA.
                    bar?.setTotal(sequence)
                case .finished(let index, let arguments, let result, let attempt, let command):
                    running[index] = nil
                    // As in GNU parallel, a failed job (non-zero exit, signal, timeout, a
                    // crashed worker) is run again, up to --retries more times.
                    let succeeded = (try? result.get())?.succeeded ?? false
                    if !succeeded, attempt < retries, let command, !halted, interrupt.signal == nil {
                        await start(index, arguments, command, attempt: attempt + 1)
                    } else if finish(index, arguments, result) {
                        stopForHalt()
                    }
                case .output(let index, let arguments, let stream, let bytes):
                    if keepsStreamed { streamed[index]?[stream].append(contentsOf: bytes) }
                    bar?.clear()
                    printer.stream(sequence: index, input: label(arguments, sequence: index), stream: stream, bytes: bytes)
                case .cancelled(let index):
                    running[index] = nil
                    streamed[index] = nil
                }
                requestInputs()
                if (inputsEnded || halted) && running.isEmpty { break eventLoop }
            }
            // Ctrl-C cancels this task, which also ends the event stream: stop what runs.
            if Task.isCancelled || interrupt.signal != nil {
                for future in running.values { future.cancel() }
            }
            bar?.finish(finished: finished, failed: printer.failures)
            if Task.isCancelled || interrupt.signal != nil || halted { await pool.shutdown(cancellingPendingJobs: true) }
        }
        if let signal = interrupt.signal { return 128 + signal }
        // Stopped by --halt ...,success=N: what was asked for was done.
        if halted, halt?.countsSuccesses == true { return 0 }
        return Int32(min(printer.failures, 101))
    }
}

/// Prints each job's output whole (never interleaved with another's), in finishing order or,
/// with `-k`, in input order. With --line-buffer, jobs' lines are printed as they come
/// instead; with `-k` too, only the earliest unfinished job's come live, and later jobs' wait.
final class ResultPrinter {
    private let keepOrder: Bool
    private let tag: Bool
    private var order = InputOrder<(sequence: Int, input: Bytes, result: Result<CommandJob.Output, ProcessPoolError>)>()
    /// Streamed lines held back by `-k`, by job.
    private var held: [Int: [(input: Bytes, stream: Int, bytes: [UInt8])]] = [:]
    private(set) var failures = 0

    /// Counts a job as failed that ran fine but whose results could not be saved.
    func countFailure() { failures += 1 }

    init(keepOrder: Bool, tag: Bool) {
        self.keepOrder = keepOrder
        self.tag = tag
    }

    func print(sequence: Int, input: Bytes, result: Result<CommandJob.Output, ProcessPoolError>) {
        // Counted on arrival, not when printed: -k may hold a failure back, and --halt and the
        // exit status must see it at once.
        switch result {
        case .success(let output): if !output.succeeded { failures += 1 }
        case .failure: failures += 1
        }
        guard keepOrder else { return emit(input, result) }
        order.add((sequence, input, result), at: sequence) { release($0) }
        releaseHeldLines(of: order.nextSequence)
    }

    /// A job that will not run (`--resume`): `-k` must not wait for it.
    func skip(sequence: Int) {
        guard keepOrder else { return }
        order.skip(sequence) { release($0) }
        releaseHeldLines(of: order.nextSequence)
    }

    private func release(_ item: (sequence: Int, input: Bytes, result: Result<CommandJob.Output, ProcessPoolError>)) {
        releaseHeldLines(of: item.sequence)
        emit(item.input, item.result)
    }

    /// Lines a running job streamed (--line-buffer): printed now, or with `-k` held until
    /// every earlier job has been printed.
    func stream(sequence: Int, input: Bytes, stream: Int, bytes: [UInt8]) {
        if keepOrder && sequence != order.nextSequence {
            held[sequence, default: []].append((input, stream, bytes))
            return
        }
        Output.write(Data(tagged(bytes, input)), to: stream == 0 ? .standardOutput : .standardError)
    }

    /// A job whose turn has come prints what it streamed while it waited (and, if still
    /// running, streams live from here on).
    private func releaseHeldLines(of sequence: Int) {
        guard let lines = held.removeValue(forKey: sequence) else { return }
        for line in lines {
            Output.write(Data(tagged(line.bytes, line.input)), to: line.stream == 0 ? .standardOutput : .standardError)
        }
    }

    private func emit(_ input: Bytes, _ result: Result<CommandJob.Output, ProcessPoolError>) {
        switch result {
        case .success(let output):
            Output.write(Data(tagged(output.standardOutput, input)), to: .standardOutput)
            Output.write(Data(tagged(output.standardError, input)), to: .standardError)
        case .failure(let error):
            Output.write(Data(Array("pool: ".utf8) + input + Array(": \(error)\n".utf8)), to: .standardError)
        }
    }

    /// With `--tag`, each line of `output` starts with the input and a tab; the bytes are
    /// left as they are.
    private func tagged(_ output: [UInt8], _ input: Bytes) -> [UInt8] {
        guard tag, !output.isEmpty else { return output }
        let newline = UInt8(ascii: "\n")
        var result: [UInt8] = []
        result.reserveCapacity(output.count + input.count + 1)
        var atLineStart = true
        for byte in output {
            if atLineStart {
                result += input
                result.append(UInt8(ascii: "\t"))
            }
            result.append(byte)
            atLineStart = byte == newline
        }
        return result
    }
}

/// What drives `pool run`.
enum RunEvent: Sendable {
    /// A job's arguments, as read from the input sources.
    case input([InputRecords.Record])
    case inputsEnded
    /// A job ended: its sequence index, arguments and result, which attempt it was, and the
    /// command (nil where it never ran and must not be retried).
    case finished(Int, [Bytes], Result<CommandJob.Output, ProcessPoolError>, attempt: Int = 0, command: JobInput? = nil)
    case cancelled(Int)
    /// With --line-buffer: lines a running job wrote to stdout (0) or stderr (1).
    case output(Int, [Bytes], Int, [UInt8])
}

/// A job's input as it is submitted (and submitted again for `--retries`).
enum JobInput: Sendable {
    case command(CommandJob.Input)
    /// `--pipe`: the input encoded around its block, `buffer[start...]`, sent without a copy.
    case encoded(Bytes, start: Int)
}

/// Reads inputs one at a time, on request, on a queue of its own: reading stdin may block for
/// as long as the producer likes, and must block neither the cooperative pool nor the run.
final class InputFeed: @unchecked Sendable {
    // @unchecked: `records` and the rest are only touched on `queue`, one request at a time.
    private let queue = DispatchQueue(label: "pool.inputs")
    private var records: AnyIterator<[InputRecords.Record]>
    private let events: AsyncStream<RunEvent>.Continuation
    /// `--delay`: the least time between two inputs handed out (so between two jobs' starts).
    private let delay: Duration?
    private var lastHandedOut: ContinuousClock.Instant?
    /// `--shuf`: read every input first, then hand them out in a random order.
    private let shuffled: Bool

    /// `--memfree`: no input is handed out (so no job starts) while less memory is available.
    private let memoryFloor: Int?

    init(
        records: AnyIterator<[InputRecords.Record]>, events: AsyncStream<RunEvent>.Continuation, delay: Duration? = nil, shuffled: Bool = false,
        memoryFloor: Int? = nil
    ) {
        self.records = records
        self.events = events
        self.delay = delay
        self.shuffled = shuffled
        self.memoryFloor = memoryFloor
    }

    /// Reads up to `count` more inputs and posts each (or the end of the inputs) as an event
    /// as soon as it is read.
    func request(_ count: Int) {
        queue.async { [self] in
            if shuffled, !didShuffle {
                records = AnyIterator(Array(records).shuffled().makeIterator())
                didShuffle = true
            }
            for _ in 0..<count {
                guard let record = records.next() else {
                    events.yield(.inputsEnded)
                    return
                }
                if let delay {
                    // This queue waits, not the run: its events keep flowing meanwhile.
                    let clock = ContinuousClock()
                    if let lastHandedOut, clock.now < lastHandedOut + delay {
                        let rest = lastHandedOut + delay - clock.now
                        let (seconds, attoseconds) = rest.components
                        Self.sleep(seconds: Int(seconds), nanoseconds: Int(attoseconds / 1_000_000_000))
                    }
                    lastHandedOut = clock.now
                }
                if let memoryFloor { waitForMemory(memoryFloor) }
                events.yield(.input(record))
            }
        }
    }

    private var didShuffle = false

    /// Waits, checking every 200 ms, until `floor` bytes of memory are available; says so
    /// once on stderr if it has to wait.
    private func waitForMemory(_ floor: Int) {
        var said = false
        while let available = MemoryGate.availableMemory(), available < floor {
            if !said {
                Output.write("pool: waiting to start the next job until \(floor) bytes of memory are free (--memfree); \(available) are\n", to: .standardError)
                said = true
            }
            Self.sleep(seconds: 0, nanoseconds: 200_000_000)
        }
    }

    private static func sleep(seconds: Int, nanoseconds: Int) {
        var time = timespec(tv_sec: seconds, tv_nsec: nanoseconds)
        var remaining = timespec()
        while nanosleep(&time, &remaining) != 0 && errno == EINTR { time = remaining }
    }
}

/// `--memfree`: how much memory the system has available for new work.
enum MemoryGate {
    /// The kernel's estimate of the memory available without swapping (`MemAvailable` in
    /// `/proc/meminfo`), in bytes; nil if it cannot be read.
    static func availableMemory() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        return availableMemory(meminfo: text)
    }

    /// `MemAvailable` of a `/proc/meminfo` text, in bytes.
    static func availableMemory(meminfo: String) -> Int? {
        for line in meminfo.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ")
            guard fields.count >= 2, let kibibytes = Int(fields[1]) else { return nil }
            let unit = fields.count >= 3 && fields[2] == "kB" ? 1024 : 1
            return kibibytes.multipliedReportingOverflow(by: unit).overflow ? Int.max : kibibytes * unit
        }
        return nil
    }
}
