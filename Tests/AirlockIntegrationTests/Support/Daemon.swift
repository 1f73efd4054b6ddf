import AirlockClient
import AirlockPosix
import Foundation
import Glibc
import Synchronization

/// A real `airlockd` started for one test: its own temporary folder (socket, state,
/// configuration, log), killed and cleaned up by ``stop()``.
///
/// ```swift
/// try await Daemon.with(plugins: ["echo": Daemon.pluginPath("echo")]) { daemon in
///     let connection = try await daemon.connect()
///     ...
/// }
/// ```
///
/// Prefer ``with(plugins:config:extraArguments:_:)``, which stops the daemon however the
/// body ends; with ``start(plugins:config:extraArguments:)`` the test must call ``stop()``.
final class Daemon: Sendable {
    /// The daemon's socket (inside ``directory``).
    let socketPath: String
    /// The daemon's process id.
    let pid: pid_t
    /// The temporary folder holding the socket, the state folders, the configuration and
    /// the log; removed by ``stop()``.
    let directory: String
    /// The file the daemon's standard output and error go to.
    let logPath: String

    private let stopped = Mutex<WaitStatus?>(nil)

    private init(socketPath: String, pid: pid_t, directory: String, logPath: String) {
        self.socketPath = socketPath
        self.pid = pid
        self.directory = directory
        self.logPath = logPath
    }

    // MARK: - Products

    /// The build products folder: where the test bundle, `airlockd`, `airlockctl`,
    /// `airlock-worker` and the plug-in libraries are (`$AIRLOCK_PRODUCTS_DIR` overrides).
    static let productsDirectory: String = {
        if let override = ProcessInfo.processInfo.environment["AIRLOCK_PRODUCTS_DIR"], !override.isEmpty {
            return override
        }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        precondition(count > 0, "readlink(/proc/self/exe) failed")
        let executable = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return String(executable[..<executable.lastIndex(of: "/")!])
    }()

    /// The path of a built executable product (`airlockd`, `airlockctl`, ...).
    static func executablePath(_ name: String) -> String {
        productsDirectory + "/" + name
    }

    /// The example plug-in `name` (`echo`, `shell`, `noop`): `libairlock-plugin-<name>.so`.
    static func pluginPath(_ name: String) -> String {
        productsDirectory + "/libairlock-plugin-\(name).so"
    }

    /// A test plug-in (`hostile`, `noexport`): `libairlock-test-<name>.so`.
    static func testPluginPath(_ name: String) -> String {
        productsDirectory + "/libairlock-test-\(name).so"
    }

    /// The example plug-ins `echo` and `shell`.
    static var examplePlugins: [String: String] {
        ["echo": pluginPath("echo"), "shell": pluginPath("shell")]
    }

    // MARK: - Life

    /// Starts `airlockd --socket <tmp>/s.sock --state-directory <tmp>/state` with each
    /// plug-in as `--plugin NAME=LIBRARY` (sorted by name), `--config <tmp>/airlockd.json`
    /// when `config` is given (its text), then `extraArguments`; returns once the daemon
    /// accepts connections.
    static func start(
        plugins: [String: String] = examplePlugins, config: String? = nil, extraArguments: [String] = []
    ) async throws -> Daemon {
        let directory = try makeTemporaryDirectory()
        let socketPath = directory + "/s.sock"
        let logPath = directory + "/airlockd.log"
        var arguments = ["--socket", socketPath, "--state-directory", directory + "/state"]
        for (name, library) in plugins.sorted(by: { $0.key < $1.key }) {
            arguments += ["--plugin", "\(name)=\(library)"]
        }
        if let config {
            let configPath = directory + "/airlockd.json"
            try config.write(toFile: configPath, atomically: true, encoding: .utf8)
            arguments += ["--config", configPath]
        }
        arguments += extraArguments

        let log = try Posix.open(logPath, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        let null = try Posix.open("/dev/null", flags: O_RDONLY)
        defer {
            try? Posix.close(log)
            try? Posix.close(null)
        }
        var environment = ProcessInfo.processInfo.environment
        environment["AIRLOCK_SOCKET"] = nil
        let pid = try ProcessControl.spawn(
            executable: executablePath("airlockd"), arguments: arguments, environment: environment,
            fileDescriptors: [.init(source: null, target: 0), .init(source: log, target: 1), .init(source: log, target: 2)],
            newSession: true)
        let daemon = Daemon(socketPath: socketPath, pid: pid, directory: directory, logPath: logPath)
        do {
            try await daemon.waitUntilListening()
        } catch {
            await daemon.stop()
            throw error
        }
        return daemon
    }

    /// Starts a daemon, runs `body` with it, and stops it however `body` ends.
    static func with<Result>(
        plugins: [String: String] = examplePlugins, config: String? = nil, extraArguments: [String] = [],
        _ body: (Daemon) async throws -> Result
    ) async throws -> Result {
        let daemon = try await start(plugins: plugins, config: config, extraArguments: extraArguments)
        return try await withCleanup(of: daemon, { await $0.stop() }, body)
    }

    private func waitUntilListening() async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            if let status = try ProcessControl.wait(pid: pid, noHang: true) {
                stopped.withLock { $0 = status }
                throw HarnessError("airlockd \(status) before listening on \(socketPath); its log:\n\(logs)")
            }
            if access(socketPath, F_OK) == 0, let connection = try? await AirlockConnection.connect(socketPath: socketPath, clientName: "harness") {
                connection.close()
                return
            }
            if ContinuousClock.now > deadline {
                throw HarnessError("airlockd did not listen on \(socketPath) within 30 s; its log:\n\(logs)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Stops the daemon: SIGTERM (its workers get Shutdown), SIGKILL to its whole process
    /// group after 10 s, then removes ``directory``. Returns how it ended; calling it again
    /// returns the same.
    @discardableResult
    func stop() async -> WaitStatus {
        if let status = stopped.withLock({ $0 }) {
            removeDirectory()
            return status
        }
        let final = await terminateAndReap(pid)
        stopped.withLock { $0 = final }
        removeDirectory()
        return final
    }

    private func removeDirectory() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: - Using it

    /// What the daemon has written to its standard output and error so far.
    var logs: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "(no log at \(logPath))"
    }

    /// A new client connection.
    func connect(clientName: String = "test") async throws -> AirlockConnection {
        try await AirlockConnection.connect(socketPath: socketPath, clientName: clientName)
    }

    /// Starts `airlockctl --socket <socket> ARGUMENTS`.
    func startAirlockctl(_ arguments: [String], input: ChildProcess.Input = .null) throws -> ChildProcess {
        try ChildProcess.start(Daemon.executablePath("airlockctl"), ["--socket", socketPath] + arguments, input: input)
    }

    /// Runs `airlockctl --socket <socket> ARGUMENTS` to the end.
    func airlockctl(_ arguments: [String], input: ChildProcess.Input = .null) async throws -> ChildProcess.Outcome {
        try await startAirlockctl(arguments, input: input).finish()
    }

    private static func makeTemporaryDirectory() throws -> String {
        var template = Array("/tmp/airlock-test-XXXXXX".utf8CString)
        guard let result = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw HarnessError("mkdtemp failed: errno \(errno)")
        }
        // Readable by the workers, which may run as another user inside their sandbox.
        guard chmod(result, 0o755) == 0 else { throw HarnessError("chmod(\(String(cString: result))) failed: errno \(errno)") }
        return String(cString: result)
    }
}
