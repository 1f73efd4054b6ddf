import Glibc

/// What a finished check script left behind: how it ended and everything it printed.
struct ScriptRun {
    /// The exit status (0-255), or 128 + the signal number when a signal ended it.
    let exitStatus: Int32
    /// Standard output and standard error, interleaved as written.
    let output: String

    /// The script's last `N passed, M failed` line as (passed, failed), if it printed one.
    var tally: (passed: Int, failed: Int)? {
        for line in output.split(separator: "\n").reversed() {
            let words = line.split(separator: " ")
            guard words.count == 4, words[1] == "passed,", words[3] == "failed",
                let passed = Int(words[0]), let failed = Int(words[2]) else { continue }
            return (passed, failed)
        }
        return nil
    }

    /// The last `lines` lines of the output, for a failure message.
    func tail(_ lines: Int = 60) -> String {
        output.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Runs `bash script arguments...` under `timeout(1)` (SIGTERM after `timeLimitSeconds`,
    /// SIGKILL 30 s later) and waits for it. Its output goes to a temporary file, not a pipe,
    /// so a process another test spawns meanwhile cannot inherit our end and keep us waiting;
    /// descriptors above 2 are closed in the child for the same reason in reverse.
    static func bash(_ script: String, _ arguments: [String] = [], timeLimitSeconds: Int) throws -> ScriptRun {
        var template = Array("/tmp/airlock-service-test-XXXXXX".utf8CString)
        let logDescriptor = mkstemp(&template)
        guard logDescriptor >= 0 else { throw ScriptFailure("mkstemp: errno \(errno)") }
        let logPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        defer {
            close(logDescriptor)
            unlink(logPath)
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, logDescriptor, 1)
        posix_spawn_file_actions_adddup2(&actions, logDescriptor, 2)
        if let closeFrom = addCloseFrom { _ = closeFrom(&actions, 3) }

        // Default dispositions and an empty mask: the script traps INT/TERM to clean up, and
        // the test runner may ignore SIGPIPE, which children would otherwise inherit.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD] { sigaddset(&defaults, signal) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let command = ["timeout", "--kill-after=30", String(timeLimitSeconds), "bash", script] + arguments
        let argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, "timeout", &actions, &attributes, argv, environ)
        guard spawned == 0 else { throw ScriptFailure("posix_spawnp timeout bash \(script): \(String(cString: strerror(spawned)))") }

        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw ScriptFailure("waitpid \(pid): errno \(errno)") }
        }
        let exitStatus: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return ScriptRun(exitStatus: exitStatus, output: try readWholeFile(logDescriptor))
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+), which Swift's Glibc module
    /// does not declare.
    private static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    private static func readWholeFile(_ descriptor: Int32) throws -> String {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var offset: off_t = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, offset) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ScriptFailure("pread: errno \(errno)")
            }
            if count == 0 { break }
            bytes += buffer[..<count]
            offset += off_t(count)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

struct ScriptFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The repository this test file belongs to (`Tests/AirlockServiceTests/` is two levels down).
func repositoryDirectory(_ file: String = #filePath) -> String {
    var path = Substring(file)
    for _ in 0..<3 { path = path[..<(path.lastIndex(of: "/") ?? path.startIndex)] }
    return String(path)
}

/// The build products folder: where SwiftPM put this test bundle, `airlockd`, `airlockctl`,
/// `airlock-worker` and the plug-in libraries (`$AIRLOCK_PRODUCTS_DIR` overrides).
func productsDirectory() -> String? {
    if let override = getenv("AIRLOCK_PRODUCTS_DIR").map({ String(cString: $0) }), !override.isEmpty { return override }
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard count > 0 else { return nil }
    let executable = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return executable.lastIndex(of: "/").map { String(executable[..<$0]) }
}

/// Whether `name` is an executable in a `PATH` folder (or in /usr/sbin and /sbin, which a
/// non-login root shell may lack).
func commandExists(_ name: String) -> Bool {
    let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
    let folders = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"]
    return folders.contains { access("\($0)/\(name)", X_OK) == 0 }
}

let runsAsRoot = geteuid() == 0
