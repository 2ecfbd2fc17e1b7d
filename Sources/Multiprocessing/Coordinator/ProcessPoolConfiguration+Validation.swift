/// Range checks for every number a user sets, so that an absurd value is a thrown error naming
/// it, never a trap deep in the event loop (a `Duration` of centuries overflows the clock).
extension ProcessPoolConfiguration {
    /// The most workers a pool runs.
    public static let largestWorkerCount = 1 << 16
    /// The longest duration any setting takes: about a century.
    public static let longestDuration = Duration.seconds(100 * 365 * 24 * 3600)
    /// The smallest frame size a pool accepts: room for the handshakes and a small job.
    public static let smallestFrameSize = 4096

    /// Checks every field.
    ///
    /// - Throws: ``ProcessPoolError`` with ``ProcessPoolError/Code/invalidConfiguration``
    ///   naming the first field out of range and its value.
    public func validate() throws(ProcessPoolError) {
        try check(workerCount, "workerCount", in: 1...Self.largestWorkerCount)
        try check(maximumFrameSize, "maximumFrameSize", in: Self.smallestFrameSize...WireProtocol.absoluteMaximumFrameSize)
        try check(maximumQueuedJobs, "maximumQueuedJobs", in: 1...Int.max)
        try check(maximumQueuedBytes, "maximumQueuedBytes", in: 1...Int.max)
        if let batchSize { try check(batchSize, "batchSize", in: 1...Int.max) }
        try check(targetBatchDuration, "targetBatchDuration", allowingZero: false)
        if let jobTimeout { try check(jobTimeout, "jobTimeout", allowingZero: false) }
        try check(maximumRetries, "maximumRetries", in: 0...1_000_000)
        try check(Int(terminationSignal), "terminationSignal", in: 1...64)
        try check(terminationGracePeriod, "terminationGracePeriod", allowingZero: true)
        if let maximumJobsPerWorker { try check(maximumJobsPerWorker, "maximumJobsPerWorker", in: 1...Int.max) }
        if let maximumResidentMemory { try check(maximumResidentMemory, "maximumResidentMemory", in: 1...Int.max) }
        if let memoryLimit { try check(memoryLimit, "memoryLimit", in: 1...Int.max) }
        if let minimumWorkerCount { try check(minimumWorkerCount, "minimumWorkerCount", in: 0...workerCount) }
        if let idleTimeout { try check(idleTimeout, "idleTimeout", allowingZero: false) }
        try check(handshakeTimeout, "handshakeTimeout", allowingZero: false)
        try check(hostTimeout, "hostTimeout", allowingZero: false)
        // An agent takes at most a day (it must end what it started when its coordinator is
        // gone), and the timeout travels in whole milliseconds.
        if hostTimeout > .seconds(86_400) || hostTimeout < .milliseconds(1) {
            throw ProcessPoolError(.invalidConfiguration, "hostTimeout must be at least a millisecond and at most a day, not \(hostTimeout)")
        }
        try check(hostConnectTimeout, "hostConnectTimeout", allowingZero: false)
        var totalSlots = 0
        for (index, host) in hosts.enumerated() {
            try check(host.slots, "hosts[\(index)].slots", in: 1...Self.largestWorkerCount)
            totalSlots += host.slots
            try check(totalSlots, "the sum of hosts' slots", in: 1...Self.largestWorkerCount)
            try host.validate(at: index)
        }
    }
}

extension JobOptions {
    /// Checks the timeout and the retry count.
    ///
    /// - Throws: ``ProcessPoolError`` with ``ProcessPoolError/Code/invalidConfiguration``.
    public func validate() throws(ProcessPoolError) {
        if let timeout { try check(timeout, "JobOptions.timeout", allowingZero: false) }
        if let maximumRetries { try check(maximumRetries, "JobOptions.maximumRetries", in: 0...1_000_000) }
    }
}

private func check(_ value: Int, _ name: String, in range: ClosedRange<Int>) throws(ProcessPoolError) {
    guard range.contains(value) else {
        let upper = range.upperBound == Int.max ? "" : " and at most \(range.upperBound)"
        throw ProcessPoolError(.invalidConfiguration, "\(name) must be at least \(range.lowerBound)\(upper), not \(value)")
    }
}

private func check(_ value: Duration, _ name: String, allowingZero: Bool) throws(ProcessPoolError) {
    let lowerOK = allowingZero ? value >= .zero : value > .zero
    guard lowerOK, value <= ProcessPoolConfiguration.longestDuration else {
        throw ProcessPoolError(
            .invalidConfiguration,
            "\(name) must be \(allowingZero ? "zero or more" : "above zero") and at most a century, not \(value)")
    }
}
