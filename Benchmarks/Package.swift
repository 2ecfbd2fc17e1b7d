// swift-tools-version: 6.1
import Foundation
import PackageDescription

// A path dependency's identity is its folder's name, which depends on where the repository
// was cloned; read it rather than assume it.
let mainPackage = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

// Benchmarks live in a package of their own, so the product keeps no dependencies of theirs.
let package = Package(
    name: "swift-multiprocessing-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(
            name: "quick-figures",
            dependencies: [.product(name: "Multiprocessing", package: mainPackage)],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "bench",
            dependencies: [.product(name: "Multiprocessing", package: mainPackage)],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "payload-figures",
            dependencies: [.product(name: "Multiprocessing", package: mainPackage)],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(name: "trivial", swiftSettings: [.swiftLanguageMode(.v6)]),
        .executableTarget(name: "input-figures", swiftSettings: [.swiftLanguageMode(.v6)]),
        .executableTarget(
            name: "reliability-figures",
            dependencies: [.product(name: "Multiprocessing", package: mainPackage)],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
