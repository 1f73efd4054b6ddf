import AirlockPosix
import CAirlockShims
import Glibc

/// Small path helpers for the sandbox (no Foundation in the worker).
public enum Paths {
    /// The folder of `path` (`"/"` for a top-level entry, `"."` for a bare name).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let parent = String(path[..<slash])
        return parent.isEmpty ? "/" : parent
    }

    /// Whether `path` is `root` or lies beneath it.
    static func isPath(_ path: String, within root: String) -> Bool {
        if root == "/" { return path.hasPrefix("/") }
        return path == root || path.hasPrefix(root + "/")
    }

    /// `readlink(/proc/self/exe)`.
    static func resolvedExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return "/proc/self/exe" }
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The folders of every file mapped into this process (`/proc/self/maps`): the Swift
    /// runtime and the libraries already loaded, which may still open files beside them.
    ///
    /// Only files in a folder count. Memory that is not a file in one shows as a name
    /// under `/` (the channel's `/memfd:airlock-channel (deleted)`, `/SYSV…` segments) and
    /// must never make `/` readable; a deleted file's folder is not given out either.
    public static func mappedLibraryDirectories() -> [String] {
        mappedLibraryDirectories(in: (try? Posix.readFile("/proc/self/maps", limit: 1 << 22)) ?? [])
    }

    /// ``mappedLibraryDirectories()`` of the text of a `maps` file.
    public static func mappedLibraryDirectories(in maps: [UInt8]) -> [String] {
        let deleted = Array(" (deleted)".utf8)
        var directories: [String] = []
        var previous: ArraySlice<UInt8> = []
        var lineStart = maps.startIndex
        while lineStart < maps.endIndex {
            let lineEnd = maps[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? maps.endIndex
            defer { lineStart = lineEnd + 1 }
            guard let slash = maps[lineStart..<lineEnd].firstIndex(of: UInt8(ascii: "/")),
                  let last = maps[slash..<lineEnd].lastIndex(of: UInt8(ascii: "/")) else { continue }
            // A name directly under `/` is memory, not a library (see above).
            guard last > slash else { continue }
            if maps[slash..<lineEnd].count >= deleted.count, maps[(lineEnd - deleted.count)..<lineEnd].elementsEqual(deleted) { continue }
            let directory = maps[slash..<last]
            // Consecutive mappings usually belong to the same file.
            if directory.elementsEqual(previous) { continue }
            previous = directory
            let text = String(decoding: directory, as: UTF8.self)
            if !directories.contains(text) { directories.append(text) }
        }
        return directories
    }

    /// The folders holding the resolver configuration when `/etc/resolv.conf` is a link out of
    /// `/etc` (systemd-resolved: `/run/systemd/resolve`).
    static func resolverConfigurationDirectories() -> [String] {
        guard let resolved = realpath("/etc/resolv.conf", nil) else { return [] }
        defer { free(resolved) }
        let path = String(cString: resolved)
        return Paths.isPath(path, within: "/etc") ? [] : [directory(of: path)]
    }

    /// `mkdir -p` with `mode` for the folders it creates.
    static func makeDirectories(_ path: String, mode: mode_t) throws(SystemCallError) {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, mode) == -1 && errno != EEXIST {
                throw SystemCallError(call: "mkdir(\(current))")
            }
        }
    }

    /// Whether `path` exists (without following a final symlink) and is a directory.
    static func isDirectory(_ path: String) -> Bool? {
        var status = stat()
        guard lstat(path, &status) == 0 else { return nil }
        return status.st_mode & S_IFMT == S_IFDIR
    }

    /// `airlock-<plug-in>` from a library path such as `/x/libairlock-plugin-echo.so`.
    static func hostName(forPlugin pluginPath: String) -> String {
        var stem = Substring(pluginPath.split(separator: "/").last ?? "worker")
        if stem.hasPrefix("lib") { stem = stem.dropFirst(3) }
        if let dot = stem.firstIndex(of: ".") { stem = stem[..<dot] }
        let cleaned = String(stem.lowercased().map { ($0.isLetter && $0.isASCII) || ($0.isNumber && $0.isASCII) ? $0 : "-" })
        let name = cleaned.hasPrefix("airlock") ? cleaned : "airlock-" + cleaned
        return String(name.prefix(63))
    }
}
