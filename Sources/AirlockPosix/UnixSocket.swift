import CAirlockShims
import Glibc

/// Unix domain sockets: socket pairs, listening sockets at a path, connect, accept, peer
/// credentials and buffer sizes. Every descriptor is created close-on-exec.
public enum UnixSocket {
    /// The kind of a Unix socket.
    public enum Kind: Sendable, Hashable {
        /// `SOCK_STREAM`: a byte stream (the client socket).
        case stream
        /// `SOCK_SEQPACKET`: reliable, ordered packets with boundaries (the worker channel).
        case seqPacket

        var rawValue: Int32 { self == .stream ? AIRLOCK_SOCK_STREAM : AIRLOCK_SOCK_SEQPACKET }
    }

    /// `socketpair(AF_UNIX, kind | SOCK_CLOEXEC)`, optionally non-blocking on both ends.
    public static func makePair(_ kind: Kind, nonBlocking: Bool = false) throws(SystemCallError) -> (FileDescriptor, FileDescriptor) {
        var fds: (Int32, Int32) = (-1, -1)
        let type = kind.rawValue | AIRLOCK_SOCK_CLOEXEC | (nonBlocking ? AIRLOCK_SOCK_NONBLOCK : 0)
        _ = try withUnsafeMutableBytes(of: &fds) { (raw) throws(SystemCallError) -> Int32 in
            try retryingInterrupts("socketpair", socketpair(AF_UNIX, type, 0, raw.baseAddress!.assumingMemoryBound(to: Int32.self)))
        }
        return (FileDescriptor(rawValue: fds.0), FileDescriptor(rawValue: fds.1))
    }

    /// How ``listen(path:options:)`` creates its socket.
    public struct ListenOptions: Sendable, Hashable {
        /// `SOCK_STREAM` or `SOCK_SEQPACKET`.
        public var kind: Kind = .stream
        /// Create the parent directory (mode `parentDirectoryMode`, one level) when missing.
        public var createParentDirectory: Bool = false
        /// The mode of a parent directory created here.
        public var parentDirectoryMode: mode_t = 0o755
        /// The socket file's mode, set with `chmod` after `bind`.
        public var mode: mode_t = 0o600
        /// When set, the socket file's group (set with `chown(-1, group)`).
        public var group: gid_t? = nil
        /// The `listen` backlog.
        public var backlog: Int32 = 128
        /// Make the listening socket non-blocking (for an epoll reactor).
        public var nonBlocking: Bool = true

        public init(kind: Kind = .stream, createParentDirectory: Bool = false, mode: mode_t = 0o600, group: gid_t? = nil, backlog: Int32 = 128, nonBlocking: Bool = true) {
            self.kind = kind
            self.createParentDirectory = createParentDirectory
            self.mode = mode
            self.group = group
            self.backlog = backlog
            self.nonBlocking = nonBlocking
        }
    }

    /// Creates a socket listening at `path`.
    ///
    /// A stale socket file at `path` is unlinked first; any other kind of file there is left
    /// alone and the call fails with `EADDRINUSE` (`"listen(path): refusing to replace a
    /// non-socket"`). The file's mode and group are applied before `listen`, so no client can
    /// connect before the permissions are right.
    public static func listen(path: String, options: ListenOptions = ListenOptions()) throws(SystemCallError) -> FileDescriptor {
        if options.createParentDirectory {
            let parent = parentDirectory(of: path)
            if !parent.isEmpty && mkdir(parent, options.parentDirectoryMode) == -1 && Glibc.errno != EEXIST {
                throw SystemCallError(call: "mkdir(\(parent))")
            }
        }
        var status = stat()
        if lstat(path, &status) == 0 {
            guard status.st_mode & S_IFMT == S_IFSOCK else {
                throw SystemCallError(call: "listen(\(path)): refusing to replace a non-socket", errno: .addressInUse)
            }
            if unlink(path) == -1 && Glibc.errno != ENOENT {
                throw SystemCallError(call: "unlink(\(path))")
            }
        }
        let type = options.kind.rawValue | AIRLOCK_SOCK_CLOEXEC | (options.nonBlocking ? AIRLOCK_SOCK_NONBLOCK : 0)
        let fd = FileDescriptor(rawValue: try retryingInterrupts("socket(AF_UNIX)", socket(AF_UNIX, type, 0)))
        do {
            _ = try retryingInterrupts("bind(\(path))", airlock_unix_bind(fd.rawValue, path))
            _ = try retryingInterrupts("chmod(\(path))", chmod(path, options.mode))
            if let group = options.group {
                _ = try retryingInterrupts("chown(\(path))", chown(path, uid_t.max, group))
            }
            _ = try retryingInterrupts("listen(\(path))", Glibc.listen(fd.rawValue, options.backlog))
        } catch {
            _ = Glibc.close(fd.rawValue)
            throw error
        }
        return fd
    }

    /// A blocking `connect` to the socket at `path`. The returned descriptor is blocking.
    public static func connect(path: String, kind: Kind = .stream) throws(SystemCallError) -> FileDescriptor {
        let fd = FileDescriptor(rawValue: try retryingInterrupts("socket(AF_UNIX)", socket(AF_UNIX, kind.rawValue | AIRLOCK_SOCK_CLOEXEC, 0)))
        while airlock_unix_connect(fd.rawValue, path) == -1 {
            let error = Glibc.errno
            if error == EINTR {
                // The connection continues asynchronously; wait for it and read its result.
                var entry = pollfd(fd: fd.rawValue, events: Int16(POLLOUT), revents: 0)
                while Glibc.poll(&entry, 1, -1) == -1 && Glibc.errno == EINTR {}
                var pending: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd.rawValue, SOL_SOCKET, SO_ERROR, &pending, &length)
                if pending == 0 { return fd }
                _ = Glibc.close(fd.rawValue)
                throw SystemCallError(call: "connect(\(path))", errno: Errno(rawValue: pending))
            }
            _ = Glibc.close(fd.rawValue)
            throw SystemCallError(call: "connect(\(path))", errno: Errno(rawValue: error))
        }
        return fd
    }

    /// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`: the next connection (non-blocking, close-on-exec),
    /// or `nil` when none is pending (`EAGAIN`). `ECONNABORTED` (a client that gave up while
    /// queued) is also reported as `nil`; the caller simply tries again on the next readiness.
    public static func accept(_ listener: FileDescriptor, nonBlocking: Bool = true) throws(SystemCallError) -> FileDescriptor? {
        let flags = AIRLOCK_SOCK_CLOEXEC | (nonBlocking ? AIRLOCK_SOCK_NONBLOCK : 0)
        while true {
            let result = airlock_accept4(listener.rawValue, flags)
            if result >= 0 { return FileDescriptor(rawValue: result) }
            let error = Glibc.errno
            switch error {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK, ECONNABORTED: return nil
            default: throw SystemCallError(call: "accept4", errno: Errno(rawValue: error))
            }
        }
    }

    /// The identity of the process at the other end of a connected Unix socket (`SO_PEERCRED`),
    /// as the kernel recorded it at `connect`/`socketpair` time.
    public struct PeerCredentials: Sendable, Hashable {
        public var pid: pid_t
        public var uid: uid_t
        public var gid: gid_t
    }

    /// `getsockopt(SO_PEERCRED)`.
    public static func peerCredentials(_ fd: FileDescriptor) throws(SystemCallError) -> PeerCredentials {
        var credentials = PeerCredentials(pid: 0, uid: 0, gid: 0)
        _ = try retryingInterrupts("getsockopt(SO_PEERCRED)", airlock_peer_credentials(fd.rawValue, &credentials.pid, &credentials.uid, &credentials.gid))
        return credentials
    }

    /// Which socket buffer.
    public enum Buffer: Sendable, Hashable {
        case send, receive
    }

    /// Sets `SO_SNDBUF`/`SO_RCVBUF`. With `force` (root or `CAP_NET_ADMIN`), uses
    /// `SO_SNDBUFFORCE`/`SO_RCVBUFFORCE` to exceed `net.core.wmem_max`/`rmem_max`, falling back
    /// to the capped option when not permitted. The kernel doubles the value for bookkeeping;
    /// read it back with ``bufferSize(_:_:)``.
    public static func setBufferSize(_ fd: FileDescriptor, _ buffer: Buffer, bytes: Int32, force: Bool = false) throws(SystemCallError) {
        let receive: Int32 = buffer == .receive ? 1 : 0
        if force && airlock_set_buffer_size(fd.rawValue, receive, 1, bytes) == 0 { return }
        _ = try retryingInterrupts(buffer == .receive ? "setsockopt(SO_RCVBUF)" : "setsockopt(SO_SNDBUF)",
                                   airlock_set_buffer_size(fd.rawValue, receive, 0, bytes))
    }

    /// `getsockopt(SO_SNDBUF/SO_RCVBUF)`: the size the kernel uses.
    public static func bufferSize(_ fd: FileDescriptor, _ buffer: Buffer) throws(SystemCallError) -> Int32 {
        try retryingInterrupts(buffer == .receive ? "getsockopt(SO_RCVBUF)" : "getsockopt(SO_SNDBUF)",
                               airlock_get_buffer_size(fd.rawValue, buffer == .receive ? 1 : 0))
    }

    /// Which direction ``shutdown(_:_:)`` closes.
    public enum ShutdownDirection: Sendable, Hashable {
        case read, write, both
    }

    /// `shutdown`. `ENOTCONN` (the peer is already gone) is not an error.
    public static func shutdown(_ fd: FileDescriptor, _ direction: ShutdownDirection) throws(SystemCallError) {
        let how: Int32 = switch direction {
        case .read: Int32(SHUT_RD)
        case .write: Int32(SHUT_WR)
        case .both: Int32(SHUT_RDWR)
        }
        if Glibc.shutdown(fd.rawValue, how) == -1 && Glibc.errno != ENOTCONN {
            throw SystemCallError(call: "shutdown")
        }
    }

    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[..<slash])
    }
}
