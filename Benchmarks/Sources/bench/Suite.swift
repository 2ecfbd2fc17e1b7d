import Foundation

struct BenchmarkError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

/// One thing measured in a scenario: ours, or a baseline. Each call of `measure` is one
/// repetition and returns one value (a rate, a time, a size).
struct Contender {
    /// The figures it measures, each a row of its own: usually one, or a median and a tail
    /// (p50 and p99) taken from the same samples.
    let names: [String]
    let unit: String
    let isOurs: Bool
    /// Why it cannot run here (a baseline that is not installed); nil if it can.
    var unavailable: String?
    /// One value per name.
    let measure: () async throws -> [Double]

    init(_ name: String, unit: String, ours: Bool = false, unavailable: String? = nil, measure: @escaping () async throws -> Double) {
        self.init([name], unit: unit, ours: ours, unavailable: unavailable) { [try await measure()] }
    }

    init(_ names: [String], unit: String, ours: Bool = false, unavailable: String? = nil, measure: @escaping () async throws -> [Double]) {
        self.names = names
        self.unit = unit
        isOurs = ours
        self.unavailable = unavailable
        self.measure = measure
    }
}

/// A target from the performance issue: ours ÷ theirs at least (or at most) `bound`. With no
/// `theirs`, the bound applies to our median itself.
struct Bar: Codable {
    enum Kind: String, Codable { case atLeast, atMost }
    let ours: String
    let theirs: String?
    let kind: Kind
    let bound: Double
    let label: String

    static func ratio(_ ours: String, _ theirs: String, atLeast bound: Double, _ label: String) -> Bar {
        Bar(ours: ours, theirs: theirs, kind: .atLeast, bound: bound, label: label)
    }

    static func ratio(_ ours: String, _ theirs: String, atMost bound: Double, _ label: String) -> Bar {
        Bar(ours: ours, theirs: theirs, kind: .atMost, bound: bound, label: label)
    }

    static func value(_ ours: String, atMost bound: Double, _ label: String) -> Bar {
        Bar(ours: ours, theirs: nil, kind: .atMost, bound: bound, label: label)
    }
}

struct Scenario {
    let id: String
    let title: String
    var contenders: [Contender]
    let bars: [Bar]
    /// Brings up what the contenders need while they run (scenario j's private sshd), just
    /// before the first repetition; if it throws, every contender is skipped with the reason.
    var setUp: (() async throws -> Void)? = nil
    /// Takes down what `setUp` brought up (also what it left when it failed halfway), after
    /// the last repetition.
    var tearDown: (() -> Void)? = nil
}

/// What one contender measured: every repetition's value.
struct Measured: Codable {
    let contender: String
    let unit: String
    let ours: Bool
    var values: [Double]
    var skipped: String?

    var median: Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}

struct BarResult: Codable {
    let label: String
    let ours: String
    let theirs: String?
    let kind: Bar.Kind
    let bound: Double
    /// ours ÷ theirs (or our median where there is no `theirs`); nil if either was skipped.
    let ratio: Double?
    let met: Bool?
}

struct ScenarioResult: Codable {
    let id: String
    let title: String
    var measured: [Measured]
    var bars: [BarResult]
}

struct SuiteResult: Codable {
    let date: String
    let machine: String
    let workers: Int
    let repetitions: Int
    let quick: Bool
    var scenarios: [ScenarioResult]
}

/// Runs each scenario's contenders interleaved (ours, baseline, ours, baseline, …), so that a
/// change in the machine's state during the run touches all of them alike.
func run(_ scenario: Scenario, repetitions: Int, log: (String) -> Void) async -> ScenarioResult {
    var contenders = scenario.contenders
    defer { scenario.tearDown?() }
    if let setUp = scenario.setUp {
        do {
            try await setUp()
        } catch {
            log("  skipped: \(error)")
            for index in contenders.indices where contenders[index].unavailable == nil { contenders[index].unavailable = "\(error)" }
        }
    }
    var measured: [Measured] = []
    var rows: [Range<Int>] = []  // each contender's rows in `measured`
    for contender in contenders {
        let first = measured.count
        measured += contender.names.map {
            Measured(contender: $0, unit: contender.unit, ours: contender.isOurs, values: [], skipped: contender.unavailable)
        }
        rows.append(first..<measured.count)
    }
    for repetition in 1...repetitions {
        for (index, contender) in contenders.enumerated() where measured[rows[index].lowerBound].skipped == nil {
            do {
                let values = try await contender.measure()
                precondition(values.count == contender.names.count, "\(contender.names) measured \(values.count) values")
                for (row, value) in zip(rows[index], values) {
                    measured[row].values.append(value)
                    log("  \(scenario.id) #\(repetition) \(measured[row].contender): \(format(value)) \(contender.unit)")
                }
            } catch {
                for row in rows[index] { measured[row].skipped = "failed: \(error)" }
                log("  \(scenario.id) \(contender.names[0]) failed: \(error)")
            }
        }
    }
    let bars = scenario.bars.map { bar -> BarResult in
        let ours = measured.first { $0.contender == bar.ours }?.median
        let theirs = bar.theirs.map { name in measured.first { $0.contender == name }?.median }
        var ratio: Double?
        if let ours {
            if let theirs { ratio = theirs.map { ours / $0 } } else { ratio = ours }
        }
        let met = ratio.map { bar.kind == .atLeast ? $0 >= bar.bound : $0 <= bar.bound }
        return BarResult(label: bar.label, ours: bar.ours, theirs: bar.theirs, kind: bar.kind, bound: bar.bound, ratio: ratio, met: met)
    }
    return ScenarioResult(id: scenario.id, title: scenario.title, measured: measured, bars: bars)
}

/// Three significant figures, without exponent notation for everyday sizes.
func format(_ value: Double) -> String {
    let magnitude = abs(value)
    if magnitude >= 1e9 { return String(format: "%.3gG", value / 1e9) }
    if magnitude >= 1e6 { return String(format: "%.3gM", value / 1e6) }
    if magnitude >= 100 { return String(format: "%.0f", value) }
    if magnitude >= 10 { return String(format: "%.1f", value) }
    if magnitude >= 1 { return String(format: "%.2f", value) }
    return String(format: "%.3g", value)
}

func formatRatio(_ ratio: Double) -> String {
    ratio >= 10 ? String(format: "%.0f×", ratio) : String(format: "%.2f×", ratio)
}

// MARK: Reports

/// The table of medians, ranges and ratios, in Markdown (it reads as plain text too).
func table(_ result: SuiteResult) -> String {
    // A name such as "cat | wc -l" must not end its cell.
    func cell(_ text: String) -> String { text.replacingOccurrences(of: "|", with: "\\|") }
    var lines: [String] = []
    lines.append("| scenario | contender | median | range | unit |")
    lines.append("|---|---|---|---|---|")
    for scenario in result.scenarios {
        for measured in scenario.measured {
            let name = cell(measured.ours ? "**\(measured.contender)**" : measured.contender)
            if let median = measured.median, let low = measured.values.min(), let high = measured.values.max() {
                lines.append("| \(scenario.id). \(scenario.title) | \(name) | \(format(median)) | \(format(low))–\(format(high)) | \(measured.unit) |")
            } else {
                lines.append("| \(scenario.id). \(scenario.title) | \(name) | skipped | \(cell(measured.skipped ?? "")) | |")
            }
        }
    }
    lines.append("")
    lines.append("| scenario | ratio (ours ÷ theirs) | measured | bar | met |")
    lines.append("|---|---|---|---|---|")
    for scenario in result.scenarios {
        for bar in scenario.bars {
            let what = cell(bar.theirs.map { "\(bar.ours) ÷ \($0)" } ?? bar.ours)
            let measured = bar.ratio.map { bar.theirs == nil ? format($0) : formatRatio($0) } ?? "n/a"
            let bound = (bar.kind == .atLeast ? "≥ " : "≤ ") + (bar.theirs == nil ? format(bar.bound) : formatRatio(bar.bound))
            let met = bar.met.map { $0 ? "yes" : "**no**" } ?? "n/a"
            lines.append("| \(scenario.id). \(cell(bar.label)) | \(what) | \(measured) | \(bound) | \(met) |")
        }
    }
    return lines.joined(separator: "\n")
}

/// A chart of every bar: how far ours is from the baseline, as "times better" on a log scale,
/// with the target marked. Plain SVG, written by hand.
func chart(_ result: SuiteResult) -> String {
    let rows = result.scenarios.flatMap { scenario in
        scenario.bars.compactMap { bar -> (String, Double, Double)? in
            guard let ratio = bar.ratio, bar.theirs != nil else { return nil }
            // Orient so that right is better: for "at most" bars (times, latency), invert.
            let better = bar.kind == .atLeast ? ratio : 1 / ratio
            let target = bar.kind == .atLeast ? bar.bound : 1 / bar.bound
            return ("\(scenario.id). \(bar.label)", better, target)
        }
    }
    let width = 900.0, labelWidth = 330.0, rowHeight = 26.0, top = 50.0
    let height = top + rowHeight * Double(rows.count) + 40
    let plotWidth = width - labelWidth - 30
    // Log scale from 1/4× to 1000×.
    let low = log10(0.25), high = log10(1000.0)
    func x(_ value: Double) -> Double {
        labelWidth + (log10(min(max(value, 0.25), 1000)) - low) / (high - low) * plotWidth
    }
    var svg = """
    <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
    <rect width="100%" height="100%" fill="white"/>
    <text x="10" y="20" font-size="14" font-weight="bold">swift-multiprocessing vs the alternatives: how many times better (log scale)</text>
    <text x="10" y="38" fill="#555">\(result.workers) workers, median of \(result.repetitions) interleaved runs; bars: ours, ticks: the target</text>

    """
    for tick in [0.25, 0.5, 1, 2, 5, 10, 20, 100, 1000] {
        let position = x(tick)
        svg += "<line x1=\"\(position)\" y1=\"\(top - 6)\" x2=\"\(position)\" y2=\"\(height - 30)\" stroke=\"\(tick == 1 ? "#000" : "#ddd")\"/>\n"
        svg += "<text x=\"\(position)\" y=\"\(height - 14)\" text-anchor=\"middle\" fill=\"#555\">\(tick < 1 ? String(format: "%.2g", tick) : String(Int(tick)))×</text>\n"
    }
    for (index, row) in rows.enumerated() {
        let y = top + Double(index) * rowHeight
        let met = row.1 >= row.2
        let start = x(1), end = x(row.1)
        svg += "<text x=\"\(labelWidth - 8)\" y=\"\(y + 16)\" text-anchor=\"end\">\(escape(row.0))</text>\n"
        svg += "<rect x=\"\(min(start, end))\" y=\"\(y + 4)\" width=\"\(max(1, abs(end - start)))\" height=\"\(rowHeight - 8)\" fill=\"\(met ? "#2e7d32" : "#c62828")\"/>\n"
        svg += "<line x1=\"\(x(row.2))\" y1=\"\(y + 1)\" x2=\"\(x(row.2))\" y2=\"\(y + rowHeight - 1)\" stroke=\"#000\" stroke-width=\"2\"/>\n"
        svg += "<text x=\"\(max(start, end) + 4)\" y=\"\(y + 16)\" fill=\"#333\">\(formatRatio(row.1))</text>\n"
    }
    svg += "</svg>\n"
    return svg
}

private func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
}
