// swift-tools-version: 6.1
//
// Airlock: hosts WinRM-style operations plug-ins on Linux, out of process.
//
// Module map (one job each):
//   CWSMan             the plug-in ABI: the public C header <wsman.h>
//   CAirlockShims      thin C shims for what Swift cannot call (variadics, GNU-only names, BPF, raw syscalls)
//   AirlockProtocol    the wire protocol v1: frames and messages, pure Swift, no I/O
//   AirlockPosix       every syscall wrapped once: EINTR retried, errno turned into a typed error
//   AirlockSandbox     the worker sandbox: namespaces, mounts, Landlock, seccomp, limits, user
//   AirlockWorker      the worker: loads a plug-in, calls its entry points, relays its callbacks
//   AirlockSupervisor  the supervisor: client socket, one worker per plug-in, routing, status
//   CSystemd           libsystemd (sd-daemon, sd-journal) as a system library (libsystemd-dev)
//   AirlockSystemd     sd_notify (READY/STATUS/WATCHDOG/STOPPING/RELOADING) and socket activation
//   AirlockLogging     swift-log handlers: journald (structured fields) or stderr; rate limiting
//   AirlockClient      the async/await client library applications embed
//   AirlockControl     the logic behind the `airlockctl` command line
//   CAirlockPAM        PAM (conversation, authenticate, account) and crypt(3) in C, for AirlockGatewayAuth
//   AirlockGatewayAuth the gateway's HTTP Basic credential checks: password file, PAM, cache
//   AirlockGateway     the WS-Man gateway: HTTP(S) server, SOAP, WinRS shell operations onto AirlockClient
//   airlockd, airlock-worker, airlockctl, airlock-wsman: thin executables
//   Sources/Plugins/*  example plug-ins in C (echo, shell, noop); Tests/Plugins/* hostile ones
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

/// C plug-ins are linked like any C shared object: without swiftc's Swift start-up object
/// and without a dependency on libswiftCore.so, which they do not use (see
/// Sources/Plugins/link-as-needed.sh); airlock-worker has the Swift runtime linked in.
let cPluginLinking: [LinkerSetting] = [
    .unsafeFlags(["-nostartfiles", "-use-ld=\(Context.packageDirectory)/Sources/Plugins/link-as-needed.sh"]),
]

let package = Package(
    name: "Airlock",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "airlockd", targets: ["airlockd"]),
        .executable(name: "airlock-worker", targets: ["airlock-worker"]),
        .executable(name: "airlockctl", targets: ["airlockctl"]),
        .executable(name: "airlock-bench", targets: ["airlock-bench"]),
        .executable(name: "airlock-wsman", targets: ["airlock-wsman"]),
        .library(name: "AirlockClient", targets: ["AirlockClient"]),
        .library(name: "AirlockProtocol", targets: ["AirlockProtocol"]),
        // Example plug-ins (C shared objects), built next to the executables.
        .library(name: "airlock-plugin-echo", type: .dynamic, targets: ["AirlockPluginEcho"]),
        .library(name: "airlock-plugin-shell", type: .dynamic, targets: ["AirlockPluginShell"]),
        .library(name: "airlock-plugin-noop", type: .dynamic, targets: ["AirlockPluginNoop"]),
        // Test plug-ins that misbehave on purpose.
        .library(name: "airlock-test-hostile", type: .dynamic, targets: ["AirlockTestHostile"]),
        .library(name: "airlock-test-noexport", type: .dynamic, targets: ["AirlockTestNoExport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.29.0"),
    ],
    targets: [
        // MARK: C
        .target(name: "CWSMan", path: "Sources/CWSMan"),
        .target(
            name: "CAirlockShims",
            path: "Sources/CAirlockShims",
            cSettings: [.define("_GNU_SOURCE")]
        ),

        .systemLibrary(
            name: "CSystemd",
            path: "Sources/CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // libpam (libpam0g-dev) and libcrypt (libcrypt-dev), for the gateway's Basic authentication.
        .target(
            name: "CAirlockPAM",
            path: "Sources/CAirlockPAM",
            cSettings: [.define("_GNU_SOURCE")],
            linkerSettings: [.linkedLibrary("pam"), .linkedLibrary("crypt")]
        ),

        // MARK: Libraries
        .target(name: "AirlockSystemd", dependencies: ["CSystemd"], swiftSettings: swiftSettings),
        .target(
            name: "AirlockLogging",
            dependencies: ["CSystemd", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .target(name: "AirlockProtocol", swiftSettings: swiftSettings),
        .target(name: "AirlockGatewayAuth", dependencies: ["CAirlockPAM"], swiftSettings: swiftSettings),
        .target(
            name: "AirlockPosix",
            dependencies: [
                "CAirlockShims",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swiftSettings
        ),
        // The supervisor–worker channel's shared-memory rings.
        .target(
            name: "AirlockChannel",
            dependencies: ["AirlockPosix", "CAirlockShims"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AirlockSandbox",
            dependencies: ["AirlockPosix", "AirlockProtocol", "CAirlockShims"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AirlockWorker",
            dependencies: ["AirlockProtocol", "AirlockPosix", "AirlockChannel", "AirlockSandbox", "CWSMan", "CAirlockShims"],
            // As for the supervisor: release builds skip the dynamic exclusivity checks
            // (swift::runtime::AccessSet on every request); debug builds and tests keep them.
            swiftSettings: swiftSettings + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        .target(
            name: "AirlockSupervisor",
            dependencies: [
                "AirlockProtocol", "AirlockPosix", "AirlockChannel", "AirlockSandbox", "CAirlockShims",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            // Release builds skip the dynamic exclusivity checks of the event loop's class
            // state (about 15% of the supervisor's instructions); debug builds, and so the
            // tests, keep them.
            swiftSettings: swiftSettings + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        .target(
            name: "AirlockClient",
            dependencies: ["AirlockProtocol", "AirlockPosix"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AirlockControl",
            dependencies: [
                "AirlockClient", "AirlockProtocol", "AirlockPosix",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),

        .target(
            name: "AirlockGateway",
            dependencies: [
                "AirlockClient", "AirlockGatewayAuth", "AirlockSystemd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Executables
        .executableTarget(
            name: "airlockd",
            dependencies: [
                "AirlockSupervisor", "AirlockSystemd", "AirlockLogging",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "airlock-worker",
            dependencies: ["AirlockWorker"],
            exclude: ["exports.list"],
            swiftSettings: swiftSettings,
            // Export exactly the host callbacks so a dlopen()ed plug-in resolves them by name.
            // The Swift runtime is linked in (-static-stdlib): exec no longer loads
            // libswiftCore and its companions (milliseconds of every cold start).
            linkerSettings: [.unsafeFlags([
                "-static-stdlib",
                "-Xlinker", "--dynamic-list=\(Context.packageDirectory)/Sources/airlock-worker/exports.list",
            ])]
        ),
        .executableTarget(
            name: "airlockctl",
            dependencies: ["AirlockControl"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "airlock-wsman",
            dependencies: [
                "AirlockGateway", "AirlockGatewayAuth", "AirlockSystemd", "AirlockLogging",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // The benchmark of issue 7: a real airlockd with the noop plug-in (`swift run -c release airlock-bench`).
        .executableTarget(
            name: "airlock-bench",
            // airlockd and airlock-worker are dependencies only so `swift run airlock-bench` builds them.
            dependencies: ["AirlockClient", "AirlockProtocol", "AirlockPosix", "CAirlockShims", "airlockd", "airlock-worker"],
            swiftSettings: swiftSettings
        ),

        // MARK: Example plug-ins (C)
        .target(name: "AirlockPluginEcho", dependencies: ["CWSMan"], path: "Sources/Plugins/echo", linkerSettings: cPluginLinking),
        .target(name: "AirlockPluginShell", dependencies: ["CWSMan"], path: "Sources/Plugins/shell", linkerSettings: cPluginLinking),
        .target(name: "AirlockPluginNoop", dependencies: ["CWSMan"], path: "Sources/Plugins/noop", linkerSettings: cPluginLinking),

        // MARK: Test plug-ins (C)
        .target(name: "AirlockTestHostile", dependencies: ["CWSMan"], path: "Tests/Plugins/hostile", linkerSettings: cPluginLinking),
        .target(name: "AirlockTestNoExport", dependencies: ["CWSMan"], path: "Tests/Plugins/noexport", linkerSettings: cPluginLinking),

        // MARK: Tests
        .testTarget(
            name: "AirlockSystemdTests",
            dependencies: ["AirlockSystemd", "AirlockLogging", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // A real process around AirlockSystemd/AirlockLogging for AirlockSystemdTests (socket
        // activation) and Tests/systemd/nspawn-test.sh (a stand-in airlockd under the units).
        .executableTarget(
            name: "airlock-systemd-probe",
            dependencies: ["AirlockSystemd", "AirlockLogging", .product(name: "Logging", package: "swift-log")],
            path: "Tests/systemd/probe",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AirlockPosixTests",
            dependencies: ["AirlockPosix"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AirlockChannelTests",
            dependencies: ["AirlockChannel", "AirlockPosix"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AirlockSandboxTests",
            dependencies: ["AirlockSandbox", "AirlockPosix", "CAirlockShims"],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "AirlockABITests", dependencies: ["CWSMan"], swiftSettings: swiftSettings),
        .testTarget(
            name: "AirlockWorkerTests",
            dependencies: ["AirlockProtocol", "AirlockPosix", "AirlockChannel"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AirlockProtocolTests",
            dependencies: ["AirlockProtocol"],
            swiftSettings: swiftSettings
        ),
        // Real PAM (pam_unix against a temporary system user) and real crypt(3); runs as root.
        .testTarget(
            name: "AirlockGatewayAuthTests",
            dependencies: ["AirlockGatewayAuth"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AirlockIntegrationTests",
            // CAirlockShims: a raw setresuid on one thread, to connect as another user (SecurityTests).
            dependencies: ["AirlockClient", "AirlockProtocol", "AirlockPosix", "CAirlockShims", "CWSMan"],
            swiftSettings: swiftSettings
        ),
        // Tests/systemd/nspawn-test.sh (a real systemd in a container) and deploy/verify.sh,
        // run against the build products next to the test bundle.
        .testTarget(name: "AirlockServiceTests", dependencies: [], swiftSettings: swiftSettings),
    ]
)
