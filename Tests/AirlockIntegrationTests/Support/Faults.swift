import AirlockClient
import AirlockPosix
import Foundation
import Glibc
import Testing

// Helpers of FaultContainmentTests: configurations with the hostile plug-in, the
// supervisor's status decoded with every field the tests check, the checks a user makes
// after a fault, and /proc readings (process trees, memory, descriptors).

// MARK: - Configurations

/// An `airlockd.json` for the fault tests: the example plug-in `echo` (the bystander) and
/// the test plug-in `hostile`, each with extra settings.
struct FaultConfiguration {
    /// Settings of the `hostile` plug-in, by WinRM key (`AutoRestart`, `CancelGraceMs`, ...).
    var hostile: [String: Any] = [:]
    /// Settings of the `echo` plug-in.
    var echo: [String: Any] = [:]
    /// Top-level settings (`ShutdownTimeoutMs`, ...).
    var topLevel: [String: Any] = [:]

    /// The configuration file's text.
    var json: String {
        var hostilePlugin: [String: Any] = ["Name": "hostile", "Filename": Daemon.testPluginPath("hostile")]
        hostilePlugin.merge(hostile) { $1 }
        var echoPlugin: [String: Any] = ["Name": "echo", "Filename": Daemon.pluginPath("echo")]
        echoPlugin.merge(echo) { $1 }
        var document = topLevel
        document["Plugins"] = [echoPlugin, hostilePlugin]
        let data = try! JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }
}

extension Daemon {
    /// Starts a daemon serving `echo` and `hostile` as `configuration` says, runs `body`,
    /// and stops the daemon however `body` ends.
    static func withHostile<Result>(
        _ configuration: FaultConfiguration = FaultConfiguration(), _ body: (Daemon) async throws -> Result
    ) async throws -> Result {
        try await with(plugins: [:], config: configuration.json, body)
    }
}

// MARK: - Status

/// `airlockctl status --json`, decoded with the fields the fault tests check.
struct FaultStatus: Decodable {
    struct Supervisor: Decodable {
        var pid: Int32
        var connections: Int
        var shells: Int
        var stopping: Bool
        var rssBytes: UInt64?
    }

    struct Failure: Decodable {
        var time: String
        var message: String
    }

    struct Worker: Decodable {
        var plugin: String
        /// The worker's pid; nil when no process runs (the status says 0 then).
        var pid: Int32? { rawPID == 0 ? nil : rawPID }
        private var rawPID: Int32?
        var state: String
        var restarts: Int
        var lastExit: String?
        var shells: Int
        var commands: Int
        var operationsInFlight: Int
        var quarantinedUntil: Double?
        var threadsLeftAfterShutdown: UInt32?
        var recentFailures: [Failure]

        enum CodingKeys: String, CodingKey {
            case plugin, rawPID = "pid", state, restarts, lastExit, shells, commands, operationsInFlight
            case quarantinedUntil, threadsLeftAfterShutdown, recentFailures
        }
    }

    struct Shell: Decodable {
        var id: UInt64
        var plugin: String
        var state: String
    }

    var supervisor: Supervisor
    var workers: [Worker]
    var shells: [Shell]

    /// The worker of `plugin`; throws when the status has none.
    func worker(_ plugin: String) throws -> Worker {
        guard let worker = workers.first(where: { $0.plugin == plugin }) else {
            throw HarnessError("status has no worker for plug-in '\(plugin)': \(workers.map(\.plugin))")
        }
        return worker
    }
}

extension Daemon {
    /// The supervisor's status, asked on a fresh connection.
    func faultStatus() async throws -> FaultStatus {
        let connection = try await connect(clientName: "status")
        defer { connection.close() }
        let json = try await connection.status()
        do {
            return try JSONDecoder().decode(FaultStatus.self, from: Data(json.utf8))
        } catch {
            throw HarnessError("status JSON does not decode (\(error)): \(json)")
        }
    }

    /// Polls `condition` every 50 ms until it holds; throws after `timeout`, naming `what`.
    func eventually(
        _ what: String, timeout: Duration = .seconds(30), _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            if try await condition() { return }
            if ContinuousClock.now > deadline {
                throw HarnessError("timed out after \(timeout) waiting until \(what); airlockd's log:\n\(logs)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Waits until the status of `plugin`'s worker satisfies `condition`; returns that status.
    @discardableResult
    func waitForWorker(
        _ plugin: String, _ what: String, timeout: Duration = .seconds(30), _ condition: (FaultStatus.Worker) -> Bool
    ) async throws -> FaultStatus.Worker {
        var found: FaultStatus.Worker?
        try await eventually("plug-in '\(plugin)' \(what)", timeout: timeout) {
            let worker = try await faultStatus().worker(plugin)
            if condition(worker) { found = worker }
            return found != nil
        }
        return found!
    }
}

// MARK: - What a user checks after a fault

extension Daemon {
    /// The supervisor is the same process as before and answers a status request.
    func expectSupervisorUp(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        #expect(kill(pid, 0) == 0, "airlockd (pid \(pid)) is gone", sourceLocation: sourceLocation)
        let status = try await faultStatus()
        #expect(status.supervisor.pid == pid, "status answered by pid \(status.supervisor.pid), not airlockd's \(pid)", sourceLocation: sourceLocation)
        #expect(!status.supervisor.stopping, sourceLocation: sourceLocation)
    }

    /// Runs one command in a new shell of `plugin` and returns its output (the shell is closed).
    func runOnce(_ plugin: String, _ line: String, timeout: Duration? = nil) async throws -> CollectedOutput {
        let connection = try await connect(clientName: "run-once")
        defer { connection.close() }
        let shell = try await connection.createShell(plugin: plugin)
        let output = try await shell.run(line, timeout: timeout).collectOutput()
        try await shell.close()
        return output
    }

    /// `echo` (another plug-in) serves a command on a new connection.
    func expectEchoServes(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let output = try await runOnce("echo", "still here")
        #expect(output.stdoutText == "still here\n", sourceLocation: sourceLocation)
        #expect(output.exitCode == 0, sourceLocation: sourceLocation)
    }

    /// `hostile` serves a plain command.
    func expectHostileServes(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let output = try await runOnce("hostile", "echo serving again")
        #expect(output.stdoutText == "serving again\n", sourceLocation: sourceLocation)
        #expect(output.exitCode == 0, sourceLocation: sourceLocation)
    }

    /// Lines of the daemon's log that contain every one of `parts`.
    func logLines(containing parts: String...) -> [Substring] {
        logs.split(separator: "\n").filter { line in parts.allSatisfy { line.contains($0) } }
    }
}

/// The error `body` throws, as an ``AirlockError``; records an issue when it succeeds or
/// throws something else.
func airlockError(
    _ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void
) async -> AirlockError? {
    do {
        try await body()
        Issue.record("\(what) succeeded; expected an error", sourceLocation: sourceLocation)
        return nil
    } catch let error as AirlockError {
        return error
    } catch {
        Issue.record("\(what) threw \(error), not an AirlockError", sourceLocation: sourceLocation)
        return nil
    }
}

/// Checks an error's code and that its message contains every one of `parts`.
func expectError(
    _ error: AirlockError?, code: UInt32, mentions parts: [String], sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let error else {
        Issue.record("no error to check (expected \(WSManError.name(code)))", sourceLocation: sourceLocation)
        return
    }
    #expect(error.kind == .operationFailed, "\(error)", sourceLocation: sourceLocation)
    #expect(error.code == code, "expected \(WSManError.name(code)), got \(error)", sourceLocation: sourceLocation)
    for part in parts {
        #expect(error.message.contains(part), "the message does not mention \"\(part)\": \(error.message)", sourceLocation: sourceLocation)
    }
}

// MARK: - /proc

/// One process as `/proc/PID/stat` describes it; `startTime` tells a process from a
/// later one that reuses its pid.
struct ProcessEntry: Hashable, CustomStringConvertible {
    var pid: pid_t
    var parent: pid_t
    var startTime: UInt64
    /// `comm`: the executable's name, at most 15 bytes.
    var name: String

    var description: String { "\(name)[\(pid)]" }

    /// Reads `/proc/PID/stat`; nil when the process is gone.
    static func read(_ pid: pid_t) -> ProcessEntry? {
        guard let bytes = try? Posix.readFile("/proc/\(pid)/stat", limit: 4096) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")") else { return nil }
        let name = String(text[text.index(after: open)..<close])
        let fields = text[text.index(close, offsetBy: 2)...].split(separator: " ")
        // fields[0] is the state (field 3), fields[1] the parent (4), fields[19] the start time (22).
        guard fields.count > 19, fields[0] != "Z", fields[0] != "X",
              let parent = pid_t(fields[1]), let start = UInt64(fields[19]) else { return nil }
        return ProcessEntry(pid: pid, parent: parent, startTime: start, name: name)
    }

    /// Every live (not zombie) process.
    static func all() -> [ProcessEntry] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return names.compactMap { pid_t($0) }.compactMap(read)
    }

    /// Every live descendant of `ancestor` (children, their children, ...).
    static func descendants(of ancestor: pid_t) -> [ProcessEntry] {
        let table = all()
        var found: [ProcessEntry] = []
        var frontier: Set<pid_t> = [ancestor]
        while !frontier.isEmpty {
            let children = table.filter { frontier.contains($0.parent) }
            found += children
            frontier = Set(children.map(\.pid))
        }
        return found
    }

    /// True while this very process (same pid and start time) exists and is not a zombie.
    var isAlive: Bool {
        ProcessEntry.read(pid)?.startTime == startTime
    }

    /// Those of `processes` still alive after up to `grace`: a killed process may take a
    /// moment to finish dying (a PID namespace's init waits for its namespace to empty).
    static func survivors(of processes: [ProcessEntry], grace: Duration = .seconds(5)) async -> [ProcessEntry] {
        var alive = processes.filter(\.isAlive)
        let deadline = ContinuousClock.now + grace
        while !alive.isEmpty && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
            alive = alive.filter(\.isAlive)
        }
        return alive
    }
}

extension Daemon {
    /// airlockd's resident memory in bytes.
    var residentBytes: UInt64 {
        get throws { try ProcessStatistics.read(pid: pid).residentBytes }
    }

    /// How many descriptors airlockd has open.
    var openDescriptors: Int {
        get throws {
            guard let count = try ProcessStatistics.read(pid: pid).openFiles else {
                throw HarnessError("cannot read /proc/\(pid)/fd")
            }
            return count
        }
    }
}
