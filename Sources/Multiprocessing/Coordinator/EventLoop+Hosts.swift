/// The machines workers run on: connecting to remote hosts at start, choosing a host for each
/// new worker, noticing when no host is left, and disconnecting at the end.
extension EventLoop {
    /// Starts every remote host's connection and waits until one can take workers (at once
    /// when this machine is one of the hosts) or every one has failed. Hosts still connecting
    /// join when they answer, so one slow or unreachable host does not hold up the others.
    ///
    /// - Returns: An error naming every host and why it is down when none can run workers;
    ///   nil otherwise (hosts that failed are tried again with backoff meanwhile).
    func connectHosts() -> ProcessPoolError? {
        for case let link? in links { link.start() }
        guard hosts.allSatisfy({ !$0.isLocal }) else { return nil }
        while !links.contains(where: { $0?.status == .up }) && links.contains(where: { $0?.status == .connecting }) {
            driveHosts()
        }
        guard !links.contains(where: { $0?.status == .up }) else { return nil }
        return ProcessPoolError(.hostLost, "no host could be reached: " + hostReport())
    }

    /// One round of the remote hosts' connections alone (no workers yet, or none left): their
    /// timers, a wait for their events or the nearest deadline, and the events.
    private func driveHosts() {
        var pollSet = PollSet()
        _ = core.waker.add(to: &pollSet)
        var nearest: ContinuousClock.Instant?
        for case let link? in links {
            link.prepare()
            link.register(in: &pollSet)
            if let deadline = link.deadline, nearest == nil || deadline < nearest! { nearest = deadline }
        }
        _ = try? pollSet.wait(timeoutMilliseconds: nearest.map { PollSet.timeoutMilliseconds(until: $0, now: clock.now) } ?? -1)
        if !pollSet.events(at: 0).isEmpty { core.waker.drain() }
        for case let link? in links { link.handleEvents(in: pollSet) }
    }

    /// Each remote host that is down, and why: `name: reason; …`.
    func hostReport() -> String {
        links.compactMap { link -> String? in
            guard let link else { return nil }
            switch link.status {
            case .down(let reason, _): return "\(link.name): \(reason)"
            case .stopped: return "\(link.name): stopped"
            case .connecting: return "\(link.name): still connecting"
            case .up: return nil
            }
        }.joined(separator: "; ")
    }

    /// The host that should get the next worker: of those that are up and have a free slot,
    /// the one with the most free slots (the first listed among equals).
    func hostWithFreeSlot() -> Int? {
        var best: (index: Int, free: Int)?
        for index in hosts.indices where links[index] == nil || links[index]!.takesWorkers {
            let free = hosts[index].slots - workers.count { $0.host == index && $0.state != .stopping }
            if free > 0 && (best == nil || free > best!.free) { best = (index, free) }
        }
        return best?.index
    }

    /// Free slots on hosts that can take workers now.
    func freeSlotsOnLiveHosts() -> Int {
        var free = 0
        for index in hosts.indices where links[index] == nil || links[index]!.takesWorkers {
            free += max(0, hosts[index].slots - workers.count { $0.host == index && $0.state != .stopping })
        }
        return free
    }

    /// When every host is remote and down, and each has failed to connect again since it was
    /// lost (so a short break of a single host does not fail anything): the error to fail the
    /// waiting jobs with, naming every host and why.
    func noHostLeft() -> ProcessPoolError? {
        guard hosts.allSatisfy({ !$0.isLocal }), workers.isEmpty else { return nil }
        for case let link? in links {
            guard case .down(_, let failedAttempts) = link.status, failedAttempts > 0 else { return nil }
        }
        return ProcessPoolError(.hostLost, "no host is left to run jobs: " + hostReport())
    }

    /// Ends every remote connection and waits until each transport has exited (an agent that
    /// answered gets a moment to stop its workers; see ``HostLink/stop()``).
    func disconnectHosts() {
        for case let link? in links { link.stop() }
        while links.contains(where: { $0 != nil && !$0!.hasEnded }) { driveHosts() }
    }
}
