import AirlockPosix
import Foundation
import Glibc

/// True when the tests run as root: only root can create users and act as them.
let testsRunAsRoot = getuid() == 0

/// A second local user created for one test (`useradd --system --no-create-home
/// airlock-t-<random>`) and removed afterwards (`userdel`). Needs root.
///
/// ```swift
/// try await TemporaryUser.with { user in
///     let outcome = try await user.airlockctl(daemon, ["status"])
/// }
/// ```
struct TemporaryUser: Sendable {
    let name: String
    let uid: uid_t
    let gid: gid_t

    /// `uid` and `gid` together, for ``RawFrameConnection/connect(socketPath:as:)``.
    var identity: (uid: uid_t, gid: gid_t) { (uid, gid) }

    /// Creates a user, runs `body` with it, and deletes the user however `body` ends.
    static func with<Result>(_ body: (TemporaryUser) async throws -> Result) async throws -> Result {
        let user = try await create()
        return try await withCleanup(of: user, { await $0.delete() }, body)
    }

    private static func create() async throws -> TemporaryUser {
        var generator = SystemRandomNumberGenerator()
        let name = "airlock-t-" + String(UInt32.random(in: 0...UInt32.max, using: &generator), radix: 16)
        // Other tests (or other test processes) may hold the password file's lock for a
        // moment: useradd then fails at once, so try again.
        var attempts = 0
        while true {
            attempts += 1
            let outcome = try await ChildProcess.start(
                "/usr/sbin/useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
            ).finish()
            if outcome.exitCode == 0 { break }
            if attempts >= 30 {
                throw HarnessError("useradd \(name) failed \(attempts) times; last: \(outcome.status): \(outcome.stderrText)")
            }
            try await Task.sleep(for: .milliseconds(100 + 50 * attempts))
        }
        guard let entry = UserDatabase.lookupUser(name: name) else {
            throw HarnessError("useradd \(name) succeeded but the user database has no \(name)")
        }
        return TemporaryUser(name: name, uid: entry.uid, gid: entry.gid)
    }

    /// Removes the user (and its group); retried while the password file is locked.
    private func delete() async {
        for attempt in 1...30 {
            guard let outcome = try? await ChildProcess.start("/usr/sbin/userdel", [name]).finish() else { return }
            // 6: no such user (already gone).
            if outcome.exitCode == 0 || outcome.exitCode == 6 { return }
            try? await Task.sleep(for: .milliseconds(100 + 50 * attempt))
        }
    }

    /// `setpriv` arguments that run a program as this user, with no supplementary groups.
    var setprivArguments: [String] {
        ["--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "--"]
    }

    /// Starts `airlockctl --socket <daemon's socket> ARGUMENTS` as this user.
    func startAirlockctl(_ daemon: Daemon, _ arguments: [String]) throws -> ChildProcess {
        try ChildProcess.start(
            "/usr/bin/setpriv", setprivArguments + [Daemon.executablePath("airlockctl"), "--socket", daemon.socketPath] + arguments,
            environment: ["HOME": "/", "USER": name, "LOGNAME": name])
    }

    /// Runs `airlockctl --socket <daemon's socket> ARGUMENTS` as this user, to the end.
    func airlockctl(_ daemon: Daemon, _ arguments: [String]) async throws -> ChildProcess.Outcome {
        try await startAirlockctl(daemon, arguments).finish()
    }

    /// A raw connection to the daemon made as this user, after the handshake.
    func rawConnection(_ daemon: Daemon) async throws -> RawFrameConnection {
        let identity = identity
        let socketPath = daemon.socketPath
        return try await onDedicatedThread {
            let connection = try RawFrameConnection.connectBlocking(socketPath: socketPath, as: identity)
            try connection.handshake(clientName: "temporary-user")
            return connection
        }
    }
}
