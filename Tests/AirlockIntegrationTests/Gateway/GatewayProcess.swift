import AirlockPosix
import Foundation
import Glibc
import Synchronization

/// A real `airlock-wsman` started for tests: its own temporary folder (password file,
/// standard output, log), `--listen 127.0.0.1:0 --auth file`, talking to an airlockd's
/// socket; stopped with SIGTERM (SIGKILL to its process group after a grace period) by
/// ``stop()``, which also removes the folder.
///
/// ```swift
/// try await GatewayProcess.with(socketPath: daemon.socketPath, users: [.alice]) { gateway in
///     // gateway.url == "http://127.0.0.1:PORT/wsman"
/// }
/// ```
final class GatewayProcess: Sendable {
    /// A gateway-only user of the password file.
    struct User: Sendable, Hashable, CustomStringConvertible {
        var name: String
        var password: String

        /// A plain user.
        static let alice = User(name: "alice", password: "alice-secret-1")
        /// A user whose password has a colon and spaces in it (Basic splits at the first colon).
        static let bob = User(name: "bob", password: "bob: a password with a colon")

        var description: String { name }
    }

    /// The process id (also its process group: it starts a session of its own).
    let pid: pid_t
    /// `http://127.0.0.1:PORT/wsman`, as the gateway announced it.
    let url: String
    /// The port of ``url``.
    let port: UInt16
    /// The temporary folder (password file, standard output, log); removed by ``stop()``.
    let directory: String
    /// The file the gateway's standard error (its log) goes to.
    let logPath: String

    private let stopped = Mutex<WaitStatus?>(nil)

    private init(pid: pid_t, url: String, port: UInt16, directory: String, logPath: String) {
        self.pid = pid
        self.url = url
        self.port = port
        self.directory = directory
        self.logPath = logPath
    }

    /// The line airlock-wsman prints on standard output for each listener once it is bound.
    static let listeningPrefix = "airlock-wsman listening on "

    // MARK: - Life

    /// Writes a password file for `users` (hashes from `airlock-wsman hash-password`),
    /// starts `airlock-wsman --listen 127.0.0.1:0 --socket SOCKET --auth file
    /// --password-file FILE` plus `extraArguments`, and returns once it has announced its
    /// URL on standard output.
    static func start(socketPath: String, users: [User], extraArguments: [String] = []) async throws -> GatewayProcess {
        let executable = Daemon.executablePath("airlock-wsman")
        guard access(executable, X_OK) == 0 else {
            throw HarnessError("\(executable) is not built: swift build --build-tests builds it with the tests")
        }
        let directory = try makeTemporaryDirectory()
        do {
            let passwordFile = directory + "/passwords"
            var lines = "# gateway test users: name:crypt(3) hash\n\n"
            for user in users {
                lines += "\(user.name):\(try await hash(user.password))\n"
            }
            try lines.write(toFile: passwordFile, atomically: true, encoding: .utf8)

            let outputPath = directory + "/stdout"
            let logPath = directory + "/airlock-wsman.log"
            let output = try Posix.open(outputPath, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
            let log = try Posix.open(logPath, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
            let null = try Posix.open("/dev/null", flags: O_RDONLY)
            defer {
                try? Posix.close(output)
                try? Posix.close(log)
                try? Posix.close(null)
            }
            var environment = ProcessInfo.processInfo.environment
            environment["NOTIFY_SOCKET"] = nil
            let arguments = [
                "--listen", "127.0.0.1:0", "--socket", socketPath, "--auth", "file", "--password-file", passwordFile,
                "--log-level", "debug",
            ] + extraArguments
            let pid = try ProcessControl.spawn(
                executable: executable, arguments: arguments, environment: environment,
                fileDescriptors: [.init(source: null, target: 0), .init(source: output, target: 1), .init(source: log, target: 2)],
                newSession: true)
            let (url, port) = try await waitForAnnouncement(pid: pid, outputPath: outputPath, logPath: logPath)
            return GatewayProcess(pid: pid, url: url, port: port, directory: directory, logPath: logPath)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    /// Starts a gateway, runs `body` with it, and stops it however `body` ends.
    static func with<Result>(
        socketPath: String, users: [User], extraArguments: [String] = [], _ body: (GatewayProcess) async throws -> Result
    ) async throws -> Result {
        let gateway = try await start(socketPath: socketPath, users: users, extraArguments: extraArguments)
        do {
            let result = try await body(gateway)
            await gateway.stop()
            return result
        } catch {
            await gateway.stop()
            throw error
        }
    }

    /// `airlock-wsman hash-password` with `password` on standard input: its crypt(3) hash.
    static func hash(_ password: String) async throws -> String {
        let outcome = try await ChildProcess.start(
            Daemon.executablePath("airlock-wsman"), ["hash-password"], input: .bytes(Array((password + "\n").utf8))
        ).finish()
        let hash = outcome.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        guard outcome.exitCode == 0, hash.hasPrefix("$"), !hash.contains("\n") else {
            throw HarnessError("airlock-wsman hash-password \(outcome.status): stdout \"\(outcome.stdoutText)\", stderr \"\(outcome.stderrText)\"")
        }
        return hash
    }

    /// Waits for the first `airlock-wsman listening on http://127.0.0.1:PORT/wsman` line.
    private static func waitForAnnouncement(pid: pid_t, outputPath: String, logPath: String) async throws -> (String, UInt16) {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            let output = (try? Posix.readFile(outputPath)).map { String(decoding: $0, as: UTF8.self) } ?? ""
            if let line = output.split(separator: "\n", omittingEmptySubsequences: true).first, output.contains("\n") {
                guard line.hasPrefix(listeningPrefix),
                      let components = URLComponents(string: String(line.dropFirst(listeningPrefix.count))),
                      components.scheme == "http", components.host == "127.0.0.1", let port = components.port, port > 0,
                      components.path == "/wsman"
                else {
                    stopAfterFailedStart(pid)
                    throw HarnessError("airlock-wsman's first line is \"\(line)\", not \"\(listeningPrefix)http://127.0.0.1:PORT/wsman\"; its log:\n\(tail(logPath))")
                }
                return (String(line.dropFirst(listeningPrefix.count)), UInt16(port))
            }
            if let status = try ProcessControl.wait(pid: pid, noHang: true) {
                throw HarnessError("airlock-wsman \(status) before announcing its URL (stdout: \"\(output)\"); its log:\n\(tail(logPath))")
            }
            if ContinuousClock.now > deadline {
                stopAfterFailedStart(pid)
                throw HarnessError("airlock-wsman did not announce its URL within 30 s (stdout: \"\(output)\"); its log:\n\(tail(logPath))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    private static func stopAfterFailedStart(_ pid: pid_t) {
        _ = try? ProcessControl.killProcessGroup(pid, signal: SIGKILL)
        _ = try? ProcessControl.wait(pid: pid)
    }

    /// Stops the gateway: SIGTERM, SIGKILL to its process group after 10 s, then removes
    /// ``directory``. Returns how it ended; calling it again returns the same.
    @discardableResult
    func stop() async -> WaitStatus {
        if let status = stopped.withLock({ $0 }) {
            return status
        }
        _ = try? ProcessControl.kill(pid, signal: SIGTERM)
        let deadline = ContinuousClock.now + .seconds(10)
        var status: WaitStatus?
        while status == nil && ContinuousClock.now < deadline {
            status = (try? ProcessControl.wait(pid: pid, noHang: true)) ?? nil
            if status == nil { try? await Task.sleep(for: .milliseconds(20)) }
        }
        if status == nil {
            _ = try? ProcessControl.killProcessGroup(pid, signal: SIGKILL)
            status = (try? ProcessControl.wait(pid: pid)) ?? nil
        }
        // Anything left in its process group (nothing should be).
        _ = try? ProcessControl.killProcessGroup(pid, signal: SIGKILL)
        let final = status ?? .exited(-1)
        stopped.withLock { $0 = final }
        try? FileManager.default.removeItem(atPath: directory)
        return final
    }

    // MARK: - Using it

    /// True while the process runs (not yet stopped, and not a zombie).
    var isRunning: Bool {
        stopped.withLock { $0 } == nil && processIsAlive(pid)
    }

    /// The end of the gateway's log (standard error), for failure messages.
    var logTail: String { Self.tail(logPath) }

    static func tail(_ path: String, bytes: Int = 6_000) -> String {
        guard let data = try? Posix.readFile(path, limit: 64 << 20) else { return "(no log at \(path))" }
        return String(decoding: data.suffix(bytes), as: UTF8.self)
    }

    private static func makeTemporaryDirectory() throws -> String {
        var template = Array("/tmp/airlock-wsman-test-XXXXXX".utf8CString)
        guard let result = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw HarnessError("mkdtemp failed: errno \(errno)")
        }
        return String(cString: result)
    }
}
