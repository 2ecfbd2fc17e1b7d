import CMultiprocessingShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An open file descriptor that this library owns.
///
/// It cannot be copied, so exactly one place holds it; ``close()`` consumes it, so it cannot be
/// closed twice or used after closing. One dropped while still open is a bug: debug builds
/// trap, release builds close it rather than leak it.
struct FileDescriptor: ~Copyable {
    /// The descriptor's number, for the calls of this layer only.
    let rawValue: CInt

    /// Takes ownership of `rawValue`, an open descriptor nobody else closes.
    init(owning rawValue: CInt) { self.rawValue = rawValue }

    deinit {
        assertionFailure("multiprocessing: fd \(rawValue) dropped while open: close it, or hand it on")
        _ = sysClose(rawValue)
    }

    var description: String { "fd \(rawValue)" }

    /// The outcome of a read or write on a non-blocking descriptor.
    enum IOResult: Equatable {
        /// This many bytes were transferred (zero on a read means end of file).
        case transferred(Int)
        /// The descriptor is not ready; poll before trying again.
        case wouldBlock
    }

    /// The two ends of a pipe.
    struct Pipe: ~Copyable {
        var readEnd: FileDescriptor
        var writeEnd: FileDescriptor

        /// Closes both ends.
        consuming func close() {
            readEnd.close()
            writeEnd.close()
        }
    }

    /// Creates a pipe whose two ends are close-on-exec and never numbered 0, 1 or 2, so that
    /// a spawn's `dup2` onto the standard descriptors always clears close-on-exec.
    ///
    /// The corresponding C function is `pipe2(2)` with `O_CLOEXEC`.
    static func pipe(nonBlocking: Bool = false) throws(SystemCallError) -> Pipe {
        var fds: [CInt] = [-1, -1]
        _ = try systemCall("pipe2") { mp_pipe_cloexec(&fds, nonBlocking ? 1 : 0) }
        let writeEnd = FileDescriptor(owning: fds[1])
        let readEnd: FileDescriptor
        do {
            readEnd = try FileDescriptor(owning: fds[0]).movedAboveStandardStreams()
        } catch {
            writeEnd.close()
            throw error
        }
        do {
            return Pipe(readEnd: readEnd, writeEnd: try writeEnd.movedAboveStandardStreams())
        } catch {
            readEnd.close()
            throw error
        }
    }

    /// Opens `/dev/null` close-on-exec.
    static func openNullDevice(writable: Bool) throws(SystemCallError) -> FileDescriptor {
        let fd = try systemCall("open(/dev/null)") {
            sysOpen("/dev/null", (writable ? O_WRONLY : O_RDONLY) | O_CLOEXEC)
        }
        return FileDescriptor(owning: fd)
    }

    /// Opens `path` for reading, close-on-exec.
    static func open(readingFrom path: String) throws(SystemCallError) -> FileDescriptor {
        FileDescriptor(owning: try systemCall("open(\(path))") { sysOpen(path, O_RDONLY | O_CLOEXEC) })
    }

    /// This descriptor, numbered 3 or above: a process whose standard streams were closed gets
    /// 0, 1 or 2 from `pipe`, which a spawn's `dup2` onto them would clobber. On failure the
    /// original is closed.
    consuming func movedAboveStandardStreams() throws(SystemCallError) -> FileDescriptor {
        guard rawValue <= 2 else { return self }
        let moved: FileDescriptor
        do {
            moved = try duplicate(minimum: 3)
        } catch {
            close()
            throw error
        }
        close()
        return moved
    }

    /// A close-on-exec duplicate numbered `minimum` or above.
    ///
    /// The corresponding C function is `fcntl(2)` with `F_DUPFD_CLOEXEC`.
    func duplicate(minimum: CInt = 3) throws(SystemCallError) -> FileDescriptor {
        FileDescriptor(owning: try systemCall("fcntl(F_DUPFD_CLOEXEC)") { mp_dup_cloexec(rawValue, minimum) })
    }

    /// Makes the standard stream `target` refer to this descriptor's file; unlike this
    /// descriptor, the stream is inherited by programs the process executes.
    ///
    /// The corresponding C function is `dup2(2)`.
    func duplicate(as target: StandardStream) throws(SystemCallError) {
        _ = try systemCall("dup2") { dup2(rawValue, target.rawValue) }
    }

    /// A second descriptor for the same pipe, non-blocking, with file status flags of its own:
    /// Linux opens a pipe again through `/proc/self/fd`, so making it non-blocking does not
    /// touch the open file others may share with this descriptor. Nil where this is not a pipe
    /// (a socket under `ssh`, a terminal) or `/proc` is missing.
    func reopenedNonBlocking() -> FileDescriptor? {
        // In C: building the path with Swift's string interpolation cost every worker about
        // 0.45 MiB of resident memory (idle pool-worker 10.2 -> 9.7 MiB), the standard
        // library's code it touches.
        let fd = mp_reopen_pipe_nonblocking(rawValue)
        guard fd >= 0 else { return nil }
        return try? FileDescriptor(owning: fd).movedAboveStandardStreams()
    }

    func setNonBlocking() throws(SystemCallError) {
        _ = try systemCall("fcntl(O_NONBLOCK)") { mp_set_nonblocking(rawValue) }
    }

    /// Asks for a larger pipe buffer; failure is harmless (the default size still works).
    ///
    /// The corresponding C function is `fcntl(2)` with `F_SETPIPE_SZ`.
    func trySetPipeBufferSize(_ bytes: Int) {
        _ = mp_set_pipe_size(rawValue, CInt(clamping: bytes))
    }

    /// Closes the descriptor. `EINTR` is not retried: on Linux the descriptor is gone anyway.
    ///
    /// The corresponding C function is `close(2)`.
    consuming func close() {
        _ = sysClose(rawValue)
        discard self
    }

    /// Reads up to `buffer.count` bytes.
    ///
    /// The corresponding C function is `read(2)`.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> IOResult {
        IOResult(try trySystemCall("read") { sysRead(rawValue, buffer.baseAddress, buffer.count) })
    }

    /// Writes up to `buffer.count` bytes.
    ///
    /// The corresponding C function is `write(2)`.
    func write(_ buffer: UnsafeRawBufferPointer) throws(SystemCallError) -> IOResult {
        IOResult(try trySystemCall("write") { sysWrite(rawValue, buffer.baseAddress, buffer.count) })
    }

    /// Writes the buffers in order, as one call; as much as the descriptor takes now.
    ///
    /// The corresponding C function is `writev(2)`.
    func write(gathering buffers: [UnsafeRawBufferPointer]) throws(SystemCallError) -> IOResult {
        var vectors = buffers.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        return IOResult(try vectors.withUnsafeMutableBufferPointer { vectors throws(SystemCallError) in
            try trySystemCall("writev") { writev(rawValue, vectors.baseAddress, CInt(vectors.count)) }
        })
    }

    /// Waits until the descriptor is readable (or hung up), or `timeoutMilliseconds` pass.
    ///
    /// - Returns: Whether it is ready.
    func waitUntilReadable(timeoutMilliseconds: CInt = -1) throws(SystemCallError) -> Bool {
        try waitFor(events: POLLIN, timeoutMilliseconds: timeoutMilliseconds) != 0
    }

    /// Waits until the peer has closed its end of this pipe (or the descriptor is in error),
    /// without reading anything from it.
    func waitUntilHungUp() throws(SystemCallError) {
        // Asking for no events still reports POLLHUP, POLLERR and POLLNVAL.
        while try waitFor(events: 0, timeoutMilliseconds: -1) & CInt(POLLHUP | POLLERR | POLLNVAL) == 0 {}
    }

    private func waitUntilWritable() throws(SystemCallError) {
        _ = try waitFor(events: POLLOUT, timeoutMilliseconds: -1)
    }

    /// One `poll(2)` on this descriptor alone; returns the events it reported.
    private func waitFor(events: CInt, timeoutMilliseconds: CInt) throws(SystemCallError) -> CInt {
        var entry = pollfd(fd: rawValue, events: Int16(events), revents: 0)
        let ready = try systemCall("poll") { sysPoll(&entry, 1, timeoutMilliseconds) }
        return ready == 0 ? 0 : CInt(entry.revents)
    }

    /// Reads at least one byte, trying for up to `duration` without sleeping first, then
    /// waiting as ``readWaiting(into:)`` does; 0 at end of file.
    ///
    /// - Parameter readsWithoutWaiting: Whether the descriptor is non-blocking. Then each try
    ///   is the read itself, one system call that brings the bytes when they come; otherwise
    ///   each try is a `poll`, and the read follows once there is something to read.
    func readSpinning(into buffer: UnsafeMutableRawBufferPointer, for duration: Duration, readsWithoutWaiting: Bool) throws(SystemCallError) -> Int {
        let clock = ContinuousClock()
        let end = clock.now + duration
        var round = 0
        repeat {
            if readsWithoutWaiting {
                if case .transferred(let count) = try read(into: buffer) { return count }
            } else if try waitUntilReadable(timeoutMilliseconds: 0) {
                break
            }
            // If the thread we wait for shares this core, let it run; now and then only, as
            // a yield costs more than a try and delays seeing the data.
            round &+= 1
            if round & 7 == 0 { ThisProcess.yieldProcessor() }
        } while clock.now < end
        return try readWaiting(into: buffer)
    }

    /// Writes every byte of `buffer`, blocking as needed. For blocking descriptors owned by
    /// the calling thread (a worker's protocol output, the coordinator's forwarded stderr).
    func writeAll(_ buffer: UnsafeRawBufferPointer) throws(SystemCallError) {
        var offset = 0
        while offset < buffer.count {
            switch try write(UnsafeRawBufferPointer(rebasing: buffer[offset...])) {
            case .transferred(let count): offset += count
            case .wouldBlock: try waitUntilWritable()
            }
        }
    }

    /// Reads at least one byte, waiting for one if the descriptor is non-blocking; returns 0
    /// at end of file.
    func readWaiting(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> Int {
        while true {
            switch try read(into: buffer) {
            case .transferred(let count): return count
            case .wouldBlock: _ = try waitUntilReadable()
            }
        }
    }
}

// File-scope names for the C calls whose names the methods above reuse.
@inline(__always) private func sysClose(_ fd: CInt) -> CInt { close(fd) }
@inline(__always) private func sysRead(_ fd: CInt, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int { read(fd, buffer, count) }
@inline(__always) private func sysWrite(_ fd: CInt, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int { write(fd, buffer, count) }
@inline(__always) private func sysPoll(_ entries: UnsafeMutablePointer<pollfd>, _ count: Int, _ timeout: CInt) -> CInt { poll(entries, nfds_t(count), timeout) }
@inline(__always) private func sysOpen(_ path: String, _ flags: CInt) -> CInt { open(path, flags) }

extension FileDescriptor.IOResult {
    init(_ outcome: SystemCallOutcome<Int>) {
        switch outcome {
        case .completed(let count): self = .transferred(count)
        case .wouldBlock: self = .wouldBlock
        }
    }
}

/// One of the process's standard streams. The library never owns these, so never closes them.
enum StandardStream: CInt {
    case input = 0
    case output = 1
    case error = 2

    /// Calls `body` with the stream as a descriptor, for the duration of the call.
    func withDescriptor<Value: ~Copyable, Failure: Error>(_ body: (borrowing FileDescriptor) throws(Failure) -> Value) throws(Failure) -> Value {
        let descriptor = FileDescriptor(owning: rawValue)
        let result = Result { () throws(Failure) in try body(descriptor) }
        descriptor.forget()
        return try result.get()
    }

    /// Writes every byte of `buffer`, blocking as needed.
    func writeAll(_ buffer: UnsafeRawBufferPointer) throws(SystemCallError) {
        try withDescriptor { descriptor throws(SystemCallError) in try descriptor.writeAll(buffer) }
    }

    /// A close-on-exec duplicate of the stream, numbered 3 or above.
    func duplicate() throws(SystemCallError) -> FileDescriptor {
        try withDescriptor { descriptor throws(SystemCallError) in try descriptor.duplicate(minimum: 3) }
    }

    /// A second, non-blocking descriptor for the stream, where it is a pipe; see
    /// ``FileDescriptor/reopenedNonBlocking()``.
    func reopenedNonBlocking() -> FileDescriptor? {
        withDescriptor { $0.reopenedNonBlocking() }
    }
}

extension FileDescriptor {
    /// Lets go of the number without closing it: for descriptors this library does not own.
    fileprivate consuming func forget() { discard self }
}

/// A descriptor kept by an object: for one that several owners use (a cached `/dev/null`) or
/// that an escaping closure keeps (a thread's), which cannot capture a noncopyable value.
/// Closed when the object goes.
final class DescriptorBox: @unchecked Sendable {
    // @unchecked: `storage` is set in init and only taken in deinit, when no one else holds us.
    private var storage: FileDescriptor?

    init(_ descriptor: consuming FileDescriptor) { storage = consume descriptor }

    /// The descriptor, for as long as this object lives.
    var descriptor: FileDescriptor {
        _read { yield storage! }
    }

    deinit { storage.take()?.close() }
}
