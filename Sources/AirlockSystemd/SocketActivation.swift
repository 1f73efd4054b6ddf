import CSystemd
import Glibc

/// A file descriptor systemd passed to the service (`$LISTEN_FDS`, starting at fd 3).
public struct PassedFileDescriptor: Sendable, Equatable {
    /// The descriptor number (3, 4, ...). systemd's library has set `FD_CLOEXEC` on it.
    public let fileDescriptor: Int32
    /// Its name from the socket unit's `FileDescriptorName=` (`$LISTEN_FDNAMES`); by default
    /// the socket unit's name, e.g. `airlockd.socket`, or `unknown` when systemd gave none.
    public let name: String
    /// Whether it is a listening `AF_UNIX` `SOCK_STREAM` socket, the only kind airlockd serves.
    public let isListeningUnixStream: Bool

    public init(fileDescriptor: Int32, name: String, isListeningUnixStream: Bool) {
        self.fileDescriptor = fileDescriptor
        self.name = name
        self.isListeningUnixStream = isListeningUnixStream
    }
}

/// The passed-descriptor environment (`$LISTEN_PID`, `$LISTEN_FDS`, `$LISTEN_FDNAMES`) is malformed.
public struct SocketActivationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The `errno` value that `sd_listen_fds_with_names` returned (negated back to positive).
    public let errno: Int32

    public init(errno: Int32) { self.errno = errno }

    public var description: String {
        "socket activation: invalid LISTEN_FDS/LISTEN_PID environment: \(String(cString: strerror(errno)))"
    }
}

/// Socket activation (`sd_listen_fds(3)`): the sockets a `.socket` unit bound for the service.
///
/// systemd passes them as fds 3, 4, ... with `$LISTEN_PID` set to the service's pid. Both
/// functions here unset the `LISTEN_*` variables so the worker processes do not inherit
/// them: call one of them exactly once, early in `main`. A second call returns nothing.
public enum SocketActivation {
    /// The passed descriptors that are listening `AF_UNIX` stream sockets, in order; empty when
    /// the service was not socket-activated (then bind the configured path instead).
    ///
    /// Descriptors of another kind, and a malformed environment, are left out; use
    /// ``passedFileDescriptors()`` to report them.
    public static func listenFileDescriptors() -> [Int32] {
        guard let passed = try? passedFileDescriptors() else { return [] }
        return passed.filter(\.isListeningUnixStream).map(\.fileDescriptor)
    }

    /// Every descriptor systemd passed, with its name and whether it is a listening
    /// `AF_UNIX` stream socket; empty when the service was not socket-activated.
    public static func passedFileDescriptors() throws(SocketActivationError) -> [PassedFileDescriptor] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        let count = sd_listen_fds_with_names(1, &names)
        defer { freeNames(names) }
        if count < 0 { throw SocketActivationError(errno: -count) }
        return (0..<count).map { index in
            let fileDescriptor = SD_LISTEN_FDS_START + index
            let name = names?[Int(index)].map { String(cString: $0) } ?? "unknown"
            let isListeningUnixStream = sd_is_socket_unix(fileDescriptor, Int32(SOCK_STREAM.rawValue), 1, nil, 0) > 0
            return PassedFileDescriptor(
                fileDescriptor: fileDescriptor,
                name: name,
                isListeningUnixStream: isListeningUnixStream
            )
        }
    }

    private static func freeNames(_ names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) {
        guard let names else { return }
        var index = 0
        while let name = names[index] {
            free(name)
            index += 1
        }
        free(names)
    }
}
