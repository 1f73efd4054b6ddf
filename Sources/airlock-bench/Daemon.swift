import AirlockPosix
import Glibc

/// Why the benchmark cannot go on.
struct BenchFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The executables and the noop plug-in of this build: next to `airlock-bench` in the
/// build products folder (`.build/release/`).
struct BuildProducts: Sendable {
    let directory: String
    /// `airlock-bench` itself, re-executed for the ping-pong partner and the guard.
    let bench: String

    var daemon: String { directory + "/airlockd" }
    var worker: String { directory + "/airlock-worker" }
    var noopPlugin: String { directory + "/libairlock-plugin-noop.so" }

    static func locate() throws(BenchFailure) -> BuildProducts {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { throw BenchFailure("cannot read /proc/self/exe: \(String(cString: strerror(errno)))") }
        let path = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        return BuildProducts(directory: directory, bench: path)
    }

    /// Checks that airlockd, the worker and the noop plug-in are built. `swift run
    /// airlock-bench` builds the executables (they are dependencies of this target) but not
    /// the plug-in library, so a missing plug-in is built here with `swift build`.
    func prepare() throws(BenchFailure) {
        for executable in [daemon, worker] where access(executable, X_OK) != 0 {
            throw BenchFailure("\(executable) is missing: build the package first (swift build -c \(buildConfiguration))")
        }
        guard access(noopPlugin, R_OK) != 0 else { return }
        // <scratch>/<triple>/<configuration>/airlock-bench: the scratch path is two levels up.
        let parts = directory.split(separator: "/", omittingEmptySubsequences: false)
        let scratch = parts.dropLast(2).joined(separator: "/")
        let packageRoot = packageRootDirectory
        Progress.warn("building the noop plug-in: swift build -c \(buildConfiguration) --product airlock-plugin-noop (in \(packageRoot))")
        let status = try runTool(
            ["/usr/bin/env", "swift", "build", "-c", buildConfiguration, "--scratch-path", scratch, "--package-path", packageRoot, "--product", "airlock-plugin-noop"],
            output: FileDescriptor(rawValue: 2))  // standard output stays for the table or the JSON
        guard access(noopPlugin, R_OK) == 0 else {
            throw BenchFailure("\(noopPlugin) is missing and building it failed (\(status)); run swift build -c \(buildConfiguration) --product airlock-plugin-noop")
        }
    }

    /// The package's root folder (this file is Sources/airlock-bench/Daemon.swift in it).
    private var packageRootDirectory: String {
        let parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        return parts.dropLast(3).joined(separator: "/")
    }
}

/// The build configuration of this executable.
let buildConfiguration: String = {
    #if DEBUG
    return "debug"
    #else
    return "release"
    #endif
}()

/// Runs a helper program to its end (`posix_spawn`), with this process's environment and
/// standard error, and standard output to `output` (nil: inherited). Returns how it ended.
@discardableResult
func runTool(_ argv: [String], output: FileDescriptor?) throws(BenchFailure) -> WaitStatus {
    var descriptors: [ProcessControl.InheritedDescriptor] = []
    if let output { descriptors.append(.init(source: output, target: 1)) }
    let pid: pid_t
    do {
        pid = try ProcessControl.spawn(
            executable: argv[0], arguments: Array(argv.dropFirst()), environment: currentEnvironment(),
            fileDescriptors: descriptors, newSession: false)
    } catch {
        throw BenchFailure("cannot start \(argv.joined(separator: " ")): \(error)")
    }
    do {
        guard let status = try ProcessControl.wait(pid: pid) else { throw BenchFailure("waitpid(\(pid)) returned nothing") }
        return status
    } catch {
        throw BenchFailure("waitpid(\(pid)): \(error)")
    }
}

/// This process's environment as a dictionary.
func currentEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    var cursor = environ
    while let entry = cursor.pointee {
        let text = String(cString: entry)
        if let equals = text.firstIndex(of: "=") {
            result[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        cursor += 1
    }
    return result
}

/// One plug-in registration of the benchmark's configuration: a copy of the noop plug-in.
struct BenchPlugin: Sendable {
    var name: String
    /// false: every sandbox layer off (UserNamespace ... ResourceLimits false, Network true).
    var sandboxed = true
}

/// A real `airlockd` in a temporary folder, started with this process's CPU affinity
/// (children inherit it) and stopped by ``stop()``. A guard process
/// (`airlock-bench --guard`) kills it and removes the folder if the benchmark dies first.
final class BenchDaemon {
    let pid: pid_t
    let directory: String
    let socketPath: String
    let logPath: String
    private let guardPID: pid_t
    private let guardPipe: FileDescriptor
    private var stopped = false
    /// Leave the folder in place at the end (`--keep`).
    var keepsDirectory = false

    private init(pid: pid_t, directory: String, guardPID: pid_t, guardPipe: FileDescriptor) {
        self.pid = pid
        self.directory = directory
        self.socketPath = directory + "/airlockd.sock"
        self.logPath = directory + "/airlockd.log"
        self.guardPID = guardPID
        self.guardPipe = guardPipe
    }

    deinit { stop() }

    /// Writes a configuration registering `plugins` (all copies of the noop plug-in, with
    /// quotas raised so thousands of shells, operations and connections fit), starts
    /// airlockd and waits until its socket accepts connections.
    static func start(
        label: String, products: BuildProducts, plugins: [BenchPlugin], prefix: [String] = [], workerPrefix: [String] = [],
        logLevel: String = "notice", keep: Bool = false
    ) throws(BenchFailure) -> BenchDaemon {
        var template = Array("/tmp/airlock-bench-\(label).XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw BenchFailure("mkdtemp: \(String(cString: strerror(errno)))") }
        let directory = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let socketPath = directory + "/airlockd.sock"
        let stateDirectory = directory + "/state"
        let configPath = directory + "/airlockd.json"
        let logPath = directory + "/airlockd.log"
        // Traversable (0711): as root, airlockd runs workers as `nobody`, and they reach
        // their state folder below this one.
        chmod(directory, 0o711)
        mkdir(stateDirectory, 0o711)
        var worker = products.worker
        do {
            if !workerPrefix.isEmpty {
                worker = directory + "/airlock-worker"
                let command = (workerPrefix + [products.worker]).map { "'\($0)'" }.joined(separator: " ")
                try writeNewFile(worker, "#!/bin/sh\nexec \(command) \"$@\"\n")
                chmod(worker, 0o755)
            }
            try writeNewFile(configPath, configuration(
                socketPath: socketPath, stateDirectory: stateDirectory, worker: worker, library: products.noopPlugin, plugins: plugins))
        } catch {
            throw BenchFailure("cannot write \(configPath): \(error)")
        }

        let pid: pid_t
        do {
            let log = try Posix.open(logPath, flags: O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o644)
            defer { try? Posix.close(log) }
            let devNull = try Posix.open("/dev/null", flags: O_RDONLY | O_CLOEXEC)
            defer { try? Posix.close(devNull) }
            var argv = prefix + [products.daemon, "--config", configPath, "--log-level", logLevel]
            argv[0] = try resolveExecutable(argv[0])
            pid = try ProcessControl.spawn(
                executable: argv[0], arguments: Array(argv.dropFirst()),
                environment: ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": directory, "LANG": "C.UTF-8"],
                fileDescriptors: [.init(source: devNull, target: 0), .init(source: log, target: 1), .init(source: log, target: 2)],
                newSession: true)
        } catch {
            throw BenchFailure("cannot start airlockd: \(error)")
        }

        // The guard holds the read end of a pipe: end of file without a release byte means
        // the benchmark died, and the guard stops airlockd and removes the folder.
        let guardPID: pid_t
        let guardPipe: FileDescriptor
        do {
            let pipe = try Posix.pipe()
            defer { try? Posix.close(pipe.read) }
            let devNull = try Posix.open("/dev/null", flags: O_RDWR | O_CLOEXEC)
            defer { try? Posix.close(devNull) }
            guardPID = try ProcessControl.spawn(
                executable: products.bench, arguments: ["--guard", String(pid), keep ? "" : directory],
                environment: ["PATH": "/usr/bin:/bin", "SWIFT_BACKTRACE": "enable=no"],
                fileDescriptors: [.init(source: devNull, target: 0), .init(source: devNull, target: 1), .init(source: pipe.read, target: 3)],
                newSession: true)
            guardPipe = pipe.write
        } catch {
            _ = try? ProcessControl.kill(pid, signal: SIGKILL)
            _ = try? ProcessControl.wait(pid: pid)
            throw BenchFailure("cannot start the guard process: \(error)")
        }
        let daemon = BenchDaemon(pid: pid, directory: directory, guardPID: guardPID, guardPipe: guardPipe)
        daemon.keepsDirectory = keep

        // Ready when the socket accepts a connection.
        let limit: UInt64 = prefix.isEmpty ? 15_000_000_000 : 120_000_000_000
        let started = SystemClock.monotonicNanoseconds()
        while true {
            if let fd = try? UnixSocket.connect(path: socketPath) {
                try? Posix.close(fd)
                break
            }
            if let status = (try? ProcessControl.wait(pid: pid, noHang: true)) ?? nil {
                let log = daemon.logTail()
                daemon.stopped = true
                daemon.releaseGuard()
                if !keep { _ = try? runTool(["/bin/rm", "-rf", directory], output: nil) }
                throw BenchFailure("airlockd \(status) before it accepted connections; the end of its log:\n\(log)")
            }
            if SystemClock.monotonicNanoseconds() &- started > limit {
                daemon.stop()
                throw BenchFailure("airlockd did not accept connections on \(socketPath) within \(limit / 1_000_000_000) s")
            }
            usleep(2000)
        }
        return daemon
    }

    /// The supervisor's resident set size (`VmRSS`), or nil when it cannot be read.
    func residentBytes() -> UInt64? {
        (try? ProcessStatistics.read(pid: pid))?.residentBytes
    }

    /// The processes airlockd started, and theirs (its workers: a worker in a PID
    /// namespace is the child of a small init process).
    func childPIDs() -> [pid_t] {
        var result: [pid_t] = []
        var pending = [pid]
        while let parent = pending.popLast() {
            guard let tasks = try? Posix.readFile("/proc/\(parent)/task/\(parent)/children") else { continue }
            let children = tasks.split(separator: UInt8(ascii: " ")).compactMap { pid_t(String(decoding: $0, as: UTF8.self)) }
            result += children
            pending += children
        }
        return result
    }

    /// The last lines of airlockd's log.
    func logTail(lines: Int = 20) -> String {
        guard let bytes = try? Posix.readFile(logPath, limit: 1 << 20) else { return "(no log)" }
        let text = String(decoding: bytes, as: UTF8.self)
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Stops airlockd (SIGTERM, then SIGKILL after 10 s), releases the guard and removes the
    /// temporary folder. Idempotent.
    func stop() {
        guard !stopped else { return }
        stopped = true
        // The whole process group: with --daemon-prefix (strace, perf record) `pid` is the
        // wrapper, and airlockd is its child in the same group (workers have their own
        // sessions and are stopped by airlockd).
        _ = try? ProcessControl.killProcessGroup(pid, signal: SIGTERM)
        let started = SystemClock.monotonicNanoseconds()
        var exited = false
        while SystemClock.monotonicNanoseconds() &- started < 10_000_000_000 {
            if !exited, ((try? ProcessControl.wait(pid: pid, noHang: true)) ?? nil) != nil { exited = true }
            if exited && Glibc.kill(-pid, 0) != 0 { break }  // the group is empty
            usleep(2000)
        }
        if Glibc.kill(-pid, 0) == 0 || !exited {
            _ = try? ProcessControl.killProcessGroup(pid, signal: SIGKILL)
            if !exited { _ = try? ProcessControl.wait(pid: pid) }
        }
        releaseGuard()
        if keepsDirectory {
            Progress.warn("kept \(directory) (airlockd.log, airlockd.json, state)")
        } else {
            _ = try? runTool(["/bin/rm", "-rf", directory], output: nil)
        }
    }

    /// Tells the guard all is well (one byte, then end of file) and reaps it.
    private func releaseGuard() {
        var byte: UInt8 = 1
        _ = withUnsafeBytes(of: &byte) { try? Posix.write(guardPipe, $0) }
        try? Posix.close(guardPipe)
        _ = try? ProcessControl.wait(pid: guardPID)
    }

    /// The configuration file: every plug-in a copy of the noop library.
    private static func configuration(socketPath: String, stateDirectory: String, worker: String, library: String, plugins: [BenchPlugin]) -> String {
        let user = currentUserName()
        let admins = Set(["root", user]).sorted().map(jsonString).joined(separator: ", ")
        let entries = plugins.map { plugin -> String in
            var sandbox = ""
            if !plugin.sandboxed {
                sandbox = """
                    , "Sandbox": {"UserNamespace": false, "MountNamespace": false, "PidNamespace": false, "IpcNamespace": false, \
                    "UtsNamespace": false, "Landlock": false, "Seccomp": false, "ResourceLimits": false, "Network": true}
                    """
            }
            return """
                    {"Name": \(jsonString(plugin.name)), "Filename": \(jsonString(library)),
                     "Quotas": {"MaxShells": 100000, "MaxShellsPerUser": 100000, "MaxConcurrentUsers": 1000,
                                "MaxConcurrentOperations": 100000, "MaxConcurrentOperationsPerUser": 100000,
                                "MaxConcurrentCommandsPerShell": 1000}\(sandbox)}
                """
        }
        return """
            {
              "Socket": \(jsonString(socketPath)),
              "StateDirectory": \(jsonString(stateDirectory)),
              "WorkerExecutable": \(jsonString(worker)),
              "MaxConnections": 100000,
              "MaxConnectionsPerUser": 100000,
              "Admins": [\(admins)],
              "Plugins": [
            \(entries.joined(separator: ",\n"))
              ]
            }

            """
    }

    private static func resolveExecutable(_ name: String) throws(SystemCallError) -> String {
        if name.contains("/") { return name }
        for directory in ["/usr/local/bin", "/usr/bin", "/bin"] where access(directory + "/" + name, X_OK) == 0 {
            return directory + "/" + name
        }
        throw SystemCallError(call: "find \(name) in /usr/local/bin:/usr/bin:/bin", errno: .noSuchFileOrDirectory)
    }
}

/// Creates (or truncates) `path` and writes `contents`.
func writeNewFile(_ path: String, _ contents: String) throws(SystemCallError) {
    let fd = try Posix.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o644)
    defer { try? Posix.close(fd) }
    let bytes = Array(contents.utf8)
    try bytes.withUnsafeBytes { buffer in Result { () throws(SystemCallError) in try Posix.writeAll(fd, buffer) } }.get()
}

/// The name of the user running the benchmark.
func currentUserName() -> String {
    guard let entry = getpwuid(getuid()), let name = entry.pointee.pw_name else { return String(getuid()) }
    return String(cString: name)
}

/// The guard process (`airlock-bench --guard PID FOLDER`, descriptor 3 = the read end of a
/// pipe whose write end only the benchmark holds). It waits for the benchmark to release
/// it; if the pipe ends without the release byte (the benchmark died: crash, SIGKILL,
/// Ctrl-C), it stops airlockd (SIGTERM, SIGKILL after 3 s) and removes the folder.
enum DaemonGuard {
    static func run(arguments: [String]) -> Never {
        signal(SIGINT, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        guard arguments.count == 3, let pid = pid_t(arguments[1]), pid > 1 else { exit(64) }
        let directory = arguments[2]
        var byte: UInt8 = 0
        let count = withUnsafeMutableBytes(of: &byte) { buffer in
            (try? Posix.read(FileDescriptor(rawValue: 3), into: buffer)) ?? 0
        }
        if count == 1 { exit(0) }
        _ = try? ProcessControl.kill(pid, signal: SIGTERM)
        let started = SystemClock.monotonicNanoseconds()
        while SystemClock.monotonicNanoseconds() &- started < 3_000_000_000 {
            if Glibc.kill(pid, 0) != 0 { break }
            usleep(10_000)
        }
        _ = try? ProcessControl.kill(pid, signal: SIGKILL)
        usleep(100_000)
        if directory.hasPrefix("/tmp/airlock-bench-") {
            _ = try? runTool(["/bin/rm", "-rf", directory], output: nil)
        }
        exit(0)
    }
}

/// A JSON string literal.
func jsonString(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\t": result += "\\t"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
    }
    return result + "\""
}
