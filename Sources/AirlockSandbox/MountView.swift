import AirlockPosix
import CAirlockShims
import Glibc

/// The file-system view inside the worker's mount namespace.
///
/// Everything is read-only and `nosuid`; the state directory and write paths stay writable;
/// fresh `tmpfs` on `/tmp` (and `/dev/shm` with an IPC namespace); empty read-only `tmpfs`
/// over `/run`, `/home` and `/root` (hiding sockets and personal files even without
/// Landlock); a fresh `/proc` with a PID namespace. Paths the worker needs beneath a hidden
/// folder (a state directory in `/tmp`, a plug-in under `/home`) are bound back in place.
struct MountView {
    let profile: SandboxProfile
    let pluginDirectory: String
    let executableDirectory: String
    let extraReadPaths: [String]
    let privateProc: Bool
    let privateShm: Bool

    /// A folder covered by a fresh tmpfs.
    private struct HiddenRoot {
        var path: String
        var writable: Bool
        var options: String
    }

    private var hiddenRoots: [HiddenRoot] {
        var roots = [
            HiddenRoot(path: "/tmp", writable: true, options: "size=64m,mode=1777"),
            HiddenRoot(path: "/run", writable: false, options: "size=1m,mode=755"),
            HiddenRoot(path: "/home", writable: false, options: "size=1m,mode=755"),
            HiddenRoot(path: "/root", writable: false, options: "size=1m,mode=700"),
        ]
        if privateShm { roots.append(HiddenRoot(path: "/dev/shm", writable: true, options: "size=64m,mode=1777")) }
        return roots.filter { Paths.isDirectory($0.path) == true }
    }

    /// A path bound back beneath a hidden root, through a descriptor opened before the tmpfs.
    private struct Preserved {
        var path: String
        var fd: Int32
        var isDirectory: Bool
    }

    private var writablePaths: [String] {
        ([profile.stateDirectory] + profile.writePaths).filter { !$0.isEmpty && Paths.isDirectory($0) != nil }
    }

    mutating func apply() throws {
        _ = try retrying("mount(/, MS_REC|MS_PRIVATE)", airlock_mount(nil, "/", nil, AIRLOCK_MS_REC | AIRLOCK_MS_PRIVATE, nil))
        // Writable paths become mounts of their own, so they can stay writable below.
        for path in writablePaths {
            _ = try retrying("mount(\(path), MS_BIND)", airlock_mount(path, path, nil, AIRLOCK_MS_BIND | AIRLOCK_MS_REC, nil))
        }
        try setAttributes("/", recursive: true, set: AIRLOCK_MOUNT_ATTR_RDONLY | AIRLOCK_MOUNT_ATTR_NOSUID, clear: 0)
        for path in writablePaths {
            try setAttributes(path, recursive: false, set: AIRLOCK_MOUNT_ATTR_NOSUID, clear: AIRLOCK_MOUNT_ATTR_RDONLY)
        }

        let roots = hiddenRoots
        var preserved: [String: [Preserved]] = [:]
        defer { for list in preserved.values { for entry in list { _ = Glibc.close(entry.fd) } } }
        let candidates = [pluginDirectory, executableDirectory] + extraReadPaths + profile.readPaths + writablePaths
        for path in Set(candidates) where path.hasPrefix("/") {
            // The innermost hidden root containing the path.
            guard let root = roots.filter({ Paths.isPath(path, within: $0.path) }).max(by: { $0.path.count < $1.path.count }),
                  let isDirectory = Paths.isDirectory(path) else { continue }
            let fd = Glibc.open(path, AIRLOCK_O_PATH | O_CLOEXEC)
            guard fd >= 0 else { throw SystemCallError(call: "open(\(path), O_PATH)") }
            preserved[root.path, default: []].append(Preserved(path: path, fd: fd, isDirectory: isDirectory))
        }

        for root in roots {
            var flags = AIRLOCK_MS_NOSUID | AIRLOCK_MS_NODEV
            if !root.writable { flags |= AIRLOCK_MS_NOEXEC }
            _ = try retrying("mount(tmpfs, \(root.path))", airlock_mount("tmpfs", root.path, "tmpfs", flags, root.options))
            // Shorter paths first, so an outer bind never covers an inner one.
            for entry in (preserved[root.path] ?? []).sorted(by: { $0.path.count < $1.path.count }) {
                if entry.isDirectory {
                    try Paths.makeDirectories(entry.path, mode: 0o755)
                } else {
                    try Paths.makeDirectories(Paths.directory(of: entry.path), mode: 0o755)
                    let file = Glibc.open(entry.path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
                    if file >= 0 { _ = Glibc.close(file) }
                }
                _ = try retrying("mount(\(entry.path), MS_BIND)",
                                 airlock_mount("/proc/self/fd/\(entry.fd)", entry.path, nil, AIRLOCK_MS_BIND | AIRLOCK_MS_REC, nil))
            }
            if !root.writable {
                try setAttributes(root.path, recursive: false, set: AIRLOCK_MOUNT_ATTR_RDONLY, clear: 0)
            }
        }

        if privateProc {
            _ = try retrying("mount(proc, /proc)",
                             airlock_mount("proc", "/proc", "proc", AIRLOCK_MS_NOSUID | AIRLOCK_MS_NODEV | AIRLOCK_MS_NOEXEC, nil))
        }
    }

    /// `mount_setattr`, or on kernels before 5.12 a remount of each affected mount (keeping the
    /// flags it has, which an unprivileged mount namespace may not clear).
    private func setAttributes(_ path: String, recursive: Bool, set: UInt64, clear: UInt64) throws {
        if airlock_mount_setattr(path, recursive ? 1 : 0, set, clear) == 0 { return }
        let error = SystemCallError(call: "mount_setattr(\(path))")
        guard error.errno == .noFunction else { throw error }
        for mount in MountInfo.read() where recursive ? Paths.isPath(mount.mountPoint, within: path) : mount.mountPoint == path {
            var flags = mount.flags
            if set & AIRLOCK_MOUNT_ATTR_RDONLY != 0 { flags |= AIRLOCK_MS_RDONLY }
            if set & AIRLOCK_MOUNT_ATTR_NOSUID != 0 { flags |= AIRLOCK_MS_NOSUID }
            if clear & AIRLOCK_MOUNT_ATTR_RDONLY != 0 { flags &= ~AIRLOCK_MS_RDONLY }
            _ = try retrying("mount(\(mount.mountPoint), MS_REMOUNT|MS_BIND)",
                             airlock_mount(nil, mount.mountPoint, nil, AIRLOCK_MS_REMOUNT | AIRLOCK_MS_BIND | flags, nil))
        }
    }
}

/// One line of `/proc/self/mountinfo`: the mount point and its per-mount flags.
struct MountInfo {
    var mountPoint: String
    var flags: UInt

    static func read() -> [MountInfo] {
        guard let text = try? Posix.readFile("/proc/self/mountinfo", limit: 1 << 22) else { return [] }
        return text.split(separator: UInt8(ascii: "\n")).compactMap { line in
            let fields = line.split(separator: UInt8(ascii: " "))
            guard fields.count > 6 else { return nil }
            var flags: UInt = 0
            for option in fields[5].split(separator: UInt8(ascii: ",")) {
                switch String(decoding: option, as: UTF8.self) {
                case "ro": flags |= AIRLOCK_MS_RDONLY
                case "nosuid": flags |= AIRLOCK_MS_NOSUID
                case "nodev": flags |= AIRLOCK_MS_NODEV
                case "noexec": flags |= AIRLOCK_MS_NOEXEC
                case "noatime": flags |= 1024          // MS_NOATIME
                case "nodiratime": flags |= 2048       // MS_NODIRATIME
                case "relatime": flags |= 1 << 21      // MS_RELATIME
                case "strictatime": flags |= 1 << 24   // MS_STRICTATIME
                default: break
                }
            }
            return MountInfo(mountPoint: unescape(fields[4]), flags: flags)
        }
    }

    /// mountinfo escapes space, tab, newline and backslash as `\ooo`.
    private static func unescape(_ field: ArraySlice<UInt8>) -> String {
        var bytes: [UInt8] = []
        var index = field.startIndex
        while index < field.endIndex {
            if field[index] == UInt8(ascii: "\\"), index + 3 < field.endIndex + 0,
               let value = UInt8(String(decoding: field[(index + 1)...(index + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(field[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
