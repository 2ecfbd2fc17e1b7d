import Dispatch
import Foundation
import Synchronization

/// Ctrl-C and SIGTERM: the first stops the run in good order (no new jobs, running ones
/// stopped, job log completed); a second exits at once. Workers lead their own process groups,
/// so a terminal's Ctrl-C reaches only `pool`.
final class Interrupt: @unchecked Sendable {
    // @unchecked: `sources` is written once, in `install`, and only kept alive, never read.
    static let shared = Interrupt()

    private let received = Atomic<Int32>(0)
    private var sources: [any DispatchSourceSignal] = []
    private let onFirst = Mutex<(@Sendable () -> Void)?>(nil)
    /// Kills what is still running, before a second signal ends the process.
    private let onSecond = Mutex<(@Sendable () -> Void)?>(nil)

    /// What to kill if a second signal comes (the pool's worker process groups).
    func setEmergencyStop(_ action: @escaping @Sendable () -> Void) {
        onSecond.withLock { $0 = action }
    }

    /// The signal that interrupted the run, if one did.
    var signal: Int32? {
        let value = received.load(ordering: .acquiring)
        return value == 0 ? nil : value
    }

    /// Starts listening; `action` runs once, on the first signal.
    func install(onFirstSignal action: @escaping @Sendable () -> Void) {
        onFirst.withLock { $0 = action }
        var installed: [any DispatchSourceSignal] = []
        for number in [SIGINT, SIGTERM] {
            Foundation.signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in handle(number) }
            source.resume()
            installed.append(source)
        }
        sources = installed
    }

    private func handle(_ number: Int32) {
        let (exchanged, _) = received.compareExchange(expected: 0, desired: number, ordering: .acquiringAndReleasing)
        if exchanged {
            let action = onFirst.withLock { $0 }
            action?()
        } else {
            // Second signal: no more waiting. Kill the workers' process groups (and so the
            // commands in them) first: a worker's own exit would leave its command running.
            onSecond.withLock { $0 }?()
            exit(128 + number)
        }
    }
}
