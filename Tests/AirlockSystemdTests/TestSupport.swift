import Glibc

/// A temporary directory, removed with everything in it by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/airlock-systemd-test-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else { throw TestFailure("mkdtemp: errno \(errno)") }
        path = String(cString: created)
    }

    func remove() {
        guard let directory = opendir(path) else { return }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { unlink(path + "/" + name) }
        }
        closedir(directory)
        rmdir(path)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Fills a `sockaddr_un` with `path` and calls `body` with it.
func withUnixAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    precondition(bytes.count < MemoryLayout.size(ofValue: address.sun_path), "socket path too long")
    withUnsafeMutableBytes(of: &address.sun_path) { buffer in
        for (index, byte) in bytes.enumerated() { buffer[index] = byte }
        buffer[bytes.count] = 0
    }
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// A bound `AF_UNIX` datagram socket standing in for systemd's notification socket.
struct NotifySocketListener {
    let fileDescriptor: Int32
    let path: String

    init(path: String) throws {
        self.path = path
        fileDescriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fileDescriptor >= 0 else { throw TestFailure("socket: errno \(errno)") }
        let result = withUnixAddress(path) { bind(fileDescriptor, $0, $1) }
        guard result == 0 else { throw TestFailure("bind \(path): errno \(errno)") }
    }

    /// The next datagram, which sd_notify has already queued when it returned; `nil` when
    /// none is waiting.
    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(fileDescriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        guard count >= 0 else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    func close() {
        _ = Glibc.close(fileDescriptor)
        unlink(path)
    }
}

/// Sets environment variables for the duration of `body`, then restores the previous values.
@discardableResult
func withEnvironment<R>(_ variables: [String: String?], _ body: () throws -> R) rethrows -> R {
    var previous: [String: String?] = [:]
    for (name, value) in variables {
        previous[name] = getenv(name).map { String(cString: $0) }
        if let value { setenv(name, value, 1) } else { unsetenv(name) }
    }
    defer {
        for (name, value) in previous {
            if let value { setenv(name, value, 1) } else { unsetenv(name) }
        }
    }
    return try body()
}

func monotonicMicroseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
}

/// An `AF_UNIX` socket of the test's own, close-on-exec.
struct UnixSocket {
    let fileDescriptor: Int32

    init(type: __socket_type) throws {
        fileDescriptor = socket(AF_UNIX, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fileDescriptor >= 0 else { throw TestFailure("socket: errno \(errno)") }
    }

    func bindAndListen(path: String) throws {
        guard withUnixAddress(path, { bind(fileDescriptor, $0, $1) }) == 0 else { throw TestFailure("bind: errno \(errno)") }
        guard listen(fileDescriptor, 8) == 0 else { throw TestFailure("listen: errno \(errno)") }
    }

    func close() { _ = Glibc.close(fileDescriptor) }
}

/// The folder holding this test bundle, where SwiftPM also puts the package's executables.
func buildProductsDirectory() throws -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard count > 0 else { throw TestFailure("readlink /proc/self/exe: errno \(errno)") }
    let path = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    var directory = Substring(path)
    while let slash = directory.lastIndex(of: "/") {
        directory = directory[..<slash]
        if access(String(directory) + "/airlock-systemd-probe", X_OK) == 0 { return String(directory) }
    }
    throw TestFailure("airlock-systemd-probe not found next to \(path)")
}

/// Runs `airlock-systemd-probe` with `descriptors` at fds 3, 4, ..., only `environment`
/// as its environment, and returns its standard output once it exits with status 0.
func runProbe(_ arguments: [String], descriptors: [Int32], environment: [String]) throws -> String {
    let executable = try buildProductsDirectory() + "/airlock-systemd-probe"
    // A socket pair, not a pipe: created close-on-exec in one step, so a process that another
    // test spawns meanwhile cannot inherit the write end and hold our read open.
    var ends: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
        throw TestFailure("socketpair: errno \(errno)")
    }
    defer { close(ends[0]) }

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, ends[1], 1)
    // Move the sockets out of the way first, so placing one at 3 cannot overwrite another.
    for (index, fd) in descriptors.enumerated() { posix_spawn_file_actions_adddup2(&actions, fd, 100 + Int32(index)) }
    for index in descriptors.indices { posix_spawn_file_actions_adddup2(&actions, 100 + Int32(index), 3 + Int32(index)) }

    let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
    let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
    defer { (argv + envp).forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, executable, &actions, nil, argv, envp)
    close(ends[1])
    guard spawned == 0 else { throw TestFailure("posix_spawn \(executable): \(spawned)") }

    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(ends[0], $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        if count <= 0 { break }
        output += buffer[..<count]
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    guard status == 0 else { throw TestFailure("airlock-systemd-probe exited with status \(status)") }
    return String(decoding: output, as: UTF8.self)
}
