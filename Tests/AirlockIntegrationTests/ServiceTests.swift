import AirlockClient
import AirlockPosix
import AirlockProtocol
import Foundation
import Glibc
import Synchronization
import Testing

/// airlockd as a Linux service, without systemd: the notify protocol, socket activation,
/// reload and status, each checked against the real daemon.
@Suite("Service integration (issue 6)")
struct ServiceTests {
    /// A datagram socket standing in for systemd's NOTIFY_SOCKET.
    final class NotifyListener: Sendable {
        let path: String
        let fd: Int32

        init(directory: String) throws {
            path = directory + "/notify.sock"
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw HarnessError("socket: errno \(errno)") }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { buffer in
                for (i, byte) in path.utf8.enumerated() { buffer[i] = byte }
            }
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard result == 0 else { throw HarnessError("bind(\(path)): errno \(errno)") }
        }

        deinit { close(fd) }

        /// Collects notification datagrams until one contains `assignment` (or the time is
        /// up), on a dedicated thread so the cooperative pool is never blocked.
        func waitFor(_ assignment: String, seconds: Double = 20) async -> [String] {
            let fd = self.fd
            return (try? await onDedicatedThread { Self.collect(fd: fd, until: assignment, seconds: seconds) }) ?? []
        }

        static func collect(fd: Int32, until assignment: String, seconds: Double) -> [String] {
            var seen: [String] = []
            let deadline = Date().addingTimeInterval(seconds)
            var buffer = [UInt8](repeating: 0, count: 4096)
            while Date() < deadline {
                var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&entry, 1, 100) > 0 else { continue }
                let count = recv(fd, &buffer, buffer.count, 0)
                guard count > 0 else { continue }
                let message = String(decoding: buffer[0..<count], as: UTF8.self)
                seen.append(message)
                if message.split(separator: "\n").contains(where: { $0.hasPrefix(assignment) }) { return seen }
            }
            return seen
        }
    }

    /// Starts airlockd through `/bin/sh -c '... exec airlockd'` so variables that must name
    /// the daemon's own pid (LISTEN_PID) can be set, with extra descriptors passed through.
    static func spawnDaemon(
        directory: String, arguments: [String], environment: [String: String], setListenPID: Bool = false,
        fileDescriptors: [ProcessControl.InheritedDescriptor] = []
    ) throws -> pid_t {
        let log = try Posix.open(directory + "/airlockd.log", flags: O_WRONLY | O_CREAT | O_APPEND, mode: 0o644)
        let null = try Posix.open("/dev/null", flags: O_RDONLY)
        defer { try? Posix.close(log); try? Posix.close(null) }
        let quoted = ([Daemon.executablePath("airlockd")] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let script = (setListenPID ? "LISTEN_PID=$$ " : "") + "exec " + quoted.joined(separator: " ")
        var env = ProcessInfo.processInfo.environment
        for key in ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "AIRLOCK_SOCKET"] {
            env[key] = nil
        }
        env.merge(environment) { $1 }
        return try ProcessControl.spawn(
            executable: "/bin/sh", arguments: ["-c", script], environment: env,
            fileDescriptors: [.init(source: null, target: 0), .init(source: log, target: 1), .init(source: log, target: 2)] + fileDescriptors,
            newSession: true)
    }

    /// A daemon started by ``spawnDaemon``, reaped exactly once.
    final class SpawnedDaemon: Sendable {
        let pid: pid_t
        private let status = Mutex<WaitStatus?>(nil)
        init(pid: pid_t) { self.pid = pid }

        /// SIGTERM, then SIGKILL to its process group after 10 s; waits on a dedicated thread.
        func stop() async -> WaitStatus? {
            if let done = status.withLock({ $0 }) { return done }
            let pid = self.pid
            let result = try? await onDedicatedThread { () -> WaitStatus? in
                _ = try? ProcessControl.kill(pid, signal: SIGTERM)
                for _ in 0..<500 {
                    if let status = (try? ProcessControl.wait(pid: pid, noHang: true)) ?? nil { return status }
                    usleep(20_000)
                }
                _ = try? ProcessControl.killProcessGroup(pid, signal: SIGKILL)
                return (try? ProcessControl.wait(pid: pid)) ?? nil
            }
            let final = result ?? nil
            status.withLock { $0 = final }
            return final
        }
    }

    static func temporaryDirectory() throws -> String {
        var template = Array("/tmp/airlock-svc-XXXXXX".utf8CString)
        guard let result = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { throw HarnessError("mkdtemp: errno \(errno)") }
        chmod(result, 0o755)
        return String(cString: result)
    }

    /// Connects once the daemon answers; gives up after 30 s.
    static func waitForSocket(_ path: String) async throws -> AirlockConnection {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let connection = try? await AirlockConnection.connect(socketPath: path, clientName: "service-test") { return connection }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw HarnessError("no daemon answered on \(path) within 30 s")
    }

    @Test("sd_notify: READY with STATUS, WATCHDOG at half the interval, RELOADING on SIGHUP, STOPPING on SIGTERM")
    func notifyProtocol() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let notify = try NotifyListener(directory: directory)
        let socketPath = directory + "/s.sock"
        let pid = try Self.spawnDaemon(
            directory: directory,
            arguments: ["--socket", socketPath, "--state-directory", directory + "/state", "--plugin", "echo=" + Daemon.pluginPath("echo")],
            environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "2000000"])
        let daemon = SpawnedDaemon(pid: pid)
        do {

        let ready = await notify.waitFor("READY=1")
        let readyMessage = try #require(ready.first { $0.contains("READY=1") }, "no READY=1; got \(ready)")
        #expect(readyMessage.contains("STATUS="), "READY=1 should carry a STATUS= line: \(readyMessage)")

        let pings = await notify.waitFor("WATCHDOG=1", seconds: 5)
        #expect(pings.contains { $0.contains("WATCHDOG=1") }, "no WATCHDOG=1 within 5 s of WATCHDOG_USEC=2 s: \(pings)")

        kill(pid, SIGHUP)
        let reload = await notify.waitFor("RELOADING=1")
        let reloading = try #require(reload.first { $0.contains("RELOADING=1") }, "no RELOADING=1 after SIGHUP: \(reload)")
        #expect(reloading.contains("MONOTONIC_USEC="), "RELOADING=1 must carry MONOTONIC_USEC: \(reloading)")
        let after = await notify.waitFor("READY=1")
        #expect(after.contains { $0.contains("READY=1") }, "READY=1 must follow a reload: \(after)")

        kill(pid, SIGTERM)
        let stop = await notify.waitFor("STOPPING=1")
        #expect(stop.contains { $0.contains("STOPPING=1") }, "no STOPPING=1 on SIGTERM: \(stop)")
        let status = await daemon.stop()
        #expect(status == .exited(0), "airlockd should exit 0 after SIGTERM, got \(String(describing: status))")
        } catch {
            _ = await daemon.stop()
            throw error
        }
        _ = await daemon.stop()
    }

    @Test("Socket activation: a listening socket passed with LISTEN_FDS/LISTEN_PID is served")
    func socketActivation() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socketPath = directory + "/activated.sock"
        let listener = try UnixSocket.listen(path: socketPath, options: .init(mode: 0o660, nonBlocking: false))
        defer { try? Posix.close(listener) }
        // The configured path differs: the daemon must use the socket it was given.
        let pid = try Self.spawnDaemon(
            directory: directory,
            arguments: ["--socket", directory + "/unused.sock", "--state-directory", directory + "/state", "--plugin", "echo=" + Daemon.pluginPath("echo")],
            environment: ["LISTEN_FDS": "1"], setListenPID: true,
            fileDescriptors: [.init(source: listener, target: 3)])
        let daemon = SpawnedDaemon(pid: pid)
        do {
            let connection = try await Self.waitForSocket(socketPath)
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "echo")
            let command = try await shell.run("activated", arguments: ["ok"])
            let output = try await command.collectOutput()
            #expect(String(decoding: output.stdout, as: UTF8.self) == "activated ok\n")
            #expect(access(directory + "/unused.sock", F_OK) != 0, "with an inherited socket airlockd must not bind the configured path")
        } catch {
            _ = await daemon.stop()
            throw error
        }
        _ = await daemon.stop()
    }

    static func config(_ plugins: [(String, String, UInt32)]) -> String {
        let entries = plugins.map { name, library, timeout in
            "{ \"Name\": \"\(name)\", \"Filename\": \"\(library)\", \"OperationTimeoutMs\": \(timeout) }"
        }
        return "{ // reload test\n \"Plugins\": [\(entries.joined(separator: ", "))], }\n"
    }

    @Test("Reload keeps the shells of unchanged plug-ins, applies changes and refuses a broken configuration")
    func reload() async throws {
        let echo = Daemon.pluginPath("echo"), shellLibrary = Daemon.pluginPath("shell"), noop = Daemon.pluginPath("noop")
        try await Daemon.with(plugins: [:], config: Self.config([("echo", echo, 60_000), ("shell", shellLibrary, 60_000)])) { daemon in
            let configPath = daemon.directory + "/airlockd.json"
            let connection = try await daemon.connect()
            defer { connection.close() }
            let kept = try await connection.createShell(plugin: "echo")
            let changed = try await connection.createShell(plugin: "shell")

            // echo unchanged, shell changed, noop added.
            try Self.config([("echo", echo, 60_000), ("shell", shellLibrary, 30_000), ("noop", noop, 60_000)])
                .write(toFile: configPath, atomically: true, encoding: .utf8)
            let summary = try await connection.reload()
            #expect(summary?.contains("1 added (noop)") == true, "summary: \(summary ?? "nil")")
            #expect(summary?.contains("1 changed (shell)") == true, "summary: \(summary ?? "nil")")

            // The unchanged plug-in's shell still works.
            let output = try await kept.run("still", arguments: ["here"]).collectOutput()
            #expect(String(decoding: output.stdout, as: UTF8.self) == "still here\n")
            // The changed plug-in's worker was restarted, so its shell is gone.
            await #expect(throws: AirlockError.self) { _ = try await changed.run("true").collectOutput() }
            // The added plug-in serves.
            let added = try await connection.createShell(plugin: "noop")
            try await added.close()

            // A broken file is refused with the reason, and the running configuration stays.
            try "{ \"Plugins\": [ { \"Name\": \"echo\" } ] }".write(toFile: configPath, atomically: true, encoding: .utf8)
            let refused = try await daemon.airlockctl(["reload"])
            #expect(refused.status != .exited(0))
            #expect(refused.stderrText.contains("Filename"), "the error should name the missing key: \(refused.stderrText)")
            let again = try await kept.run("after", arguments: ["refusal"]).collectOutput()
            #expect(String(decoding: again.stdout, as: UTF8.self) == "after refusal\n")
            let plugins = try await connection.listPluginsJSON()
            #expect(plugins.contains("\"noop\""), "the previous configuration (with noop) must stay: \(plugins)")
        }
    }

    @Test("Status reports every field for a live worker")
    func statusFields() async throws {
        try await Daemon.with(plugins: ["echo": Daemon.pluginPath("echo")]) { daemon in
            let connection = try await daemon.connect()
            defer { connection.close() }
            let shell = try await connection.createShell(plugin: "echo")
            _ = try await shell.run("hello").collectOutput()
            let text = try await connection.status(plugin: "echo")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
            let supervisor = try #require(json["supervisor"] as? [String: Any])
            for key in ["pid", "version", "uptimeSeconds", "socket", "connections"] {
                #expect(supervisor[key] != nil, "supervisor.\(key) missing")
            }
            let workers = try #require(json["workers"] as? [[String: Any]])
            let worker = try #require(workers.first)
            #expect(worker["plugin"] as? String == "echo")
            #expect(worker["state"] as? String == "running")
            for key in ["pid", "uptimeSeconds", "restarts", "rssBytes", "cpuSeconds", "threads", "fds", "shells", "commands",
                        "operationsInFlight", "latencyP50Us", "latencyP99Us", "sandbox"] {
                #expect(worker[key] != nil, "workers[0].\(key) missing in \(worker)")
            }
            #expect(worker["shells"] as? Int == 1)
            let sandbox = try #require(worker["sandbox"] as? [String: String])
            for layer in ["user", "mount", "pid", "network", "ipc", "uts", "landlock", "seccomp", "limits"] {
                #expect(sandbox[layer] != nil, "sandbox layer \(layer) missing: \(sandbox)")
            }
            // The human form shows the same facts.
            let human = try await daemon.airlockctl(["status", "echo"])
            #expect(human.stdoutText.contains("echo"))
            #expect(human.stdoutText.contains("running"))
            try await shell.close()
        }
    }
}
