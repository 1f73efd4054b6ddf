import AirlockPosix
import CAirlockShims
import Glibc

/// The worker sandbox (issue 4): confines the calling process before it loads a plug-in.
public enum Sandbox {
    /// The system calls the seccomp layer denies (`SECCOMP_RET_TRAP`; the worker reports the
    /// call by name in a `W_FATAL` frame and dies by `SIGSYS`). Everything else is allowed.
    ///
    /// On x86-64: `ptrace`, `process_vm_readv`, `process_vm_writev`, `mount`, `umount2`,
    /// `pivot_root`, `chroot`, `bpf`, `perf_event_open`, `kexec_load`, `kexec_file_load`,
    /// `init_module`, `finit_module`, `delete_module`, `keyctl`, `add_key`, `request_key`,
    /// `unshare`, `setns`, `personality`, `userfaultfd`, `swapon`, `swapoff`, `reboot`, `acct`,
    /// `settimeofday`, `clock_settime`, `adjtimex`, `clock_adjtime`, `open_by_handle_at`,
    /// `name_to_handle_at`, `quotactl`, `syslog`, `vhangup`, `fanotify_init`, `pidfd_getfd`,
    /// `kcmp`, `io_uring_setup`, `io_uring_enter`, `io_uring_register`, `nfsservctl`,
    /// `lookup_dcookie`, `sethostname`, `setdomainname`, `mount_setattr`, `move_mount`,
    /// `open_tree`, `fsopen`, `fsmount`, `fsconfig`, `fspick`, `quotactl_fd`, `iopl`, `ioperm`,
    /// `uselib`, `create_module`, `get_kernel_syms`, `query_module`, `_sysctl`, `modify_ldt`.
    /// Also: `clone` with any namespace flag and `ioctl(TIOCSTI/TIOCLINUX)` trap; `clone3`
    /// fails with `ENOSYS` (its flags cannot be inspected; glibc falls back to `clone`); x32
    /// system calls trap; another architecture's system calls kill the process.
    public static var deniedSystemCalls: [String] {
        (0..<airlock_seccomp_deny_list_count()).compactMap { airlock_seccomp_deny_list_name($0).map { String(cString: $0) } }
    }

    /// The names of the layers in the order reported.
    public static let layerNames = ["user", "mount", "pid", "network", "ipc", "uts", "landlock", "seccomp", "limits", "cgroup", "no_new_privs", "run_as"]

    /// Confines the calling process. Call it on the main thread before any other thread
    /// exists and before `dlopen`.
    ///
    /// Returns in the process that will host the plug-in. With a PID namespace it never
    /// returns in the calling (outer) process: that one forks the namespace's PID 1 (a tiny
    /// reaper) and the host (PID 2, which returns), closes `channelFD`, waits for the host and
    /// mirrors its end: the same exit code, or the same signal re-raised with `SIG_DFL`, so the
    /// supervisor sees the real signal. (The host is not PID 1 because PID 1 ignores every
    /// signal it has no handler for, even `abort()`'s and a re-raised `SIGSYS`.)
    ///
    /// Steps: `PR_SET_PDEATHSIG(SIGKILL)` and a check that the supervisor is still there; join
    /// the cgroup; rlimits (`RLIMIT_DATA` = memory, `RLIMIT_NOFILE`, `RLIMIT_CORE` 0,
    /// `M_ARENA_MAX` 2); run as the configured user; `unshare` the namespaces; map uid/gid 0
    /// inside to the (unprivileged) outside ids; `RLIMIT_NPROC` (set inside the user namespace
    /// it counts this worker's tasks only; without one it counts every process of the real
    /// uid, so give workers a dedicated uid, or use the cgroup's `pids.max`, the precise limit);
    /// fork into the PID namespace; mounts (everything read-only and `nosuid`, the state and
    /// write paths writable, fresh `tmpfs` on `/tmp`, `/dev/shm`, and empty ones over `/run`,
    /// `/home`, `/root`, a fresh `/proc`); host name; Landlock; `PR_SET_NO_NEW_PRIVS`; seccomp
    /// (after installing the `SIGSYS` reporter); every capability dropped.
    ///
    /// A layer the kernel lacks is reported as `unavailable: <reason>` and the others still
    /// apply. Unexpected failures throw ``SystemCallError`` naming the call.
    public static func enter(_ profile: SandboxProfile, pluginPath: String, channelFD: Int32) throws -> [SandboxLayerState] {
        var timings: [(step: String, nanoseconds: UInt64)] = []
        return try enter(profile, pluginPath: pluginPath, channelFD: channelFD, timings: &timings)
    }

    /// ``enter(_:pluginPath:channelFD:)`` that also records how long each step took (for benchmarks).
    public static func enter(
        _ profile: SandboxProfile, pluginPath: String, channelFD: Int32,
        timings: inout [(step: String, nanoseconds: UInt64)]
    ) throws -> [SandboxLayerState] {
        var confinement = Confinement(profile: profile, pluginPath: pluginPath, channelFD: channelFD)
        try confinement.run()
        timings = confinement.timings
        return layerNames.map { SandboxLayerState(name: $0, state: confinement.states[$0] ?? "off") }
    }
}

/// One run of ``Sandbox/enter(_:pluginPath:channelFD:)``.
struct Confinement {
    let profile: SandboxProfile
    let pluginPath: String
    let channelFD: Int32
    var states: [String: String] = [:]
    var timings: [(step: String, nanoseconds: UInt64)] = []
    private var clock = SystemClock.monotonicNanoseconds()

    init(profile: SandboxProfile, pluginPath: String, channelFD: Int32) {
        self.profile = profile
        self.pluginPath = pluginPath
        self.channelFD = channelFD
    }

    private var layers: SandboxLayers { profile.layers }

    private mutating func lap(_ step: String) {
        let now = SystemClock.monotonicNanoseconds()
        timings.append((step, now - clock))
        clock = now
    }

    mutating func run() throws {
        // unshare(CLONE_NEWUSER) needs a single-threaded process, and Landlock binds only the
        // calling thread: refuse rather than confine partially.
        let threads = ProcessStatistics.threadCount()
        if threads > 1 && !layers.intersection([.userNamespace, .mountNamespace, .pidNamespace, .networkNamespace, .ipcNamespace, .utsNamespace]).isEmpty {
            throw SystemCallError(call: "Sandbox.enter: \(threads) threads are running; namespaces need a single-threaded process", errno: .invalidArgument)
        }
        try dieWithSupervisor()
        lap("pdeathsig")
        joinCgroup()
        lap("cgroup")
        try applyEarlyLimits()
        lap("rlimits")
        try runAsUser()
        lap("run_as")
        let executableDirectory = Paths.directory(of: Paths.resolvedExecutable())
        let mappedLibraryDirectories = Paths.mappedLibraryDirectories()
        // With network: the resolver configuration, which /etc/resolv.conf often links into /run.
        let networkPaths = profile.allowNetwork ? Paths.resolverConfigurationDirectories() : []
        if !profile.stateDirectory.isEmpty { try Paths.makeDirectories(profile.stateDirectory, mode: 0o700) }
        lap("paths")
        let namespaces = try unshareNamespaces()
        lap("unshare")
        if namespaces.contains(.userNamespace) {
            try writeIdentityMaps()
            lap("id maps")
        }
        try applyTaskLimit()
        if namespaces.contains(.pidNamespace) {
            try forkIntoPIDNamespace()
            lap("pid fork")
        }
        if namespaces.contains(.mountNamespace) {
            var view = MountView(profile: profile, pluginDirectory: Paths.directory(of: pluginPath),
                                 executableDirectory: executableDirectory, extraReadPaths: networkPaths,
                                 privateProc: namespaces.contains(.pidNamespace),
                                 privateShm: namespaces.contains(.ipcNamespace))
            try view.apply()
            lap("mounts")
        }
        if namespaces.contains(.utsNamespace) {
            _ = try retrying("sethostname", airlock_sethostname(Paths.hostName(forPlugin: pluginPath)))
        }
        lap("hostname")
        if layers.contains(.noNewPrivileges) {
            try ProcessControl.setNoNewPrivileges()
            states["no_new_privs"] = "active"
        } else {
            states["no_new_privs"] = "off"
        }
        if layers.contains(.landlock) {
            var ruleset = LandlockRuleset(profile: profile, pluginDirectory: Paths.directory(of: pluginPath),
                                          executableDirectory: executableDirectory,
                                          libraryDirectories: mappedLibraryDirectories + networkPaths,
                                          wholeProc: namespaces.contains(.pidNamespace),
                                          privateTmp: namespaces.contains(.mountNamespace),
                                          privateShm: namespaces.contains(.ipcNamespace) && namespaces.contains(.mountNamespace))
            states["landlock"] = try ruleset.restrictSelf()
            lap("landlock")
        } else {
            states["landlock"] = "off"
        }
        if layers.contains(.seccomp) {
            states["seccomp"] = try installSeccomp()
            lap("seccomp")
        } else {
            states["seccomp"] = "off"
        }
        if layers.contains(.noNewPrivileges) {
            _ = try retrying("capset (drop every capability)", airlock_drop_capabilities())
            lap("no_new_privs")
        }
    }

    // MARK: Steps

    private func dieWithSupervisor() throws {
        try ProcessControl.setParentDeathSignal(SIGKILL)
        // The supervisor may have died before PDEATHSIG was set: its end of the channel is
        // then closed.
        let events = try Posix.poll(FileDescriptor(rawValue: channelFD), for: [.readHangup], timeoutMilliseconds: 0)
        if !events.intersection([.hangup, .readHangup, .invalid]).isEmpty {
            throw SystemCallError(call: "poll(channel): the supervisor is gone", errno: .noSuchProcess)
        }
    }

    private mutating func joinCgroup() {
        guard !profile.cgroupPath.isEmpty else { states["cgroup"] = "off"; return }
        do {
            try Posix.writeFile(profile.cgroupPath + "/cgroup.procs", "0")
            states["cgroup"] = "active"
        } catch {
            states["cgroup"] = "unavailable: \(error)"
        }
    }

    private mutating func applyEarlyLimits() throws {
        guard layers.contains(.resourceLimits) else { states["limits"] = "off"; return }
        _ = try retrying("setrlimit(RLIMIT_DATA)", airlock_lower_rlimit(AIRLOCK_RLIMIT_DATA, profile.memoryBytes))
        _ = try retrying("setrlimit(RLIMIT_NOFILE)", airlock_lower_rlimit(AIRLOCK_RLIMIT_NOFILE, UInt64(profile.maxOpenFiles)))
        _ = try retrying("setrlimit(RLIMIT_CORE)", airlock_lower_rlimit(AIRLOCK_RLIMIT_CORE, 0))
        // Bound glibc's per-thread arenas: each reserves address space that RLIMIT_DATA counts.
        _ = airlock_set_malloc_arena_max(2)
        states["limits"] = "active"
    }

    private func applyTaskLimit() throws {
        guard layers.contains(.resourceLimits) else { return }
        _ = try retrying("setrlimit(RLIMIT_NPROC)", airlock_lower_rlimit(AIRLOCK_RLIMIT_NPROC, UInt64(profile.maxTasks)))
    }

    private mutating func runAsUser() throws {
        guard profile.runAsUID != nil || profile.runAsGID != nil else { states["run_as"] = "off"; return }
        let uid = profile.runAsUID ?? getuid()
        let gid = profile.runAsGID ?? getgid()
        if geteuid() == 0 {
            // The supervisor resolved the user's groups (no NSS lookup here: it loaded
            // libnss_systemd and read /etc/group at every worker start).
            let groups: [gid_t] = profile.runAsUID != nil && !profile.supplementaryGroups.isEmpty
                ? profile.supplementaryGroups : [gid]
            _ = try retrying("setgroups", airlock_setgroups(groups.count, groups))
        }
        if gid != getgid() || gid != getegid() {
            _ = try retrying("setresgid(\(gid))", airlock_setresgid(gid))
        }
        if uid != getuid() || uid != geteuid() {
            _ = try retrying("setresuid(\(uid))", airlock_setresuid(uid))
        }
        // Changing credentials clears PDEATHSIG and makes the process non-dumpable (which would
        // make /proc/self/uid_map root-owned): restore both.
        try ProcessControl.setParentDeathSignal(SIGKILL)
        try ProcessControl.setDumpable(true)
        states["run_as"] = "active"
    }

    private static let namespaceLayers: [(layer: SandboxLayers, flag: Int32, name: String, call: String)] = [
        (.userNamespace, AIRLOCK_CLONE_NEWUSER, "user", "CLONE_NEWUSER"),
        (.mountNamespace, AIRLOCK_CLONE_NEWNS, "mount", "CLONE_NEWNS"),
        (.pidNamespace, AIRLOCK_CLONE_NEWPID, "pid", "CLONE_NEWPID"),
        (.networkNamespace, AIRLOCK_CLONE_NEWNET, "network", "CLONE_NEWNET"),
        (.ipcNamespace, AIRLOCK_CLONE_NEWIPC, "ipc", "CLONE_NEWIPC"),
        (.utsNamespace, AIRLOCK_CLONE_NEWUTS, "uts", "CLONE_NEWUTS"),
    ]

    /// Unshares the requested namespaces in one call; if that fails, one at a time (the user
    /// namespace first, since the others need its capabilities when unprivileged), reporting
    /// each one that fails as unavailable.
    private mutating func unshareNamespaces() throws -> SandboxLayers {
        var wanted = Self.namespaceLayers.filter { layers.contains($0.layer) }
        if profile.allowNetwork, let index = wanted.firstIndex(where: { $0.layer == .networkNamespace }) {
            wanted.remove(at: index)
        }
        for entry in Self.namespaceLayers { states[entry.name] = "off" }
        guard !wanted.isEmpty else { return [] }
        outsideUID = geteuid()
        outsideGID = getegid()
        let all = wanted.reduce(Int32(0)) { $0 | $1.flag }
        if airlock_unshare(all) == 0 {
            for entry in wanted { states[entry.name] = "active" }
            return SandboxLayers(wanted.map(\.layer))
        }
        var entered: SandboxLayers = []
        for entry in wanted {
            if airlock_unshare(entry.flag) == 0 {
                entered.insert(entry.layer)
                states[entry.name] = "active"
            } else {
                states[entry.name] = "unavailable: \(SystemCallError(call: "unshare(\(entry.call))"))"
            }
        }
        return entered
    }

    private var outsideUID: uid_t = 0
    private var outsideGID: gid_t = 0

    private func writeIdentityMaps() throws {
        try Posix.writeFile("/proc/self/setgroups", "deny")
        try Posix.writeFile("/proc/self/gid_map", "0 \(outsideGID) 1\n")
        try Posix.writeFile("/proc/self/uid_map", "0 \(outsideUID) 1\n")
    }

    private func forkIntoPIDNamespace() throws {
        let initPID = airlock_fork_namespace_init()
        if initPID == -1 { throw SystemCallError(call: "fork (PID namespace init)") }
        let host = airlock_fork()
        if host == -1 {
            _ = ProcessControl.kill(initPID, signal: SIGKILL, ignoringErrors: ())
            throw SystemCallError(call: "fork (PID namespace host)")
        }
        if host > 0 {
            _ = Glibc.close(channelFD)
            airlock_mirror_child_exit(host)
        }
        // Only the outer process may hold the pipe the namespace init watches.
        airlock_close_namespace_init_pipe()
        try ProcessControl.setParentDeathSignal(SIGKILL)
        // The outer process is outside the namespace (getppid() == 0); if it already died we
        // were re-parented to the namespace's PID 1.
        if getppid() != 0 {
            throw SystemCallError(call: "fork (PID namespace): the outer worker process is gone", errno: .noSuchProcess)
        }
    }

    private func installSeccomp() throws -> String {
        _ = try retrying("sigaction(SIGSYS)", airlock_install_sigsys_reporter(channelFD))
        if airlock_seccomp_install_deny_list() == -1 {
            let error = SystemCallError(call: "seccomp(SECCOMP_SET_MODE_FILTER)")
            switch error.errno {
            case .noFunction, .invalidArgument: return "unavailable: \(error)"
            case .permissionDenied: return "unavailable: \(error): needs no_new_privs or a user namespace"
            default: throw error
            }
        }
        return "active"
    }
}

extension ProcessControl {
    /// `kill` whose failure does not matter (cleanup paths).
    static func kill(_ pid: pid_t, signal: Int32, ignoringErrors: Void) -> Bool {
        (try? kill(pid, signal: signal)) ?? false
    }
}

/// Retries `EINTR`, throws ``SystemCallError`` named `call` on -1.
@inline(__always)
func retrying(_ call: @autoclosure () -> String, _ body: @autoclosure () -> Int32) throws(SystemCallError) -> Int32 {
    while true {
        let result = body()
        if result != -1 { return result }
        if errno == EINTR { continue }
        throw SystemCallError(call: call())
    }
}
