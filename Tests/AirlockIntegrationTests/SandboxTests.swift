import AirlockClient
import AirlockPosix
import Foundation
import Glibc
import Testing

/// Issue 4 end to end: the hostile plug-in probes every sandbox layer from inside a worker
/// that the real airlockd started with its default sandbox, and a layer relaxed in the
/// configuration is relaxed and reported so.
@Suite("Sandbox, end to end (issue 4)")
struct SandboxTests {
    // MARK: - Network

    @Test("a loopback TCP listener the test opens cannot be reached")
    func network() async throws {
        let listener = try LoopbackListener()
        try await Daemon.with(plugins: [:], config: Self.configuration()) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let result = try await Self.probe(connection, "connect-tcp \(listener.port)")
            #expect(result.isDenied, "connect-tcp 127.0.0.1:\(listener.port): \(result)")
            #expect(try await !listener.pendingConnection(within: .milliseconds(200)), "the listener was reached from the sandbox")
        }
    }

    // MARK: - Files

    @Test("a world-readable file outside the plug-in's view cannot be read")
    func readOutsideView() async throws {
        let outside = try OutsideDirectory()
        defer { outside.remove() }
        let secret = try outside.makeFile("secret", contents: "top secret\n", mode: 0o644)
        try await Daemon.with(plugins: [:], config: Self.configuration()) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            // The probe works: the plug-in reads its own library.
            let own = try await Self.probe(connection, "read-file \(Daemon.testPluginPath("hostile"))")
            #expect(own.isOK, "reading its own library: \(own)")

            let result = try await Self.probe(connection, "read-file \(secret)")
            #expect(result.isDenied, "read-file \(secret) (mode 0644): \(result)")
            // The daemon's own configuration (0644, in /tmp) is not even visible.
            let config = try await Self.probe(connection, "read-file \(daemon.directory)/airlockd.json")
            #expect(config.isDenied, "read-file of airlockd's configuration: \(config)")
        }
    }

    @Test("writing outside the state folder fails; inside it works and shows on the host")
    func writes() async throws {
        let outside = try OutsideDirectory()
        defer { outside.remove() }
        try await Daemon.with(plugins: [:], config: Self.configuration()) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let stateFolder = daemon.directory + "/state/plugins/hostile"

            let inside = try await Self.probe(connection, "write-file \(stateFolder)/written-inside")
            #expect(inside.isOK, "write-file inside the state folder: \(inside)")
            #expect(FileManager.default.contents(atPath: stateFolder + "/written-inside") == Data("x".utf8),
                    "the state folder is bind-mounted at the same path, so the host sees the file")

            // The folder is writable by everyone: only the sandbox stands in the way.
            let target = outside.path + "/written-outside"
            let result = try await Self.probe(connection, "write-file \(target)")
            #expect(result.isDenied, "write-file \(target) (folder mode 0777): \(result)")
            #expect(!FileManager.default.fileExists(atPath: target))

            // Next to the state folder is the worker's private /tmp: whatever it writes there
            // never reaches the host.
            let beside = daemon.directory + "/written-beside-state"
            _ = try await Self.probe(connection, "write-file \(beside)")
            #expect(!FileManager.default.fileExists(atPath: beside))
        }
    }

    // MARK: - Processes

    @Test("the supervisor can be neither killed nor traced from the sandbox; getpid is small")
    func processes() async throws {
        try await Daemon.with(plugins: [:], config: Self.configuration()) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }

            let pid = try await Self.probe(connection, "getpid")
            let inside = try #require(Int(pid.okValue ?? ""), "getpid: \(pid)")
            #expect(inside < 10, "getpid inside the PID namespace is \(inside)")

            let kill = try await Self.probe(connection, "kill-pid \(daemon.pid) 9")
            #expect(!kill.isOK, "kill -9 of airlockd (pid \(daemon.pid)): \(kill)")
            #expect(processIsAlive(daemon.pid), "airlockd died")

            let trace = try await Self.probe(connection, "ptrace-pid \(daemon.pid)")
            #expect(!trace.isOK, "ptrace of airlockd: \(trace)")
            if case .workerFailed(let error) = trace {
                #expect(error.message.contains("seccomp: denied system call ptrace"), "\(error)")
            }
            #expect(processIsAlive(daemon.pid), "airlockd died")
            #expect(Self.tracerPID(of: daemon.pid) == 0, "airlockd is being traced")

            // And it still serves.
            #expect(try await connection.ping() > .zero)
            #expect(try await Self.hostileEcho(connection, "still here") == "still here\n")
        }
    }

    // MARK: - Limits

    @Test("an allocation past MemoryMB fails or ends that worker only; the other plug-in keeps serving")
    func memory() async throws {
        let config = Self.configuration(hostileSandbox: #""MemoryMB": 128"#)
        try await Daemon.with(plugins: [:], config: config) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let echo = try await connection.createShell(plugin: "echo")
            #expect(try await echo.run("before").collectOutput().stdoutText == "before\n")
            let echoWorker = try await Self.workerPID(connection, "echo")

            let result = try await Self.probe(connection, "alloc-mb 2048")
            switch result {
            case .denied(let error, _):
                #expect(error == ENOMEM, "\(result)")
            case .workerFailed(let error):
                #expect(error.code == WSManError.pluginFailed, "\(error)")
            default:
                Issue.record("alloc-mb 2048 under MemoryMB 128: \(result)")
            }

            // The same echo shell and worker keep serving; hostile serves again.
            #expect(try await echo.run("after").collectOutput().stdoutText == "after\n")
            #expect(try await Self.workerPID(connection, "echo") == echoWorker)
            #expect(try await Self.hostileEcho(connection, "again") == "again\n")
            try await echo.close()
            #expect(processIsAlive(daemon.pid))
        }
    }

    @Test("forking past MaxTasks fails")
    func tasks() async throws {
        let config = Self.configuration(hostileSandbox: #""MaxTasks": 16"#)
        try await Daemon.with(plugins: [:], config: config) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let result = try await Self.probe(connection, "fork 100")
            guard case .denied(let error, let detail) = result else {
                Issue.record("fork 100 under MaxTasks 16: \(result)")
                return
            }
            #expect(error == EAGAIN, "\(result)")
            let forked = detail.split(separator: " ").first { $0.hasPrefix("forked=") }.flatMap { Int($0.dropFirst("forked=".count)) }
            #expect((forked ?? 100) < 16, "\(result)")
            // The worker survives its failed forks.
            #expect(try await Self.hostileEcho(connection, "alive") == "alive\n")
        }
    }

    // MARK: - seccomp

    @Test("a denied system call ends the worker and is reported by name", arguments: ["ptrace", "bpf", "unshare"])
    func seccomp(systemCall: String) async throws {
        try await Daemon.with(plugins: [:], config: Self.configuration()) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let result = try await Self.probe(connection, "syscall \(systemCall)")
            guard case .workerFailed(let error) = result else {
                Issue.record("syscall \(systemCall): \(result)")
                return
            }
            #expect(error.code == WSManError.pluginFailed)
            #expect(error.message.contains("seccomp: denied system call \(systemCall)"), "\(error)")
            #expect(error.message.contains("plug-in 'hostile' failed"), "\(error)")

            let status = try await connection.statusReport(plugin: "hostile")
            let worker = try #require(status.workers.first)
            #expect(worker.lastExit?.contains("seccomp: denied system call \(systemCall)") == true, "lastExit: \(worker.lastExit ?? "nil")")
            // The next operation gets a fresh worker.
            #expect(try await Self.hostileEcho(connection, "fresh") == "fresh\n")
            #expect(processIsAlive(daemon.pid))
        }
    }

    // MARK: - Relaxed layers and status

    @Test("a layer relaxed in the configuration is relaxed and shown so in status --json")
    func relaxedLayers() async throws {
        let listener = try LoopbackListener()
        let hostile = Daemon.testPluginPath("hostile")
        let config = """
            {
              // The same library three times: the default sandbox, network allowed, no seccomp.
              "Plugins": [
                { "Name": "hostile", "Filename": "\(hostile)" },
                { "Name": "hostile-net", "Filename": "\(hostile)", "Sandbox": { "Network": true } },
                { "Name": "hostile-noseccomp", "Filename": "\(hostile)", "Sandbox": { "Seccomp": false } },
              ],
            }
            """
        try await Daemon.with(plugins: [:], config: config) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }

            let connected = try await Self.probe(connection, "connect-tcp \(listener.port)", plugin: "hostile-net")
            #expect(connected.isOK, "connect-tcp with Network: true: \(connected)")
            #expect(try await listener.pendingConnection(within: .seconds(10)), "the listener saw no connection")
            let personality = try await Self.probe(connection, "syscall personality", plugin: "hostile-noseccomp")
            #expect(personality.isOK, "syscall personality with Seccomp: false: \(personality)")
            // Both stay confined otherwise.
            let isolated = try await Self.probe(connection, "connect-tcp \(listener.port)", plugin: "hostile-noseccomp")
            #expect(isolated.isDenied, "connect-tcp with the default network layer: \(isolated)")
            let killed = try await Self.probe(connection, "syscall personality", plugin: "hostile")
            #expect(killed.isWorkerFailure, "syscall personality with the default seccomp layer: \(killed)")
            #expect(try await Self.hostileEcho(connection, "up") == "up\n")

            let outcome = try await daemon.airlockctl(["status", "--json"])
            #expect(outcome.exitCode == 0, "stderr: \(outcome.stderrText)")
            let layers = try Self.sandboxLayers(statusJSON: outcome.stdout)
            let confined = ["user", "mount", "pid", "network", "ipc", "uts", "landlock", "seccomp", "limits"]
            for plugin in ["hostile", "hostile-net", "hostile-noseccomp"] {
                let states = try #require(layers[plugin], "no sandbox for \(plugin) in \(outcome.stdoutText)")
                for (layer, state) in states {
                    #expect(state == "active" || state == "off" || state.hasPrefix("unavailable: "), "\(plugin).\(layer) = \(state)")
                }
                for layer in confined {
                    let expected = (plugin == "hostile-net" && layer == "network") || (plugin == "hostile-noseccomp" && layer == "seccomp")
                        ? "off" : "active"
                    #expect(states[layer] == expected, "\(plugin): sandbox.\(layer) = \(states[layer] ?? "missing")")
                }
                if testsRunAsRoot {
                    #expect(states["run_as"] == "active", "\(plugin): sandbox.run_as = \(states["run_as"] ?? "missing")")
                }
            }
        }
    }

    @Test("when airlockd runs as root, its workers run as nobody", .enabled(if: testsRunAsRoot, "needs root: airlockd drops workers to nobody only when it runs as root"))
    func workersRunAsNobody() async throws {
        try await Daemon.with(plugins: [:], config: Self.configuration()) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            // Inside its user namespace the worker is uid 0, mapped to nobody outside.
            let inside = try await Self.probe(connection, "id")
            #expect(inside.okValue?.hasPrefix("uid=0 gid=0 euid=0 egid=0") == true, "\(inside)")
            let nobody = try #require(UserDatabase.lookupUser(name: "nobody"))
            let pid = try await Self.workerPID(connection, "hostile")
            let ids = try Self.processIDs(pid)
            #expect(ids.uids == [nobody.uid, nobody.uid, nobody.uid, nobody.uid], "worker \(pid): Uid \(ids.uids)")
            #expect(ids.gids == [nobody.gid, nobody.gid, nobody.gid, nobody.gid], "worker \(pid): Gid \(ids.gids)")
            // The state folder belongs to the worker's user.
            var info = stat()
            #expect(stat(daemon.directory + "/state/plugins/hostile", &info) == 0)
            #expect(info.st_uid == nobody.uid)
        }
    }

    // MARK: - Helpers

    /// A configuration with the hostile plug-in (`hostileSandbox`: members of its `Sandbox`
    /// object) and the echo plug-in, both otherwise with defaults.
    static func configuration(hostileSandbox: String = "") -> String {
        """
        {
          "Plugins": [
            { "Name": "hostile", "Filename": "\(Daemon.testPluginPath("hostile"))", "Sandbox": { \(hostileSandbox) } },
            { "Name": "echo", "Filename": "\(Daemon.pluginPath("echo"))" },
          ],
        }
        """
    }
}

// MARK: - Probing

extension SandboxTests {

    /// What a hostile plug-in probe reported.
        enum ProbeResult: CustomStringConvertible {
        /// `ok[ VALUE]` (exit code 0).
        case ok(String)
        /// `denied errno=N ...` (exit code 1), with the rest of the line.
        case denied(errno: Int32, String)
        /// The worker died (`ERROR_WSMAN_PLUGIN_FAILED`).
        case workerFailed(AirlockError)
        /// Anything else.
        case unexpected(String)

        var isOK: Bool { if case .ok = self { true } else { false } }
        var isDenied: Bool { if case .denied = self { true } else { false } }
        var isWorkerFailure: Bool { if case .workerFailed = self { true } else { false } }
        var okValue: String? { if case .ok(let value) = self { value } else { nil } }

        var description: String {
            switch self {
            case .ok(let value): "ok \(value)"
            case .denied(let error, let detail): "denied errno=\(error) \(detail)"
            case .workerFailed(let error): "worker failed: \(error)"
            case .unexpected(let text): "unexpected: \(text)"
            }
        }
    }

    /// Runs one probe of the hostile plug-in in a fresh shell (a probe may end the worker, and
    /// its shells with it).
    static func probe(_ connection: AirlockConnection, _ line: String, plugin: String = "hostile") async throws -> ProbeResult {
        let shell = try await connection.createShell(plugin: plugin)
        let output: CollectedOutput
        do throws(AirlockError) {
            let command = try await shell.run(line)
            output = try await command.collectOutput(deadline: .now + .seconds(60))
            try await shell.close()
        } catch {
            // The worker died, and its shells with it.
            guard error.code == WSManError.pluginFailed else { throw error }
            return .workerFailed(error)
        }
        let text = output.stdoutText
        let line = text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
        if output.exitCode == 0, line == "ok" || line.hasPrefix("ok ") {
            return .ok(String(line.dropFirst(2)).trimmingCharacters(in: .whitespaces))
        }
        if output.exitCode == 1, line.hasPrefix("denied errno=") {
            let rest = line.dropFirst("denied errno=".count)
            let number = rest.prefix { $0.isNumber }
            return .denied(errno: Int32(number) ?? -1, String(rest.dropFirst(number.count)).trimmingCharacters(in: .whitespaces))
        }
        return .unexpected("exit code \(output.exitCode.map(String.init) ?? "none"), stdout \(text.debugDescription), stderr \(output.stderrText.debugDescription)")
    }

    /// What hostile's `echo WORDS` prints (its worker serves again after a failure).
    static func hostileEcho(_ connection: AirlockConnection, _ words: String) async throws -> String {
        let shell = try await connection.createShell(plugin: "hostile")
        let output = try await shell.run("echo " + words).collectOutput(deadline: .now + .seconds(60))
        try await shell.close()
        return output.stdoutText
    }

    /// The process id of a plug-in's worker, from status (0 when none runs).
    static func workerPID(_ connection: AirlockConnection, _ plugin: String) async throws -> Int {
        try await connection.statusReport(plugin: plugin).workers.first?.pid ?? 0
    }

    /// `workers[].sandbox` of a status document, by plug-in name.
    static func sandboxLayers(statusJSON: [UInt8]) throws -> [String: [String: String]] {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(statusJSON)) as? [String: Any])
        let workers = try #require(object["workers"] as? [[String: Any]])
        var result: [String: [String: String]] = [:]
        for worker in workers {
            guard let plugin = worker["plugin"] as? String, let sandbox = worker["sandbox"] as? [String: String] else { continue }
            result[plugin] = sandbox
        }
        return result
    }

    /// `TracerPid` of `/proc/PID/status` (0: not traced).
    static func tracerPID(of pid: pid_t) -> Int? {
        Self.processStatusField(pid, "TracerPid:").flatMap { Int($0) }
    }

    /// The real, effective, saved and file-system uids and gids of a process.
    static func processIDs(_ pid: Int) throws -> (uids: [uid_t], gids: [gid_t]) {
        guard let uids = Self.processStatusField(pid_t(pid), "Uid:"), let gids = Self.processStatusField(pid_t(pid), "Gid:") else {
            throw HarnessError("no /proc/\(pid)/status")
        }
        return (uids.split(separator: "\t").compactMap { uid_t($0) }, gids.split(separator: "\t").compactMap { gid_t($0) })
    }

    private static func processStatusField(_ pid: pid_t, _ name: String) -> String? {
        guard let bytes = try? Posix.readFile("/proc/\(pid)/status", limit: 65_536) else { return nil }
        let line = String(decoding: bytes, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix(name) }
        return line.map { $0.dropFirst(name.count).trimmingCharacters(in: .whitespaces) }
    }
}

// MARK: - Fixtures

/// A TCP listener on 127.0.0.1 with a port the kernel chose.
final class LoopbackListener: @unchecked Sendable {
    let fd: Int32
    let port: UInt16

    init() throws {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socketFD >= 0 else { throw HarnessError("socket(AF_INET): errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(socketFD, 16) == 0 else {
            let error = errno
            Glibc.close(socketFD)
            throw HarnessError("bind/listen on 127.0.0.1: errno \(error)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socketFD, $0, &length) }
        }
        fd = socketFD
        port = UInt16(bigEndian: address.sin_port)
    }

    deinit { Glibc.close(fd) }

    /// True when a connection is waiting to be accepted within `timeout` (it is accepted
    /// and closed). Waits on a thread of its own.
    func pendingConnection(within timeout: Duration) async throws -> Bool {
        try await onDedicatedThread { self.hasPendingConnection(within: timeout) }
    }

    private func hasPendingConnection(within timeout: Duration) -> Bool {
        let milliseconds = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, milliseconds) == 1 else { return false }
        let accepted = accept(fd, nil, nil)
        if accepted >= 0 { Glibc.close(accepted) }
        return accepted >= 0
    }
}

/// A folder outside anything a worker may see (`/var/tmp/airlock-sbx-XXXXXX`), writable by
/// everyone, so that only the sandbox keeps a plug-in out.
struct OutsideDirectory {
    let path: String

    init() throws {
        var template = Array("/var/tmp/airlock-sbx-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw HarnessError("mkdtemp in /var/tmp: errno \(errno)")
        }
        path = String(cString: made)
        guard chmod(path, 0o777) == 0 else { throw HarnessError("chmod(\(path)): errno \(errno)") }
    }

    /// Creates `name` with `contents` and `mode`; returns its path.
    func makeFile(_ name: String, contents: String, mode: mode_t) throws -> String {
        let file = path + "/" + name
        guard FileManager.default.createFile(atPath: file, contents: Data(contents.utf8)), chmod(file, mode) == 0 else {
            throw HarnessError("cannot create \(file)")
        }
        return file
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
