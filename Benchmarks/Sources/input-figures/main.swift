import Foundation

// How fast `pool map` reads its input, and with how much memory: one very long line, and very
// many short ones, each beside `wc -l` reading the same file (one process, every byte once).
//
//   swift build -c release && swift run -c release --package-path Benchmarks input-figures \
//       [--line-megabytes 200] [--lines 10000000]
//
// Reading used to rescan the whole buffer on every 4 KiB read: one 20 MB line took 57 s.

let root = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let pool = root.appendingPathComponent(".build/release/pool").path
let worker = root.appendingPathComponent(".build/release/pool-worker").path

var lineMegabytes = 200
var lineCount = 10_000_000
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch (argument, arguments.popFirst().flatMap { Int($0) }) {
    case ("--line-megabytes", let value?) where value > 0: lineMegabytes = value
    case ("--lines", let value?) where value > 0: lineCount = value
    default:
        FileHandle.standardError.write(Data("usage: input-figures [--line-megabytes N] [--lines N]\n".utf8))
        exit(2)
    }
}
guard FileManager.default.isExecutableFile(atPath: pool), FileManager.default.isExecutableFile(atPath: worker) else {
    FileHandle.standardError.write(Data("input-figures: build the package first: swift build -c release\n".utf8))
    exit(2)
}

/// Runs `arguments` with `input` as stdin and stdout discarded; its wall time and the peak
/// resident memory of it or any of its descendants it waited for.
func measure(_ arguments: [String], input: String) -> (seconds: Double, peakMiB: Double) {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, input, O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    let argv = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    let start = ContinuousClock.now
    var pid: pid_t = 0
    guard posix_spawn(&pid, arguments[0], &actions, nil, argv, environ) == 0 else { fatalError("cannot run \(arguments[0])") }
    var status: Int32 = 0
    var usage = rusage()
    _ = wait4(pid, &status, 0, &usage)
    let elapsed = ContinuousClock.now - start
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    return (seconds, Double(usage.ru_maxrss) / 1024)
}

func write(_ path: String, _ fill: (FileHandle) -> Void) {
    _ = FileManager.default.createFile(atPath: path, contents: nil)
    let handle = FileHandle(forWritingAtPath: path)!
    fill(handle)
    try? handle.close()
}

let directory = FileManager.default.temporaryDirectory.appendingPathComponent("input-figures-\(getpid())").path
try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: directory) }

let longLine = directory + "/long-line.jsonl"
write(longLine) { handle in
    handle.write(Data("\"".utf8))
    let chunk = Data(repeating: UInt8(ascii: "x"), count: 1 << 20)
    for _ in 0..<lineMegabytes { handle.write(chunk) }
    handle.write(Data("\"\n".utf8))
}
let manyLines = directory + "/many-lines.jsonl"
write(manyLines) { handle in
    var text = ""
    for n in 0..<lineCount {
        text += "\"\(n)\"\n"
        if text.utf8.count > 1 << 20 {
            handle.write(Data(text.utf8))
            text = ""
        }
    }
    handle.write(Data(text.utf8))
}

print("input                              | command                    |   seconds | peak MiB")
print("-----------------------------------|----------------------------|-----------|---------")
for (label, file) in [("one line of \(lineMegabytes) MiB", longLine), ("\(lineCount) lines", manyLines)] {
    for (name, command) in [
        ("pool map (echo, 2 workers)", [pool, "map", "--worker", worker, "--job", "echo", "-j", "2"]),
        ("wc -l", ["/usr/bin/wc", "-l"]),
    ] {
        let (seconds, peak) = measure(command, input: file)
        print(label.padding(toLength: 35, withPad: " ", startingAt: 0) + "| " + name.padding(toLength: 27, withPad: " ", startingAt: 0)
            + "| " + String(format: "%9.2f", seconds) + " | " + String(format: "%7.1f", peak))
    }
}
