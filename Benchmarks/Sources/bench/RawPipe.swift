import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The machine's limits for this transport: two processes and a pair of pipes, nothing else.
/// The peer is this program started in `pipe-peer` mode, so both ends are the same binary and
/// pay the same start-up; only the timed loops count.
enum RawPipe {
    /// What the peer does with its stdin.
    enum PeerMode: String {
        /// Writes back each byte it reads (ping-pong).
        case echo
        /// Reads until end of input, then writes the byte count as 8 bytes (bandwidth).
        case sink
    }

    /// The peer's side; never returns.
    static func servePeer(_ mode: PeerMode) -> Never {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var total: UInt64 = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, mode == .echo ? 1 : $0.count) }
            if count <= 0 { break }
            total += UInt64(count)
            if mode == .echo {
                _ = buffer.withUnsafeBytes { write(1, $0.baseAddress, count) }
            }
        }
        if mode == .sink {
            var value = total
            _ = withUnsafeBytes(of: &value) { write(1, $0.baseAddress, 8) }
        }
        exit(0)
    }

    /// A running peer and the parent's ends of its pipes.
    private struct Peer {
        let process: Process
        let toPeer: Int32
        let fromPeer: Int32
        let input: Pipe
        let output: Pipe

        init(mode: PeerMode) throws {
            process = Process()
            process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
            process.arguments = ["pipe-peer", mode.rawValue]
            input = Pipe()
            output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            try process.run()
            toPeer = input.fileHandleForWriting.fileDescriptor
            fromPeer = output.fileHandleForReading.fileDescriptor
            // The same pipe size the pool asks for its workers' pipes (F_SETPIPE_SZ, which
            // Glibc's module does not export).
            let setPipeSize: Int32 = 1024 + 7
            _ = fcntl(toPeer, setPipeSize, 1 << 20)
        }

        func finish() {
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
        }
    }

    /// One-byte round trips: returns each round trip's duration in seconds.
    static func pingPong(roundTrips: Int, warmUp: Int = 200) throws -> [Double] {
        let peer = try Peer(mode: .echo)
        defer { peer.finish() }
        var byte: UInt8 = 1
        var samples: [Double] = []
        samples.reserveCapacity(roundTrips)
        let clock = ContinuousClock()
        for index in 0..<(warmUp + roundTrips) {
            let start = clock.now
            guard write(peer.toPeer, &byte, 1) == 1, read(peer.fromPeer, &byte, 1) == 1 else {
                throw BenchmarkError("the pipe peer stopped answering")
            }
            if index >= warmUp { samples.append(seconds(clock.now - start)) }
        }
        return samples
    }

    /// One-byte round trips as an async API must make them: a task hands each request to an
    /// I/O thread (through a pipe it blocks on) and awaits; the I/O thread ping-pongs with the
    /// peer and resumes the task. Four hand-offs between threads, like a pool's round trip,
    /// with nothing else: the floor for any pool with an async interface on this machine.
    static func asyncPingPong(roundTrips: Int, warmUp: Int = 200) async throws -> [Double] {
        let peer = try Peer(mode: .echo)
        defer { peer.finish() }
        let handOff = AsyncHandOff(toPeer: peer.toPeer, fromPeer: peer.fromPeer)
        defer { handOff.stop() }
        var samples: [Double] = []
        samples.reserveCapacity(roundTrips)
        let clock = ContinuousClock()
        for index in 0..<(warmUp + roundTrips) {
            let start = clock.now
            guard await handOff.roundTrip() else { throw BenchmarkError("the pipe peer stopped answering") }
            if index >= warmUp { samples.append(seconds(clock.now - start)) }
        }
        return samples
    }

    /// The I/O thread of `asyncPingPong`.
    private final class AsyncHandOff: @unchecked Sendable {
        // @unchecked: `waiter` is handed over through the request pipe, one at a time.
        private var waiter: CheckedContinuation<Bool, Never>?
        private let requests: (read: Int32, write: Int32)

        init(toPeer: Int32, fromPeer: Int32) {
            var fds: [Int32] = [0, 0]
            precondition(pipe(&fds) == 0)
            requests = (fds[0], fds[1])
            let thread = Thread { [self] in
                var byte: UInt8 = 0
                while read(requests.read, &byte, 1) == 1 {
                    var ping: UInt8 = 1
                    let ok = write(toPeer, &ping, 1) == 1 && read(fromPeer, &ping, 1) == 1
                    let waiter = self.waiter
                    self.waiter = nil
                    waiter?.resume(returning: ok)
                }
                close(requests.read)
            }
            thread.start()
        }

        func roundTrip() async -> Bool {
            await withCheckedContinuation { continuation in
                waiter = continuation
                var byte: UInt8 = 1
                _ = write(requests.write, &byte, 1)
            }
        }

        func stop() { close(requests.write) }
    }

    /// Sends `count` messages of `size` bytes through a pipe; returns MiB/s.
    static func bandwidth(count: Int, size: Int) throws -> Double {
        let peer = try Peer(mode: .sink)
        let message = [UInt8](repeating: 3, count: size)
        let clock = ContinuousClock()
        let start = clock.now
        for _ in 0..<count {
            var offset = 0
            while offset < size {
                let written = message.withUnsafeBytes { write(peer.toPeer, $0.baseAddress! + offset, size - offset) }
                guard written > 0 else { throw BenchmarkError("the pipe peer stopped reading") }
                offset += written
            }
        }
        try? peer.input.fileHandleForWriting.close()
        var total: UInt64 = 0
        guard withUnsafeMutableBytes(of: &total, { read(peer.fromPeer, $0.baseAddress, 8) }) == 8,
            total == UInt64(count * size)
        else { throw BenchmarkError("the pipe peer received \(total) of \(count * size) bytes") }
        let elapsed = seconds(clock.now - start)
        peer.process.waitUntilExit()
        return Double(count * size) / 1_048_576 / elapsed
    }
}
