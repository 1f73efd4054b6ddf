/// Where `airlockd` listens by default (PROTOCOL.md §1), as a pure rule shared by the
/// supervisor and clients.
public enum DefaultSocketPath {
    /// The system socket, used by root.
    public static let system = "/run/airlock/airlockd.sock"

    /// `/run/airlock/airlockd.sock` for root, otherwise `$XDG_RUNTIME_DIR/airlock/airlockd.sock`,
    /// or `/tmp/airlock-$UID/airlockd.sock` when `XDG_RUNTIME_DIR` is unset or empty.
    public static func forUser(_ userID: UInt32, runtimeDirectory: String?) -> String {
        if userID == 0 { return system }
        if let runtimeDirectory, !runtimeDirectory.isEmpty {
            return runtimeDirectory + "/airlock/airlockd.sock"
        }
        return "/tmp/airlock-\(userID)/airlockd.sock"
    }
}
