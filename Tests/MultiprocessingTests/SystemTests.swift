#if os(Linux)
import Glibc
import Testing

@testable import Multiprocessing

@Suite("System calls and descriptors")
struct SystemTests {
    @Test("a command's input encoded as a prefix and then its stdin bytes is its encoding (pool run --pipe sends it so)")
    func commandInputPrefix() throws {
        var input = CommandJob.Input(arguments: ["wc", "-l", "caf\u{e9}"])
        input.outputLimit = 1000
        input.inputPassing = .namedPipe
        for count in [0, 1, 127, 128, 16_384, 100_000] {
            input.standardInput = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 13) }
            let whole = try BinaryPayloadEncoder().encode(input)
            #expect(try input.binaryPrefix(standardInputCount: count) + input.standardInput! == whole, "\(count) bytes")
        }
    }

    @Test("a command reads a range of a file, through its stdin, a temporary file or a named pipe; a range past the end fails")
    func commandInputFromFileRange() async throws {
        let path = "/tmp/pool-range-\(getpid())"
        let file = fopen(path, "w")!
        fputs("abcdef", file)
        fclose(file)
        defer { unlink(path) }
        let placeholder = CommandJob.inputFilePlaceholder
        var input = CommandJob.Input(arguments: ["cat"])
        input.standardInput = Array("<".utf8)
        input.standardInputFile = CommandJob.FileRange(path: Array(path.utf8), offset: 1, byteCount: 3)
        for passing in [nil, .standardInput, .temporaryFile, .namedPipe] as [CommandJob.InputPassing?] {
            var passed = input
            passed.inputPassing = passing
            if passing == .temporaryFile || passing == .namedPipe { passed.arguments = ["sh", "-c", "cat \"$1\"", "_", placeholder] }
            let output = try await onDedicatedThread { [passed] in try CommandJob().run(passed) }
            #expect(output.standardOutput == Array("<bcd".utf8), "\(String(describing: passing))")
        }
        input.standardInputFile = CommandJob.FileRange(path: Array(path.utf8), offset: 4, byteCount: 3)
        await #expect(throws: ProcessPoolError.self) { try await onDedicatedThread { [input] in try CommandJob().run(input) } }
        do {
            _ = try await onDedicatedThread { [input] in try CommandJob().run(input) }
        } catch let error as ProcessPoolError {
            #expect(error.message.contains("\(path) is 6 bytes, too short"), "\(error)")
        }
    }

    @Test("a pipe reopened non-blocking has flags of its own and reads the same pipe")
    func reopenedPipe() throws {
        let pipe = try FileDescriptor.pipe()
        guard let reopened = pipe.readEnd.reopenedNonBlocking() else {
            Issue.record("a pipe could not be reopened")
            pipe.close()
            return
        }
        #expect(fcntl(reopened.rawValue, F_GETFL) & O_NONBLOCK != 0)
        #expect(fcntl(pipe.readEnd.rawValue, F_GETFL) & O_NONBLOCK == 0)
        #expect(fcntl(reopened.rawValue, F_GETFD) & FD_CLOEXEC != 0)
        var buffer = [UInt8](repeating: 0, count: 8)
        let empty = try buffer.withUnsafeMutableBytes { try reopened.read(into: $0) }
        #expect(empty == .wouldBlock, "an empty non-blocking pipe says would-block, not end of file")
        try Array("hi".utf8).withUnsafeBytes { try pipe.writeEnd.writeAll($0) }
        let count = try buffer.withUnsafeMutableBytes { try reopened.readSpinning(into: $0, for: .microseconds(50), readsWithoutWaiting: true) }
        #expect(Array(buffer[0..<count]) == Array("hi".utf8))
        // The blocking descriptor spins on poll instead, and reads once there is something.
        try Array("yo".utf8).withUnsafeBytes { try pipe.writeEnd.writeAll($0) }
        let again = try buffer.withUnsafeMutableBytes { try pipe.readEnd.readSpinning(into: $0, for: Duration.microseconds(50), readsWithoutWaiting: false) }
        #expect(Array(buffer[0..<again]) == Array("yo".utf8))
        reopened.close()
        pipe.close()
        // Not a pipe: no reopening.
        let null = try FileDescriptor.openNullDevice(writable: false)
        let notReopened = null.reopenedNonBlocking() == nil
        #expect(notReopened)
        null.close()
    }

    @Test("a failing call throws its name and errno; would-block is a value, not an error")
    func systemCallOutcomes() throws {
        let failure = #expect(throws: SystemCallError.self) {
            try systemCall("open(/nonexistent)") { open("/nonexistent/file", O_RDONLY) }
        }
        #expect(failure?.call == "open(/nonexistent)")
        #expect(failure?.errno == Errno(rawValue: ENOENT))
        #expect(failure?.description.contains("ENOENT") == true)

        let pipe = try FileDescriptor.pipe(nonBlocking: true)
        var byte: UInt8 = 0
        let outcome = try withUnsafeMutableBytes(of: &byte) { buffer in
            try trySystemCall("read") { read(pipe.readEnd.rawValue, buffer.baseAddress, 1) }
        }
        guard case .wouldBlock = outcome else {
            Issue.record("an empty non-blocking pipe read \(outcome)")
            return
        }
        pipe.close()
    }

    @Test("a C string array frees its strings and keeps them NUL-terminated until then")
    func cStringArray() {
        let array = CStringArray(["a", "bc", ""])
        #expect(array.count == 3)
        #expect(String(cString: array.pointers[1]!) == "bc")
        #expect(array.pointers[3] == nil)
        array.deallocate()
    }
}
#endif
