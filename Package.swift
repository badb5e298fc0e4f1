// swift-tools-version: 6.1
import PackageDescription

let upcomingFeatures: [SwiftSetting] = [
    // https://github.com/swiftlang/swift-evolution/blob/main/proposals/0335-existential-any.md
    .enableUpcomingFeature("ExistentialAny"),
    // https://github.com/swiftlang/swift-evolution/blob/main/proposals/0409-access-level-on-imports.md
    .enableUpcomingFeature("InternalImportsByDefault"),
    // https://github.com/swiftlang/swift-evolution/blob/main/proposals/0444-member-import-visibility.md
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "Flexpert",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "flexpert", targets: ["flexpert"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.20.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-async-algorithms", from: "1.0.0"),
    ],
    targets: [
        .target(name: "Compute", swiftSettings: upcomingFeatures),
        .target(name: "Checkpoint", dependencies: ["Compute"], swiftSettings: upcomingFeatures),
        // Pure planning of where experts live: placements, DeepSeek's balancer, move plans, load windows.
        .target(name: "Experts", swiftSettings: upcomingFeatures),
        // Jinja as transformers renders chat templates with it.
        .target(name: "Jinja", swiftSettings: upcomingFeatures),
        .target(name: "Tokenization", dependencies: ["Jinja"], swiftSettings: upcomingFeatures),
        .target(
            name: "ComputeCPU",
            dependencies: ["Compute"],
            swiftSettings: upcomingFeatures + [.unsafeFlags(["-Ounchecked"])]
        ),
        // Calls the CUDA functions that take a struct by value (NCCL's unique id, the driver's IPC handle).
        .target(name: "CUDAShim"),
        .target(
            name: "ComputeCUDA",
            dependencies: ["Compute", "CUDAShim"],
            resources: [.copy("Kernels")],
            swiftSettings: upcomingFeatures
        ),
        // The CUDA driver API, NVRTC and cuBLAS emulated on the CPU, running kernels.cu itself: what
        // lets CI test the CUDA backend's code without a GPU.
        .target(
            name: "CUDAKernelEmulator",
            exclude: ["KernelRuntime.hpp"],
            cxxSettings: [.unsafeFlags(["-ffp-contract=off"])]
        ),
        .target(name: "BackendParity", dependencies: ["Compute", "ComputeCPU", "Models"], swiftSettings: upcomingFeatures),
        .target(name: "Models", dependencies: ["Compute", "Checkpoint", "Experts"], swiftSettings: upcomingFeatures),
        .target(
            name: "Scheduling",
            dependencies: [.product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: upcomingFeatures
        ),
        // The vocabulary the front end and the ranks share: requests, outputs, sampling, figures.
        .target(name: "OpenAIAPI", swiftSettings: upcomingFeatures),
        .target(name: "Elastic", swiftSettings: upcomingFeatures),
        .target(name: "Messages", dependencies: ["Elastic"], swiftSettings: upcomingFeatures),
        .target(
            name: "Engine",
            dependencies: ["Compute", "Elastic", "Experts", "Messages", "Models", "Checkpoint", "Parallelism", "Scheduling", "Transport"],
            swiftSettings: upcomingFeatures
        ),
        .target(name: "FrontEnd", dependencies: ["Compute", "Jinja", "Messages", "OpenAIAPI", "Tokenization"], swiftSettings: upcomingFeatures),
        .target(
            name: "Server",
            dependencies: [
                "Compute", "FrontEnd", "Messages", "OpenAIAPI", "Tokenization",
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: upcomingFeatures
        ),
        .target(name: "Transport", dependencies: ["Compute", "Messages"], swiftSettings: upcomingFeatures),
        .target(
            name: "Coordination",
            dependencies: ["Compute", "Elastic", "Messages", "Scheduling", "Transport"],
            swiftSettings: upcomingFeatures
        ),
        .target(name: "Parallelism", dependencies: ["Compute", "Experts", "Transport", "Models"], swiftSettings: upcomingFeatures),
        .target(
            name: "BenchServe",
            dependencies: [
                "Compute", "OpenAIAPI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: upcomingFeatures
        ),
        .executableTarget(
            name: "flexpert",
            dependencies: [
                "Compute", "ComputeCPU", "ComputeCUDA", "BackendParity", "Checkpoint", "Tokenization", "Models", "Engine", "Scheduling", "FrontEnd", "Server", "BenchServe", "Coordination", "Elastic", "Experts", "Messages", "Transport", "Parallelism",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            resources: [.copy("DefaultModel")],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "EngineTests",
            dependencies: ["Compute", "ComputeCPU", "Models", "Engine", "Messages", "Scheduling"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "ServerTests",
            dependencies: [
                "BenchServe", "Checkpoint", "Compute", "ComputeCPU", "Engine", "Messages", "Models", "OpenAIAPI", "Scheduling", "Server",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            exclude: ["openai_client.py", "openai_tools_client.py"],
            swiftSettings: upcomingFeatures
        ),
        // What several test targets share: ranks as threads.
        .target(name: "TestSupport", dependencies: ["Compute"], path: "Tests/TestSupport", swiftSettings: upcomingFeatures),
        .testTarget(name: "TransportTests", dependencies: ["Compute", "Messages", "Transport"], swiftSettings: upcomingFeatures),
        .testTarget(name: "MessagesTests", dependencies: ["Compute", "Elastic", "Messages"], swiftSettings: upcomingFeatures),
        .testTarget(name: "ElasticTests", dependencies: ["Elastic"], swiftSettings: upcomingFeatures),
        .testTarget(name: "OpenAIAPITests", dependencies: ["OpenAIAPI"], swiftSettings: upcomingFeatures),
        .testTarget(
            name: "ParallelismTests",
            dependencies: ["Parallelism", "Experts", "Transport", "Checkpoint", "Compute", "ComputeCPU", "Models", "Engine", "Messages", "Scheduling",
                           "TestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "CoordinationTests",
            dependencies: ["Coordination", "Compute", "ComputeCPU", "Experts", "Transport", "Engine", "Messages", "Models", "Scheduling"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(name: "FrontEndTests", dependencies: ["FrontEnd", "Jinja", "OpenAIAPI", "Tokenization"], swiftSettings: upcomingFeatures),
        .testTarget(name: "JinjaTests", dependencies: ["Jinja"], swiftSettings: upcomingFeatures),
        .testTarget(name: "ExpertsTests", dependencies: ["Experts"], swiftSettings: upcomingFeatures),
        .testTarget(name: "SchedulingTests", dependencies: ["Scheduling"], swiftSettings: upcomingFeatures),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "Compute"], swiftSettings: upcomingFeatures),
        .testTarget(
            name: "TokenizationTests",
            dependencies: ["Jinja", "Tokenization"],
            resources: [],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "ComputeCUDATests",
            dependencies: ["ComputeCUDA", "CUDAKernelEmulator", "BackendParity", "Compute", "ComputeCPU", "Checkpoint", "Models", "Engine", "Messages",
                           "Scheduling", "Experts", "Parallelism", "TestSupport", "Transport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(name: "ComputeCPUTests", dependencies: ["Compute", "ComputeCPU"], swiftSettings: upcomingFeatures),
        .testTarget(
            name: "ModelsTests",
            dependencies: ["Compute", "ComputeCPU", "Checkpoint", "Jinja", "Models", "Engine", "Messages"],
            swiftSettings: upcomingFeatures
        ),
    ],
    cxxLanguageStandard: .cxx20
)
