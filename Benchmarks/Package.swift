// swift-tools-version: 6.1
import PackageDescription

// Benchmarks live in a package of their own, so the product keeps no dependencies of theirs.
let package = Package(
    name: "swift-multiprocessing-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(
            name: "quick-figures",
            dependencies: [.product(name: "Multiprocessing", package: "swift-multiprocessing")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        )
    ]
)
