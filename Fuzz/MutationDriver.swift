// Fallback fuzzer for toolchains without libFuzzer: mutates the valid seeds of FuzzSeeds.swift
// with a fixed-seed PRNG (one generator per iteration index, so `--first` can split a run
// into chunks that together cover exactly the same inputs) and runs them through the same decode paths as the libFuzzer targets
// (`fuzzFrames`, `fuzzPayload`).
//
//   MutationDriver [iterations] [--first I] [--seed N] [--target frames|payloads|both] [--crash-dir DIR]
//   MutationDriver --replay FILE [--target frames|payloads]
//
// A crash (trap, segfault) writes the input that caused it to DIR/mutation-<target>-crash.bin
// from a signal handler; a watchdog aborts after 5 s without progress (a hang) and writes the
// input the same way. Build it with -sanitize=address and run it with
// ASAN_OPTIONS=max_allocation_size_mb=512 to also catch allocations sized by unchecked lengths.

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SplitMix64: small, fast, and the same sequence everywhere.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum Mutator {
    /// Lengths and counts worth writing over a field: limits, off-by-ones, and values that
    /// overflow Int or need all ten varint bytes.
    static let hugeValues: [UInt64] = [
        0, 1, 0x7F, 0x80, 0xFF, 0x3FFF, 0x4000, 0xFFFF, 0x1_0000, 0x1_0001, 0x7FFF_FFFF, 0x8000_0000,
        0xFFFF_FFFF, 0x1_0000_0000, UInt64(Int.max), UInt64(Int.max) + 1, UInt64.max, UInt64.max - 1,
    ]

    static func mutate(_ input: [UInt8], seeds: [[UInt8]], using rng: inout SplitMix64) -> [UInt8] {
        var bytes = input
        let rounds = 1 + Int(rng.next() % 4)
        for _ in 0..<rounds {
            let position = bytes.isEmpty ? 0 : Int(rng.next() % UInt64(bytes.count))
            switch rng.next() % 11 {
            case 0 where !bytes.isEmpty:  // bit flip
                bytes[position] ^= 1 << UInt8(rng.next() % 8)
            case 1 where !bytes.isEmpty:  // interesting byte
                bytes[position] = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0x02][Int(rng.next() % 7)]
            case 2:  // insert random bytes
                let count = 1 + Int(rng.next() % 4)
                bytes.insert(contentsOf: (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: position)
            case 3 where !bytes.isEmpty:  // delete bytes
                let count = min(1 + Int(rng.next() % 4), bytes.count - position)
                bytes.removeSubrange(position..<position + count)
            case 4:  // overwrite with a varint of a huge or boundary value
                let value = hugeValues[Int(rng.next() % UInt64(hugeValues.count))]
                let encoded = Varint.encode(value)
                let end = min(position + Int(rng.next() % 3), bytes.count)
                bytes.replaceSubrange(position..<end, with: encoded)
            case 5:  // overwrite a 4-byte little-endian length (frame headers)
                let value = UInt32(truncatingIfNeeded: hugeValues[Int(rng.next() % UInt64(hugeValues.count))])
                let little = (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
                let end = min(position + 4, bytes.count)
                bytes.replaceSubrange(position..<end, with: little)
            case 6 where !bytes.isEmpty:  // truncate
                bytes.removeSubrange(position...)
            case 7 where !bytes.isEmpty:  // duplicate a chunk
                let count = min(1 + Int(rng.next() % 16), bytes.count - position)
                bytes.insert(contentsOf: bytes[position..<position + count], at: Int(rng.next() % UInt64(bytes.count)))
            case 8:  // splice with another seed
                let other = seeds[Int(rng.next() % UInt64(seeds.count))]
                let cut = other.isEmpty ? 0 : Int(rng.next() % UInt64(other.count))
                bytes = Array(bytes[..<position]) + other[cut...]
            case 9 where !bytes.isEmpty:  // small arithmetic on a byte (off-by-one lengths)
                bytes[position] = bytes[position] &+ UInt8(truncatingIfNeeded: Int(rng.next() % 7) - 3)
            default:  // nest: insert a continuation byte (lengthens a varint)
                bytes.insert(0x80 | UInt8(truncatingIfNeeded: rng.next() & 0x7F), at: position)
            }
        }
        return bytes
    }
}

// MARK: - Crash and hang reporting

/// What the signal handler and the watchdog need, in globals (a C signal handler captures
/// nothing). The buffer is preallocated so the handler never allocates.
nonisolated(unsafe) var currentInput = UnsafeMutablePointer<UInt8>.allocate(capacity: 1 << 20)
nonisolated(unsafe) var currentCount = 0
nonisolated(unsafe) var crashPathFrames: [CChar] = []
nonisolated(unsafe) var crashPathPayloads: [CChar] = []
nonisolated(unsafe) var currentTargetIsFrames = true
nonisolated(unsafe) var progress = 0

func writeCurrentInput() {
    let path = currentTargetIsFrames ? crashPathFrames : crashPathPayloads
    path.withUnsafeBufferPointer { name in
        let fd = open(name.baseAddress!, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd >= 0 {
            _ = write(fd, currentInput, currentCount)
            close(fd)
        }
        let message = "MutationDriver: fatal error; input saved to "
        _ = message.withCString { write(2, $0, strlen($0)) }
        _ = write(2, name.baseAddress!, strlen(name.baseAddress!))
        _ = write(2, "\n", 1)
    }
}

func installCrashHandlers() {
    for signalNumber in [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE] {
        signal(signalNumber) { received in
            writeCurrentInput()
            signal(received, SIG_DFL)
            raise(received)
        }
    }
}

/// Aborts if no input finishes for `seconds` (a hang in a decoder).
func startWatchdog(seconds: UInt32) {
    let thread = Thread {
        var last = -1
        while true {
            sleep(seconds)
            let now = progress
            if now == last {
                let message = "MutationDriver: no progress for \(seconds) s (hang)\n"
                _ = message.withCString { write(2, $0, strlen($0)) }
                abort()
            }
            last = now
        }
    }
    thread.start()
}

@inline(__always)
func run(_ bytes: [UInt8], frames: Bool) -> Int {
    currentTargetIsFrames = frames
    currentCount = min(bytes.count, 1 << 20)
    bytes.withUnsafeBufferPointer { currentInput.update(from: $0.baseAddress!, count: currentCount) }
    let errors = bytes.withUnsafeBytes { frames ? fuzzFrames($0) : fuzzPayload($0) }
    progress &+= 1
    return errors
}

// MARK: - Main

@main
struct MutationDriver {
    static func main() throws {
        var iterations = 1_000_000
        var seed: UInt64 = 0x5EED_F00D
        var target = "both"
        var crashDirectory = "."
        var replay: String?
        var first = 0
        var arguments = CommandLine.arguments.dropFirst()
        while let argument = arguments.popFirst() {
            switch argument {
            case "--seed": seed = UInt64(arguments.popFirst() ?? "") ?? seed
            case "--target": target = arguments.popFirst() ?? target
            case "--crash-dir": crashDirectory = arguments.popFirst() ?? crashDirectory
            case "--replay": replay = arguments.popFirst()
            case "--first": first = Int(arguments.popFirst() ?? "") ?? first
            default:
                guard let count = Int(argument), count >= 0 else {
                    FileHandle.standardError.write(Data("usage: MutationDriver [iterations] [--first I] [--seed N] [--target frames|payloads|both] [--crash-dir DIR] | --replay FILE\n".utf8))
                    exit(2)
                }
                iterations = count
            }
        }
        crashPathFrames = Array("\(crashDirectory)/mutation-frames-crash.bin".utf8CString)
        crashPathPayloads = Array("\(crashDirectory)/mutation-payloads-crash.bin".utf8CString)
        installCrashHandlers()
        startWatchdog(seconds: 5)

        if let replay {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: replay)))
            if target != "payloads" { print("frames: \(run(bytes, frames: true)) errors") }
            if target != "frames" { print("payloads: \(run(bytes, frames: false)) errors") }
            return
        }

        let started = Date()
        for (name, isFrames) in [("frames", true), ("payloads", false)] where target == "both" || target == name {
            let seeds = (isFrames ? FuzzSeeds.frames() : FuzzSeeds.payloads()).map(\.1)
            var inputs = 0
            var erroring = 0
            var errors = 0
            // Iterations 0..<seeds.count are the seeds themselves, unmodified.
            for iteration in first..<(first + iterations) {
                if iteration < seeds.count {
                    let count = run(seeds[iteration], frames: isFrames)
                    inputs += 1
                    errors += count
                    if count > 0 { erroring += 1 }
                    continue
                }
                // One generator per iteration, so any iteration can be regenerated on its own.
                var rng = SplitMix64(seed: seed ^ (UInt64(iteration) &* 0xD1B5_4A32_D192_ED03))
                let base = seeds[Int(rng.next() % UInt64(seeds.count))]
                let bytes = Mutator.mutate(base, seeds: seeds, using: &rng)
                let count = run(bytes, frames: isFrames)
                inputs += 1
                errors += count
                if count > 0 { erroring += 1 }
            }
            let elapsed = Date().timeIntervalSince(started)
            // Errors are expected: each frame input goes through three reader set-ups, and each
            // payload input is decoded as every fuzzed type, of which at most one can fit.
            print("\(name): ran \(inputs) inputs, \(erroring) of them raised decode errors (\(errors) errors in all, as expected), \(String(format: "%.1f", elapsed)) s elapsed")
        }
        print("stat::fuzz_sink \(fuzzSink & 0xF)")
    }
}
