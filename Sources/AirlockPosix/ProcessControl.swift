import CAirlockShims
import Glibc

/// How a child process ended (`waitpid` status).
public enum WaitStatus: Sendable, Hashable, CustomStringConvertible {
    /// `exit(code)` or a return from `main`.
    case exited(Int32)
    /// Killed by a signal; `coreDumped` when the kernel wrote a core file.
    case signaled(Int32, coreDumped: Bool)

    /// Decodes a raw `waitpid` status (exited or signaled; stops are not requested).
    public init(rawValue status: Int32) {
        if airlock_wifsignaled(status) != 0 {
            self = .signaled(airlock_wtermsig(status), coreDumped: airlock_wcoredump(status) != 0)
        } else {
            self = .exited(airlock_wexitstatus(status))
        }
    }

    /// `"exited with code 3"` or `"killed by SIGSEGV (core dumped)"`.
    public var description: String {
        switch self {
        case .exited(let code): "exited with code \(code)"
        case .signaled(let signal, let core): "killed by \(ProcessControl.signalName(signal))\(core ? " (core dumped)" : "")"
        }
    }
}

/// Processes: spawning, reaping, signals, `prctl` settings and process identity.
public enum ProcessControl {
    /// A descriptor to hand to a spawned child: `source` (in this process) becomes number
    /// `target` in the child.
    public struct InheritedDescriptor: Sendable, Hashable {
        public var source: FileDescriptor
        public var target: Int32
        public init(source: FileDescriptor, target: Int32) {
            self.source = source
            self.target = target
        }
    }

    /// Starts `executable` with `posix_spawn` (about 1 ms, whatever this process's size).
    ///
    /// - `arguments` are `argv[1...]`; `argv[0]` is `executable`.
    /// - `environment` is the child's complete environment (nothing is inherited).
    /// - Each `fileDescriptors` entry is duplicated onto its target number; every descriptor
    ///   above the highest target (at least 2) is closed in the child. Descriptors 0-2 not
    ///   listed are inherited as they are.
    /// - The child starts with an empty signal mask and every signal at its default action,
    ///   and, with `newSession`, in a new session and process group (`setsid`) whose id is
    ///   its pid, so ``killProcessGroup(_:signal:)`` reaches everything it starts.
    ///
    /// Call it from a long-lived thread if the child sets `PR_SET_PDEATHSIG`: that signal
    /// fires when the spawning *thread* exits.
    public static func spawn(
        executable: String,
        arguments: [String],
        environment: [String: String],
        fileDescriptors: [InheritedDescriptor],
        newSession: Bool
    ) throws(SystemCallError) -> pid_t {
        // Move each source above every target first, so no dup2 can clobber a source that
        // shares a number with another target (and source == target still clears CLOEXEC).
        let highestTarget = fileDescriptors.map(\.target).max() ?? 2
        var temporaries: [Int32] = []
        defer { for fd in temporaries { _ = Glibc.close(fd) } }
        for entry in fileDescriptors {
            temporaries.append(try Posix.duplicate(entry.source, atLeast: Swift.max(highestTarget, 2) + 1).rawValue)
        }
        let targets = fileDescriptors.map(\.target)
        let argv = [executable] + arguments
        let envp = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }

        var pid: pid_t = 0
        let result = withCStringArray(argv) { argvPointer in
            withCStringArray(envp) { envpPointer in
                airlock_spawn(&pid, executable, argvPointer, envpPointer, temporaries, targets, Int32(targets.count), newSession ? 1 : 0)
            }
        }
        if result != 0 { throw SystemCallError(call: "posix_spawn(\(executable))") }
        return pid
    }

    /// `waitpid(pid)`: the child's status, or `nil` with `noHang` when it is still running.
    public static func wait(pid: pid_t, noHang: Bool = false) throws(SystemCallError) -> WaitStatus? {
        var status: Int32 = 0
        let result = try retryingInterrupts("waitpid(\(pid))", waitpid(pid, &status, noHang ? WNOHANG : 0))
        return result == 0 ? nil : WaitStatus(rawValue: status)
    }

    /// `waitpid(-1, WNOHANG)`: one terminated child and how it ended, or `nil` when no child
    /// has terminated (or there are no children). Call it in a loop on `SIGCHLD` until `nil`.
    public static func reapAny() throws(SystemCallError) -> (pid: pid_t, status: WaitStatus)? {
        var status: Int32 = 0
        while true {
            let result = waitpid(-1, &status, WNOHANG)
            if result > 0 { return (result, WaitStatus(rawValue: status)) }
            if result == 0 { return nil }
            switch Glibc.errno {
            case EINTR: continue
            case ECHILD: return nil
            default: throw SystemCallError(call: "waitpid(-1)")
            }
        }
    }

    /// The processes whose parent is `parent`, from `/proc/PID/stat` (field 4, read after
    /// the closing parenthesis of the command name, which may itself contain spaces or
    /// parentheses). Processes that end while the list is made are skipped.
    public static func children(of parent: pid_t) -> [pid_t] {
        (Posix.numericEntries(of: "/proc") ?? []).filter { pid in
            guard pid > 0, let stat = try? Posix.readFile("/proc/\(pid)/stat", limit: 4096),
                  let close = stat.lastIndex(of: UInt8(ascii: ")")) else { return false }
            // ") S PPID ..."
            let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " "))
            return fields.count > 1 && pid_t(String(decoding: fields[1], as: UTF8.self)) == parent
        }
    }

    /// `kill(pid, signal)`. `ESRCH` (already gone) is reported as `false`, not thrown.
    @discardableResult
    public static func kill(_ pid: pid_t, signal: Int32) throws(SystemCallError) -> Bool {
        if Glibc.kill(pid, signal) == 0 { return true }
        if Glibc.errno == ESRCH { return false }
        throw SystemCallError(call: "kill(\(pid), \(signalName(signal)))")
    }

    /// `kill(-group, signal)`: signals every process in process group `group`. `ESRCH` → `false`.
    @discardableResult
    public static func killProcessGroup(_ group: pid_t, signal: Int32) throws(SystemCallError) -> Bool {
        precondition(group > 1, "refusing to signal process group \(group)")
        if Glibc.kill(-group, signal) == 0 { return true }
        if Glibc.errno == ESRCH { return false }
        throw SystemCallError(call: "kill(-\(group), \(signalName(signal)))")
    }

    /// `SIGRTMIN...SIGRTMAX` as this libc defines them.
    public static var realTimeSignals: ClosedRange<Int32> { airlock_sigrtmin()...airlock_sigrtmax() }

    /// The symbolic name of a signal: `"SIGSEGV"`, `"SIGRTMIN+3"`, or `"signal 99"`.
    public static func signalName(_ signal: Int32) -> String {
        let minimum = airlock_sigrtmin(), maximum = airlock_sigrtmax()
        if signal >= minimum && signal <= maximum {
            return signal == minimum ? "SIGRTMIN" : "SIGRTMIN+\(signal - minimum)"
        }
        if let abbreviation = airlock_signal_abbreviation(signal) {
            return "SIG" + String(cString: abbreviation)
        }
        return "signal \(signal)"
    }

    /// `PR_SET_PDEATHSIG`: the signal this process gets when the thread that created it exits.
    /// Check ``parentProcessID()`` afterwards: the parent may already be gone.
    public static func setParentDeathSignal(_ signal: Int32) throws(SystemCallError) {
        _ = try retryingInterrupts("prctl(PR_SET_PDEATHSIG)", airlock_set_parent_death_signal(signal))
    }

    /// `PR_SET_NO_NEW_PRIVS`: `execve` can never grant privileges again (irreversible).
    public static func setNoNewPrivileges() throws(SystemCallError) {
        _ = try retryingInterrupts("prctl(PR_SET_NO_NEW_PRIVS)", airlock_set_no_new_privileges())
    }

    /// Whether `PR_SET_NO_NEW_PRIVS` is set.
    public static func noNewPrivileges() throws(SystemCallError) -> Bool {
        try retryingInterrupts("prctl(PR_GET_NO_NEW_PRIVS)", airlock_get_no_new_privileges()) == 1
    }

    /// `PR_SET_DUMPABLE`: a non-dumpable process cannot be ptrace-attached by its user and its
    /// `/proc/PID` files are owned by root; it also writes no core file.
    public static func setDumpable(_ dumpable: Bool) throws(SystemCallError) {
        _ = try retryingInterrupts("prctl(PR_SET_DUMPABLE)", airlock_set_dumpable(dumpable ? 1 : 0))
    }

    /// `PR_SET_CHILD_SUBREAPER`: orphaned descendants are re-parented to this process.
    public static func setChildSubreaper(_ enabled: Bool = true) throws(SystemCallError) {
        _ = try retryingInterrupts("prctl(PR_SET_CHILD_SUBREAPER)", airlock_set_child_subreaper(enabled ? 1 : 0))
    }

    /// Moves the process from `SCHED_OTHER` to `SCHED_BATCH`: the same nice level and CPU
    /// share, but a thread woken by another is no longer run ahead of the waker, so a
    /// sender finishes its system call (and goes back to sleep) before the receiver runs.
    /// Returns false when the process had another policy (an operator's choice, left as it
    /// is).
    @discardableResult
    public static func preferBatchScheduling() throws(SystemCallError) -> Bool {
        try retryingInterrupts("sched_setscheduler(SCHED_BATCH)", airlock_prefer_batch_scheduling()) == 1
    }

    /// `PR_SET_NAME`: the calling thread's name (first 15 bytes), shown by `ps`/`top`.
    public static func setName(_ name: String) throws(SystemCallError) {
        _ = try retryingInterrupts("prctl(PR_SET_NAME)", airlock_set_name(name))
    }

    /// `getpid()`.
    public static func processID() -> pid_t { getpid() }

    /// `getppid()`: 0 when the parent is outside this PID namespace or gone.
    public static func parentProcessID() -> pid_t { getppid() }

    /// `gettid()`: the calling thread's id.
    public static func threadID() -> pid_t { airlock_gettid() }
}

/// Calls `body` with a NULL-terminated array of C strings (argv/envp style).
func withCStringArray<Result>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> Result) -> Result {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
