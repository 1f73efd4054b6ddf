import AirlockPosix
import Foundation
import Glibc
import Testing

/// A real airlockd with the plug-ins the gateway tests reach, and a real airlock-wsman in
/// front of it, shared by the tests of one suite (see ``GatewayEnvironmentTrait``).
///
/// airlockd registers the `shell` plug-in at the cmd shell's resource URI, `echo` at
/// `http://schemas.airlock.dev/plugins/echo` and the hostile test plug-in at
/// `http://schemas.airlock.dev/test/hostile`, trusts root (the tests' user, and so the
/// gateway's) to assert identities, and has quotas large enough for the suite's tests
/// running in parallel as the same user. The gateway knows ``GatewayProcess/User/alice``
/// and ``GatewayProcess/User/bob``.
struct GatewayEnvironment: Sendable {
    let daemon: Daemon
    let gateway: GatewayProcess

    static let shellResourceURI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
    static let echoResourceURI = "http://schemas.airlock.dev/plugins/echo"
    static let hostileResourceURI = "http://schemas.airlock.dev/test/hostile"
    static let users: [GatewayProcess.User] = [.alice, .bob]

    /// The environment of the running suite.
    @TaskLocal static var current: GatewayEnvironment?

    /// The environment of the running suite, or an error naming the missing trait.
    static func require() throws -> GatewayEnvironment {
        guard let current else {
            throw HarnessError("no gateway environment: the suite needs the .gatewayEnvironment trait")
        }
        return current
    }

    /// airlockd's configuration for the gateway tests.
    static var daemonConfiguration: String {
        let quotas = """
            "Quotas": { "MaxShells": 400, "MaxShellsPerUser": 200, "MaxConcurrentUsers": 10,
                        "MaxConcurrentOperationsPerUser": 1000, "MaxConcurrentOperations": 2000,
                        "MaxConcurrentCommandsPerShell": 15 }
            """
        return """
            {
              // airlock-wsman runs as root in the tests.
              "TrustedGateways": ["root"],
              "Plugins": [
                { "Name": "shell", "Filename": "\(Daemon.pluginPath("shell"))",
                  "Resources": [ { "ResourceUri": "\(shellResourceURI)" } ],
                  // Every test of the suite at once: many commands, each with its pump thread.
                  "Sandbox": { "MaxTasks": 512 },
                  \(quotas) },
                { "Name": "echo", "Filename": "\(Daemon.pluginPath("echo"))",
                  "Resources": [ { "ResourceUri": "\(echoResourceURI)" } ],
                  \(quotas) },
                { "Name": "hostile", "Filename": "\(Daemon.testPluginPath("hostile"))",
                  "Resources": [ { "ResourceUri": "\(hostileResourceURI)" } ],
                  \(quotas) },
              ],
            }
            """
    }

    /// Starts airlockd and airlock-wsman, runs `body`, and stops both however it ends.
    /// With `needsPython`, first fails (saying how to fix it) when the venv with pywinrm
    /// and pypsrp is missing.
    static func with<Result>(needsPython: Bool = true, _ body: (GatewayEnvironment) async throws -> Result) async throws -> Result {
        if needsPython { _ = try WinRMScript.pythonInterpreter() }
        return try await Daemon.with(plugins: [:], config: daemonConfiguration) { daemon in
            try await GatewayProcess.with(socketPath: daemon.socketPath, users: users) { gateway in
                try await body(GatewayEnvironment(daemon: daemon, gateway: gateway))
            }
        }
    }

    /// Runs `scenario` of `client`'s script as `user` and returns its report.
    func run(_ client: WinRMClient, _ scenario: String, as user: GatewayProcess.User = .alice) async throws -> JSONValue {
        try await WinRMScript(client: client).run(scenario, url: gateway.url, user: user, gateway: gateway, daemon: daemon)
    }

    /// Fails the test unless airlockd and airlock-wsman are both still running.
    func expectBothRunning(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(processIsAlive(daemon.pid), "airlockd (pid \(daemon.pid)) is not running; its log:\n\(daemon.logs.suffix(4000))",
                sourceLocation: sourceLocation)
        #expect(gateway.isRunning, "airlock-wsman (pid \(gateway.pid)) is not running; its log:\n\(gateway.logTail)",
                sourceLocation: sourceLocation)
    }
}

/// Starts one ``GatewayEnvironment`` around a whole suite (not per test), so its tests
/// share one airlockd and one airlock-wsman and run against them concurrently.
struct GatewayEnvironmentTrait: SuiteTrait, TestScoping {
    /// Whether the suite runs the Python clients (see ``GatewayEnvironment/with(needsPython:_:)``).
    var needsPython = true

    var isRecursive: Bool { false }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        try await GatewayEnvironment.with(needsPython: needsPython) { environment in
            try await GatewayEnvironment.$current.withValue(environment) {
                try await function()
            }
        }
    }
}

extension Trait where Self == GatewayEnvironmentTrait {
    /// One airlockd and one airlock-wsman for the whole suite (``GatewayEnvironment``).
    static var gatewayEnvironment: Self { GatewayEnvironmentTrait() }

    /// The same for a suite that talks to the gateway itself, without the Python clients.
    static var gatewayEnvironmentWithoutPython: Self { GatewayEnvironmentTrait(needsPython: false) }
}
