import CMultiprocessingShims
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Readiness of one descriptor, as the event loop asks for it and as `poll` reports it.
struct PollInterest: OptionSet {
    let rawValue: Int16
    static let readable = PollInterest(rawValue: Int16(POLLIN))
    static let writable = PollInterest(rawValue: Int16(POLLOUT))
    /// The peer closed its end, or the descriptor is in error: reads will say why.
    static let hangUp = PollInterest(rawValue: Int16(POLLHUP | POLLERR | POLLNVAL))
}

/// A reusable `poll(2)` set. The event loop watches a handful of descriptors per worker, so
/// `poll` costs the same as `epoll` here and works on every POSIX system.
struct PollSet {
    private var entries: [pollfd] = []

    mutating func removeAll() { entries.removeAll(keepingCapacity: true) }

    /// Adds a descriptor and returns its slot, for `events(at:)` after the wait.
    @discardableResult
    mutating func add(_ descriptor: borrowing FileDescriptor, _ interest: PollInterest) -> Int {
        entries.append(pollfd(fd: descriptor.rawValue, events: interest.rawValue, revents: 0))
        return entries.count - 1
    }

    /// Adds a descriptor by number, for one shared with other threads that only borrow it for
    /// as long as its owner keeps it open (the waker's).
    @discardableResult
    mutating func add(number: CInt, _ interest: PollInterest) -> Int {
        entries.append(pollfd(fd: number, events: interest.rawValue, revents: 0))
        return entries.count - 1
    }

    func events(at slot: Int) -> PollInterest { PollInterest(rawValue: entries[slot].revents) }

    /// Leaves the descriptor in `slot` out of the next waits (poll skips negative numbers), so
    /// a stream whose reader is not ready for more does not wake the loop, even at its end.
    mutating func ignore(at slot: Int) { entries[slot].fd = -1 }

    /// The timeout for a wait that must end by `deadline`: whole milliseconds, rounded up so
    /// that the wait does not end just before it; 0 when it has passed.
    static func timeoutMilliseconds(until deadline: ContinuousClock.Instant, now: ContinuousClock.Instant) -> Int32 {
        let remaining = deadline - now
        if remaining <= .zero { return 0 }
        let (seconds, attoseconds) = remaining.components
        guard seconds < Int64(Int32.max / 1000) else { return Int32.max }
        return Int32(seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
    }

    /// Waits until a descriptor is ready or `timeoutMilliseconds` pass (-1: no limit).
    /// Waits for an event or the timeout; returns how many descriptors have events.
    @discardableResult
    mutating func wait(timeoutMilliseconds: Int32) throws(SystemCallError) -> Int {
        let count = entries.count
        return Int(try entries.withUnsafeMutableBufferPointer { buffer throws(SystemCallError) in
            try systemCall("poll") { poll(buffer.baseAddress, nfds_t(count), timeoutMilliseconds) }
        })
    }
}

/// Wakes a thread blocked in `PollSet.wait` from any thread: an eventfd on Linux, a pipe elsewhere.
///
/// The owner closes it when its loop ends, so no descriptor outlives a pool's shutdown; a lock
/// makes a late `wake()` a no-op rather than a write to a descriptor number reused since.
final class Waker: Sendable {
    /// The descriptors while open: an eventfd alone, or a pipe's two ends. A lock makes a late
    /// `wake()` a no-op rather than a write to a descriptor number reused since.
    private let descriptors: Mutex<Descriptors?>

    private struct Descriptors: ~Copyable {
        var readEnd: FileDescriptor
        /// Nil for an eventfd, which is written and read through one descriptor.
        var writeEnd: FileDescriptor?
    }

    /// The number to poll for readability; stays valid until ``close()``.
    let pollableNumber: CInt

    init() throws(SystemCallError) {
        let eventDescriptor = mp_eventfd_cloexec()
        let opened: Descriptors
        if eventDescriptor >= 0 {
            opened = Descriptors(readEnd: FileDescriptor(owning: eventDescriptor), writeEnd: nil)
        } else {
            let pipe = try FileDescriptor.pipe(nonBlocking: true)
            opened = Descriptors(readEnd: pipe.readEnd, writeEnd: pipe.writeEnd)
        }
        pollableNumber = opened.readEnd.rawValue
        descriptors = Mutex(consume opened)
    }

    /// Adds the waker to `pollSet`, readable when woken.
    func add(to pollSet: inout PollSet) -> Int {
        pollSet.add(number: pollableNumber, .readable)
    }

    /// Makes the descriptor readable. Non-blocking; a full counter or pipe means a wake-up is
    /// already pending, which is all that is needed.
    func wake() {
        descriptors.withLock { descriptors in
            guard descriptors != nil else { return }
            var one: UInt64 = 1
            withUnsafeBytes(of: &one) { bytes in
                if descriptors!.writeEnd != nil {
                    _ = try? descriptors!.writeEnd!.write(UnsafeRawBufferPointer(rebasing: bytes[0..<1]))
                } else {
                    _ = try? descriptors!.readEnd.write(bytes)
                }
            }
        }
    }

    /// Consumes pending wake-ups. Called only by the thread that polls, before ``close()``.
    func drain() {
        var scratch = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        descriptors.withLock { descriptors in
            guard descriptors != nil else { return }
            repeat {
                let result = withUnsafeMutableBytes(of: &scratch) { try? descriptors!.readEnd.read(into: $0) }
                guard case .transferred(let count)? = result, count > 0 else { return }
            } while descriptors!.writeEnd != nil  // one read resets an eventfd's counter
        }
    }

    /// Closes the descriptors; later `wake()` calls do nothing.
    func close() {
        guard let closing = descriptors.withLock({ $0.take() }) else { return }
        closing.readEnd.close()
        closing.writeEnd?.close()
    }

    deinit { close() }
}

/// Names the calling thread. Foundation's `Thread.name` does not reach the kernel on Linux, so
/// threads that should be recognisable in `ps -T` or a crash report name themselves.
func nameCurrentThread(_ name: String) { mp_set_current_thread_name(name) }

/// Blocks SIGPIPE for the calling thread only (see `mp_block_sigpipe_on_this_thread`).
func blockBrokenPipeSignal() { mp_block_sigpipe_on_this_thread() }
