// Writes the seed corpora: SeedGenerator <corpus dir>  →  <dir>/frames/*.bin, <dir>/payloads/*.bin

import Foundation

@main
struct SeedGenerator {
    static func main() throws {
        let arguments = CommandLine.arguments
        let root = URL(fileURLWithPath: arguments.count > 1 ? arguments[1] : "Fuzz/corpus")
        for (folder, seeds) in [("frames", FuzzSeeds.frames()), ("payloads", FuzzSeeds.payloads())] {
            let directory = root.appendingPathComponent(folder)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            for (name, bytes) in seeds {
                try Data(bytes).write(to: directory.appendingPathComponent("seed-\(name).bin"))
            }
            print("wrote \(seeds.count) seeds to \(directory.path)")
        }
    }
}
