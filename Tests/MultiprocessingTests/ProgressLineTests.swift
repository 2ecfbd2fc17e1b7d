import Testing

@testable import pool

/// The progress lines of `pool run --bar`, `--eta` and `--progress`, as drawn on a terminal.
@Suite("Progress lines")
struct ProgressLineTests {
    @Test("before the number of jobs is known: the count, the rate and the time so far")
    func unknownTotal() {
        let bar = ProgressBar(style: .bar, total: nil, workers: 2)
        #expect(bar.line(finished: 10, failed: 0, elapsed: 4) == "10 done 2.5 jobs/s, 4s so far")
        bar.setTotal(40)
        #expect(bar.line(finished: 10, failed: 1, elapsed: 4) == "[#######                       ] 10/40 25% 2.5 jobs/s ETA 12s (1 failed)")
    }

    @Test("--eta and --progress lines")
    func otherStyles() {
        let eta = ProgressBar(style: .eta, total: 100, workers: 4)
        #expect(eta.line(finished: 25, failed: 0, elapsed: 5) == "ETA: 15s Left: 75 AVG: 0.20s")
        let progress = ProgressBar(style: .progress, total: 100, workers: 4)
        #expect(progress.line(finished: 25, failed: 0, elapsed: 5) == "local:4/25/25% 5.0s")
    }

    @Test("--memfree reads MemAvailable from /proc/meminfo, in bytes")
    func availableMemory() {
        let meminfo = "MemTotal:       24610148 kB\nMemFree:         1000000 kB\nMemAvailable:   20480000 kB\nBuffers:   1 kB\n"
        #expect(MemoryGate.availableMemory(meminfo: meminfo) == 20_480_000 * 1024)
        #expect(MemoryGate.availableMemory(meminfo: "MemTotal: 5 kB\n") == nil)
        #expect(MemoryGate.availableMemory() != nil, "this machine's /proc/meminfo")
    }

    @Test("sizes as GNU parallel reads them: capitals are powers of 1024, small letters of 1000")
    func sizes() throws {
        #expect(try RunCommand.parseSize("1K", for: "--block") == 1024)
        #expect(try RunCommand.parseSize("1k", for: "--block") == 1000)
        #expect(try RunCommand.parseSize("3m", for: "--block") == 3_000_000)
        #expect(try RunCommand.parseSize("2G", for: "--max-output") == 2 << 30)
        #expect(throws: UsageError.self) { try RunCommand.parseSize("1E", for: "--block", largest: 128 << 20) }
    }
}
