// swift-tools-version: 6.1
import PackageDescription

// No package dependencies: the product uses the Swift toolchain only.
let strictSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "swift-multiprocessing",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Multiprocessing", targets: ["Multiprocessing"]),
        .executable(name: "pool-worker", targets: ["pool-worker"]),
        .executable(name: "primes", targets: ["primes"]),
        .executable(name: "pool", targets: ["pool"]),
    ],
    targets: [
        // The few C entry points Swift cannot import directly (variadic `prctl`, `syscall`,
        // and GNU extensions such as `pipe2`), wrapped as plain functions.
        .target(name: "CMultiprocessingShims"),
        .target(
            name: "Multiprocessing",
            dependencies: ["CMultiprocessingShims"],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "pool-worker",
            dependencies: ["Multiprocessing"],
            path: "Workers/pool-worker",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "primes",
            dependencies: ["Multiprocessing"],
            path: "Workers/primes",
            swiftSettings: strictSettings
        ),
        // The `pool` command line.
        .executableTarget(
            name: "pool",
            dependencies: ["Multiprocessing"],
            swiftSettings: strictSettings
        ),
        // Jobs that crash, hang, print and allocate: for the tests only, never shipped.
        .executableTarget(
            name: "fixture-worker",
            dependencies: ["Multiprocessing"],
            path: "Tests/FixtureWorker",
            swiftSettings: strictSettings
        ),
        // The README's and the DocC articles' code, compiled so that it cannot drift from the
        // API; DocumentationTests checks that every Swift block of the Markdown appears here.
        .executableTarget(
            name: "own-worker",
            dependencies: ["Multiprocessing"],
            path: "Examples/own-worker",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "job-options",
            dependencies: ["Multiprocessing"],
            path: "Examples/job-options",
            swiftSettings: strictSettings
        ),
        // A worker and a coordinator in two programs, sharing their job types through a library.
        .target(
            name: "PrimeJobs",
            dependencies: ["Multiprocessing"],
            path: "Examples/PrimeJobs",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "prime-worker",
            dependencies: ["Multiprocessing", "PrimeJobs"],
            path: "Examples/prime-worker",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "prime-coordinator",
            dependencies: ["Multiprocessing", "PrimeJobs"],
            path: "Examples/prime-coordinator",
            swiftSettings: strictSettings
        ),
        // Workers on other machines (the README's "Many machines").
        .executableTarget(
            name: "many-machines",
            dependencies: ["Multiprocessing", "PrimeJobs"],
            path: "Examples/many-machines",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "docc-overview",
            dependencies: ["Multiprocessing"],
            path: "Examples/docc-overview",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "MultiprocessingTests",
            dependencies: [
                "Multiprocessing", "CMultiprocessingShims", "fixture-worker", "pool", "pool-worker",
                "prime-coordinator", "prime-worker",
            ],
            swiftSettings: strictSettings
        ),
    ]
)
