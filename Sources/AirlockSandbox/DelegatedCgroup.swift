import AirlockPosix
import Glibc

/// The supervisor's delegated cgroup v2 subtree (systemd `Delegate=yes`): one child group
/// per worker with `memory.max` and `pids.max`, killed as a whole when the worker is recycled.
///
/// Layout under the supervisor's own group `G`: `G/supervisor` holds the supervisor (cgroup v2
/// allows controllers in a group's children only when the group itself has no processes),
/// `G/workers/<name>` one group per worker.
public struct DelegatedCgroup: Sendable, Equatable {
    /// The supervisor's own cgroup directory, e.g. `/sys/fs/cgroup/system.slice/airlockd.service`.
    public let path: String
    /// The controllers enabled for worker groups (a subset of `memory`, `pids`); a limit whose
    /// controller is missing is not applied (the worker's rlimits still are).
    public let controllers: Set<String>

    /// The folder holding the worker groups.
    public var workersPath: String { path + "/workers" }

    /// Finds the supervisor's delegated cgroup, or `nil` when there is none.
    ///
    /// The group is this process's cgroup v2 group (`0::/path` in `/proc/self/cgroup`) under
    /// `/sys/fs/cgroup` or `/sys/fs/cgroup/unified`; it counts as delegated when it is not the
    /// root and its `cgroup.procs` and `cgroup.subtree_control` are writable. Detecting moves
    /// every process of the group (the supervisor) into the `supervisor` leaf and enables
    /// `+memory +pids` (those available) for `workers` and its children.
    public static func detect() -> DelegatedCgroup? {
        guard let relative = ownGroup(), relative != "/" else { return nil }
        for mount in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] where access(mount + "/cgroup.controllers", F_OK) == 0 {
            let path = mount + relative
            guard access(path + "/cgroup.procs", W_OK) == 0, access(path + "/cgroup.subtree_control", W_OK) == 0 else { continue }
            return try? prepare(path)
        }
        return nil
    }

    /// Prepares `path` (a delegated cgroup v2 directory this process belongs to) as in ``detect()``.
    public static func prepare(_ path: String) throws(SystemCallError) -> DelegatedCgroup {
        let leaf = path + "/supervisor"
        try makeDirectory(leaf)
        // Move every process of the group, the supervisor included, into the leaf.
        for pid in try processes(in: path) {
            do {
                try Posix.writeFile(leaf + "/cgroup.procs", String(pid))
            } catch where error.errno == .noSuchProcess {
                continue
            }
        }
        let available = Set(try text(path + "/cgroup.controllers").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
        var enabled: Set<String> = []
        for controller in ["memory", "pids"] where available.contains(controller) {
            if (try? Posix.writeFile(path + "/cgroup.subtree_control", "+" + controller)) != nil {
                enabled.insert(controller)
            }
        }
        try makeDirectory(path + "/workers")
        for controller in enabled {
            try Posix.writeFile(path + "/workers/cgroup.subtree_control", "+" + controller)
        }
        return DelegatedCgroup(path: path, controllers: enabled)
    }

    /// Creates (or empties and reuses) `workers/<name>` with the limits, and returns its path
    /// for ``SandboxProfile/cgroupPath``. `memory.swap.max` is set to 0 when present, so the
    /// memory cap is not stretched by swap.
    public func makeWorkerGroup(name: String, memoryMax: UInt64, pidsMax: UInt32) throws(SystemCallError) -> String {
        precondition(!name.isEmpty && !name.contains("/") && name != "." && name != "..", "bad cgroup name \(name)")
        let group = workersPath + "/" + name
        if access(group, F_OK) == 0 {
            try kill(group)
        } else {
            try Self.makeDirectory(group)
        }
        if controllers.contains("memory") {
            try Posix.writeFile(group + "/memory.max", String(memoryMax))
            if access(group + "/memory.swap.max", F_OK) == 0 {
                try Posix.writeFile(group + "/memory.swap.max", "0")
            }
        }
        if controllers.contains("pids") {
            try Posix.writeFile(group + "/pids.max", String(pidsMax))
        }
        return group
    }

    /// Kills every process in the group at `path`: writes 1 to `cgroup.kill` (Linux 5.14+), or
    /// sends `SIGKILL` to each process listed in `cgroup.procs`. The processes are gone once
    /// their parent reaped them; only then does ``remove(_:)`` succeed.
    public func kill(_ path: String) throws(SystemCallError) {
        if access(path + "/cgroup.kill", F_OK) == 0 {
            try Posix.writeFile(path + "/cgroup.kill", "1")
            return
        }
        for pid in try Self.processes(in: path) {
            try ProcessControl.kill(pid, signal: SIGKILL)
        }
    }

    /// Removes the (empty) group at `path`. `EBUSY` while processes remain in it; a group that
    /// is already gone is not an error.
    public func remove(_ path: String) throws(SystemCallError) {
        if rmdir(path) == -1 && errno != ENOENT {
            throw SystemCallError(call: "rmdir(\(path))")
        }
    }

    // MARK: Helpers

    /// This process's cgroup v2 path (`0::/path`), or `nil`.
    static func ownGroup() -> String? {
        guard let lines = try? text("/proc/self/cgroup") else { return nil }
        for line in lines.split(separator: "\n") where line.hasPrefix("0::") {
            return String(line.dropFirst(3))
        }
        return nil
    }

    static func processes(in path: String) throws(SystemCallError) -> [pid_t] {
        try text(path + "/cgroup.procs").split(separator: "\n").compactMap { pid_t($0) }
    }

    static func text(_ path: String) throws(SystemCallError) -> String {
        String(decoding: try Posix.readFile(path, limit: 1 << 20), as: UTF8.self)
    }

    static func makeDirectory(_ path: String) throws(SystemCallError) {
        if mkdir(path, 0o755) == -1 && errno != EEXIST {
            throw SystemCallError(call: "mkdir(\(path))")
        }
    }
}
