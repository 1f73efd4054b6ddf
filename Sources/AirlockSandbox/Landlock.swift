import AirlockPosix
import CAirlockShims
import Glibc

/// The Landlock layer: a file-system allowlist, TCP bind/connect denied without network, and
/// (ABI 6+) no signals or abstract Unix sockets outside the sandbox.
///
/// Readable (read, list, execute): `/usr`, `/lib*`, `/bin`, `/sbin`, `/etc`, the folders of
/// every library already mapped, the plug-in's folder, the worker's folder, `readPaths`,
/// `/sys/devices/system/cpu`, `/proc` (with a PID namespace; otherwise `/proc/self` and a
/// few global files), `/dev/urandom`, `/dev/random`. Writable: the state directory, `/tmp` and
/// `/dev/shm` when private (mount namespace), `writePaths`, and `/dev/null`, `/dev/zero`,
/// `/dev/full`. The rules apply to the calling thread and the threads it creates later.
/// Every right the kernel's ABI knows is handled; rights of newer ABIs are masked off.
struct LandlockRuleset {
    let profile: SandboxProfile
    let pluginDirectory: String
    let executableDirectory: String
    let libraryDirectories: [String]
    let wholeProc: Bool
    let privateTmp: Bool
    let privateShm: Bool

    // LANDLOCK_ACCESS_FS_*
    static let execute: UInt64 = 1 << 0
    static let writeFile: UInt64 = 1 << 1
    static let readFile: UInt64 = 1 << 2
    static let readDirectory: UInt64 = 1 << 3
    static let makeCharacterDevice: UInt64 = 1 << 6
    static let makeBlockDevice: UInt64 = 1 << 11
    static let refer: UInt64 = 1 << 13
    static let truncate: UInt64 = 1 << 14
    static let ioctlDevice: UInt64 = 1 << 15

    /// Every file-system right of `abi`.
    static func fileSystemRights(abi: Int32) -> UInt64 {
        var rights: UInt64 = (1 << 13) - 1
        if abi >= 2 { rights |= refer }
        if abi >= 3 { rights |= truncate }
        if abi >= 5 { rights |= ioctlDevice }
        return rights
    }

    /// Applies the ruleset to the calling thread (and, since it runs before any thread
    /// exists, the process). Returns the layer state.
    mutating func restrictSelf() throws -> String {
        let abi = airlock_landlock_abi_version()
        if abi < 1 {
            return "unavailable: \(SystemCallError(call: "landlock_create_ruleset(VERSION)"))"
        }
        let handled = Self.fileSystemRights(abi: abi)
        let read = Self.execute | Self.readFile | Self.readDirectory
        let write = handled & ~(Self.makeCharacterDevice | Self.makeBlockDevice)
        let device = (Self.readFile | Self.writeFile | Self.truncate | Self.ioctlDevice) & handled
        let handledNetwork: UInt64 = (abi >= 4 && !profile.allowNetwork) ? 0b11 : 0   // BIND_TCP | CONNECT_TCP
        let scoped: UInt64 = abi >= 6 ? 0b11 : 0   // ABSTRACT_UNIX_SOCKET | SIGNAL

        let ruleset = try retrying("landlock_create_ruleset", airlock_landlock_create_ruleset(handled, handledNetwork, scoped, abi))
        defer { _ = Glibc.close(ruleset) }

        var readable = ["/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/etc",
                        "/sys/devices/system/cpu", "/dev/urandom", "/dev/random",
                        pluginDirectory, executableDirectory] + libraryDirectories + profile.readPaths
        readable += wholeProc ? ["/proc"] : ["/proc/self", "/proc/meminfo", "/proc/cpuinfo", "/proc/stat", "/proc/sys/kernel"]
        // The shared /tmp of the host is not given out: only a private one.
        var writable = (privateTmp ? ["/tmp"] : []) + profile.writePaths
        if !profile.stateDirectory.isEmpty { writable.append(profile.stateDirectory) }
        if privateShm { writable.append("/dev/shm") }

        for path in readable { try allow(ruleset, path, read & handled) }
        for path in writable { try allow(ruleset, path, write | read) }
        for path in ["/dev/null", "/dev/zero", "/dev/full"] { try allow(ruleset, path, device) }

        if airlock_landlock_restrict_self(ruleset) == -1 {
            let error = SystemCallError(call: "landlock_restrict_self")
            if error.errno == .notPermitted { return "unavailable: \(error): needs no_new_privs or a user namespace" }
            throw error
        }
        return "active"
    }

    private func allow(_ ruleset: Int32, _ path: String, _ rights: UInt64) throws {
        guard path.hasPrefix("/") else { return }
        if airlock_landlock_allow_path(ruleset, path, rights) == -1 {
            let error = SystemCallError(call: "landlock_add_rule(\(path))")
            // Absent paths (no /lib32 here) need no rule.
            if error.errno == .noSuchFileOrDirectory || error.errno == .notDirectory { return }
            throw error
        }
    }
}
