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

    /// How the gateway checks Basic credentials.
    enum Authentication: Sendable {
        /// `--auth file` with a password file of these users (gateway-only users).
        case passwordFile([User])
        /// `--auth pam --pam-service SERVICE` (the system's users).
        case pam(service: String)
    }

    /// The process id (also its process group: it starts a session of its own).
    let pid: pid_t
    /// `http://127.0.0.1:PORT/wsman`, as the gateway announced it.
    let url: String
    /// The port of ``url``.
    let port: UInt16
    /// `https://127.0.0.1:PORT/wsman` when it was started with a certificate.
    let httpsURL: String?
    /// The temporary folder (password file, standard output, log); removed by ``stop()``.
    let directory: String
    /// The file the gateway's standard error (its log) goes to.
    let logPath: String

    private let stopped = Mutex<WaitStatus?>(nil)

    private init(pid: pid_t, listeners: [String: (url: String, port: UInt16)], directory: String, logPath: String) {
        self.pid = pid
        self.url = listeners["http"]!.url
        self.port = listeners["http"]!.port
        self.httpsURL = listeners["https"]?.url
        self.directory = directory
        self.logPath = logPath
    }

    /// The line airlock-wsman prints on standard output for each listener once it is bound.
    static let listeningPrefix = "airlock-wsman listening on "

    // MARK: - Life

    /// Writes a password file for `users` (hashes from `airlock-wsman hash-password`),
    /// starts `airlock-wsman --listen 127.0.0.1:0 --socket SOCKET --auth file
    /// --password-file FILE` (with `tls`, also `--listen-https 127.0.0.1:0 --certificate
    /// --private-key`) plus `extraArguments`, and returns once it has announced every
    /// listener's URL on standard output.
    static func start(
        socketPath: String, users: [User], tls: TestCertificate? = nil, extraArguments: [String] = []
    ) async throws -> GatewayProcess {
        try await start(socketPath: socketPath, authentication: .passwordFile(users), tls: tls, extraArguments: extraArguments)
    }

    /// Starts `airlock-wsman` as ``start(socketPath:users:tls:extraArguments:)`` does, with
    /// the given way of checking credentials.
    static func start(
        socketPath: String, authentication: Authentication, tls: TestCertificate? = nil, extraArguments: [String] = []
    ) async throws -> GatewayProcess {
        let executable = Daemon.executablePath("airlock-wsman")
        guard access(executable, X_OK) == 0 else {
            throw HarnessError("\(executable) is not built: swift build --build-tests builds it with the tests")
        }
        let directory = try makeTemporaryDirectory()
        do {
            let authenticationArguments: [String]
            switch authentication {
            case .passwordFile(let users):
                let passwordFile = directory + "/passwords"
                var lines = "# gateway test users: name:crypt(3) hash\n\n"
                for user in users {
                    lines += "\(user.name):\(try await hash(user.password))\n"
                }
                try lines.write(toFile: passwordFile, atomically: true, encoding: .utf8)
                authenticationArguments = ["--auth", "file", "--password-file", passwordFile]
            case .pam(let service):
                authenticationArguments = ["--auth", "pam", "--pam-service", service]
            }

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
            var arguments = ["--listen", "127.0.0.1:0"]
            if let tls {
                arguments += ["--listen-https", "127.0.0.1:0", "--certificate", tls.certificatePath, "--private-key", tls.privateKeyPath]
            }
            arguments += ["--socket", socketPath] + authenticationArguments + ["--log-level", "debug"] + extraArguments
            let pid = try ProcessControl.spawn(
                executable: executable, arguments: arguments, environment: environment,
                fileDescriptors: [.init(source: null, target: 0), .init(source: output, target: 1), .init(source: log, target: 2)],
                newSession: true)
            let listeners = try await waitForAnnouncements(
                schemes: tls == nil ? ["http"] : ["http", "https"], pid: pid, outputPath: outputPath, logPath: logPath)
            return GatewayProcess(pid: pid, listeners: listeners, directory: directory, logPath: logPath)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    /// Starts a gateway with a password file of `users`, runs `body` with it, and stops it
    /// however `body` ends.
    static func with<Result>(
        socketPath: String, users: [User], tls: TestCertificate? = nil, extraArguments: [String] = [],
        _ body: (GatewayProcess) async throws -> Result
    ) async throws -> Result {
        try await with(socketPath: socketPath, authentication: .passwordFile(users), tls: tls, extraArguments: extraArguments, body)
    }

    /// Starts a gateway, runs `body` with it, and stops it however `body` ends.
    static func with<Result>(
        socketPath: String, authentication: Authentication, tls: TestCertificate? = nil, extraArguments: [String] = [],
        _ body: (GatewayProcess) async throws -> Result
    ) async throws -> Result {
        let gateway = try await start(socketPath: socketPath, authentication: authentication, tls: tls, extraArguments: extraArguments)
        return try await withCleanup(of: gateway, { await $0.stop() }, body)
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

    /// Waits for one `airlock-wsman listening on SCHEME://127.0.0.1:PORT/wsman` line per
    /// scheme in `schemes` (in any order); returns the URL and port of each scheme.
    private static func waitForAnnouncements(
        schemes: [String], pid: pid_t, outputPath: String, logPath: String
    ) async throws -> [String: (url: String, port: UInt16)] {
        let deadline = ContinuousClock.now + .seconds(30)
        let expected = "\(listeningPrefix)\(schemes.joined(separator: "|"))://127.0.0.1:PORT/wsman"
        while true {
            let output = (try? Posix.readFile(outputPath)).map { String(decoding: $0, as: UTF8.self) } ?? ""
            // Complete lines only.
            let lines = output.split(separator: "\n", omittingEmptySubsequences: false).dropLast().filter { !$0.isEmpty }
            var listeners: [String: (url: String, port: UInt16)] = [:]
            for line in lines {
                guard line.hasPrefix(listeningPrefix),
                      let components = URLComponents(string: String(line.dropFirst(listeningPrefix.count))),
                      let scheme = components.scheme, schemes.contains(scheme), listeners[scheme] == nil,
                      components.host == "127.0.0.1", let port = components.port, port > 0, components.path == "/wsman"
                else {
                    stopAfterFailedStart(pid)
                    throw HarnessError("airlock-wsman printed \"\(line)\" where \(schemes.count) line(s) \"\(expected)\" were due; its log:\n\(tail(logPath))")
                }
                listeners[scheme] = (String(line.dropFirst(listeningPrefix.count)), UInt16(port))
            }
            if listeners.count == schemes.count { return listeners }
            if let status = try ProcessControl.wait(pid: pid, noHang: true) {
                throw HarnessError("airlock-wsman \(status) before announcing \"\(expected)\" (stdout: \"\(output)\"); its log:\n\(tail(logPath))")
            }
            if ContinuousClock.now > deadline {
                stopAfterFailedStart(pid)
                throw HarnessError("airlock-wsman did not announce \"\(expected)\" within 30 s (stdout: \"\(output)\"); its log:\n\(tail(logPath))")
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
        let final = await terminateAndReap(pid)
        // Anything left in its process group (nothing should be).
        _ = try? ProcessControl.killProcessGroup(pid, signal: SIGKILL)
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

/// A self-signed certificate for `127.0.0.1` (and its key), made with openssl in a
/// temporary folder, for the gateway's HTTPS listener; the clients trust it as their CA.
struct TestCertificate: Sendable {
    let directory: String
    var certificatePath: String { directory + "/certificate.pem" }
    var privateKeyPath: String { directory + "/private-key.pem" }

    /// Makes one, runs `body`, and removes it however `body` ends.
    static func with<Result>(_ body: (TestCertificate) async throws -> Result) async throws -> Result {
        var template = Array("/tmp/airlock-wsman-tls-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw HarnessError("mkdtemp failed: errno \(errno)")
        }
        let certificate = TestCertificate(directory: String(cString: made))
        defer { try? FileManager.default.removeItem(atPath: certificate.directory) }
        let outcome = try await ChildProcess.start("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", certificate.privateKeyPath, "-out", certificate.certificatePath,
        ]).finish()
        guard outcome.exitCode == 0 else {
            throw HarnessError("openssl req -x509 \(outcome.status): \(outcome.stderrText)")
        }
        return try await body(certificate)
    }
}
