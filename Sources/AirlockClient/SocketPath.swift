import AirlockProtocol
import Glibc

/// The socket a client connects to when none is given.
///
/// `AIRLOCK_SOCKET`, when set and not empty, wins. Otherwise the rule of PROTOCOL.md §1
/// (``standardSocketPath(userID:runtimeDirectory:)``) for the calling user; a user other
/// than root whose own socket does not exist falls back to the system daemon's
/// `/run/airlock/airlockd.sock` when that one exists.
public func defaultSocketPath() -> String {
    if let override = environmentValue("AIRLOCK_SOCKET"), !override.isEmpty {
        return override
    }
    let userID = getuid()
    let own = standardSocketPath(userID: userID, runtimeDirectory: environmentValue("XDG_RUNTIME_DIR"))
    if userID != 0 && !fileExists(own) && fileExists(systemSocketPath) {
        return systemSocketPath
    }
    return own
}

/// Where `airlockd` listens by default (PROTOCOL.md §1): `/run/airlock/airlockd.sock` for
/// root, otherwise `$XDG_RUNTIME_DIR/airlock/airlockd.sock`, or
/// `/tmp/airlock-$UID/airlockd.sock` when `XDG_RUNTIME_DIR` is unset or empty.
///
/// This is the rule alone (``DefaultSocketPath`` in AirlockProtocol, which the supervisor
/// uses too), without the `AIRLOCK_SOCKET` override.
public func standardSocketPath(userID: UInt32, runtimeDirectory: String?) -> String {
    DefaultSocketPath.forUser(userID, runtimeDirectory: runtimeDirectory)
}

/// The system daemon's socket.
let systemSocketPath = DefaultSocketPath.system

func environmentValue(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}

private func fileExists(_ path: String) -> Bool {
    var status = stat()
    return lstat(path, &status) == 0
}
