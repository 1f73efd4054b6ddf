import CAirlockShims
import Glibc

/// Plain I/O and descriptor management, each system call wrapped once: `EINTR` is retried
/// and failures throw ``SystemCallError``. Descriptors are `SystemPackage.FileDescriptor`s.
///
/// Calls that may meet a non-blocking descriptor return `nil` on `EAGAIN` instead of
/// throwing. Every descriptor created here is close-on-exec.
public enum Posix {
    /// Reads up to `buffer.count` bytes. Returns the count read (0 at end of file), or `nil`
    /// when the descriptor is non-blocking and nothing is available.
    public static func read(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> Int? {
        try retryingInterruptsUnlessWouldBlock("read", Glibc.read(fd.rawValue, buffer.baseAddress, buffer.count))
    }

    /// Writes up to `buffer.count` bytes; returns the count written, or `nil` when a
    /// non-blocking descriptor is full. A broken pipe throws `EPIPE` (the caller should ignore
    /// or block `SIGPIPE` for pipes; use ``send(_:_:flags:)`` on sockets).
    public static func write(_ fd: FileDescriptor, _ buffer: UnsafeRawBufferPointer) throws(SystemCallError) -> Int? {
        try retryingInterruptsUnlessWouldBlock("write", Glibc.write(fd.rawValue, buffer.baseAddress, buffer.count))
    }

    /// Writes every byte of `buffer`, looping over partial writes (blocking descriptors).
    public static func writeAll(_ fd: FileDescriptor, _ buffer: UnsafeRawBufferPointer) throws(SystemCallError) {
        var offset = 0
        while offset < buffer.count {
            guard let written = try write(fd, UnsafeRawBufferPointer(rebasing: buffer[offset...])) else {
                throw SystemCallError(call: "write", errno: .resourceTemporarilyUnavailable)
            }
            offset += written
        }
    }

    /// Gathering write (`writev`) of `buffers` in order; returns the count written, or `nil`
    /// when a non-blocking descriptor is full.
    public static func writev(_ fd: FileDescriptor, _ buffers: [UnsafeRawBufferPointer]) throws(SystemCallError) -> Int? {
        var vectors = buffers.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        return try vectors.withUnsafeMutableBufferPointer { (vectors) throws(SystemCallError) -> Int? in
            try retryingInterruptsUnlessWouldBlock("writev", Glibc.writev(fd.rawValue, vectors.baseAddress, Int32(vectors.count)))
        }
    }

    /// Flags for ``receive(_:into:flags:)`` and ``send(_:_:flags:)``.
    public struct MessageFlags: OptionSet, Sendable, Hashable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        /// `MSG_DONTWAIT`: do not block this one call.
        public static let dontWait = MessageFlags(rawValue: AIRLOCK_MSG_DONTWAIT)
        /// `MSG_PEEK`: leave the data queued.
        public static let peek = MessageFlags(rawValue: AIRLOCK_MSG_PEEK)
        /// `MSG_WAITALL`: block until the whole buffer is filled (stream sockets).
        public static let waitAll = MessageFlags(rawValue: AIRLOCK_MSG_WAITALL)
        /// `MSG_TRUNC`: on a datagram or `SOCK_SEQPACKET` socket, `recv` returns the
        /// packet's real length even when it exceeds the buffer (so a larger packet is
        /// detected; the rest of it is lost).
        public static let truncate = MessageFlags(rawValue: AIRLOCK_MSG_TRUNC)
    }

    /// `recv`: returns the count received (0 when the peer closed), or `nil` on `EAGAIN`.
    public static func receive(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, flags: MessageFlags = []) throws(SystemCallError) -> Int? {
        try retryingInterruptsUnlessWouldBlock("recv", Glibc.recv(fd.rawValue, buffer.baseAddress, buffer.count, flags.rawValue))
    }

    /// Scattering receive (`recvmsg`) into `first`, then `second`: returns the count
    /// received in all (0 when the peer closed), or `nil` on `EAGAIN`. Either space may be
    /// empty.
    public static func receive(
        _ fd: FileDescriptor, into first: UnsafeMutableRawBufferPointer, _ second: UnsafeMutableRawBufferPointer,
        flags: MessageFlags = []
    ) throws(SystemCallError) -> Int? {
        var vectors = (
            iovec(iov_base: first.baseAddress, iov_len: first.count),
            iovec(iov_base: second.baseAddress, iov_len: second.count))
        return try withUnsafeMutablePointer(to: &vectors) { (tuple) throws(SystemCallError) -> Int? in
            var header = msghdr()
            header.msg_iov = UnsafeMutableRawPointer(tuple).assumingMemoryBound(to: iovec.self)
            header.msg_iovlen = 2
            return try retryingInterruptsUnlessWouldBlock("recvmsg", Glibc.recvmsg(fd.rawValue, &header, flags.rawValue))
        }
    }

    /// `send` with `MSG_NOSIGNAL` always added: a closed peer gives `EPIPE`, never `SIGPIPE`.
    /// Returns the count sent, or `nil` on `EAGAIN`.
    public static func send(_ fd: FileDescriptor, _ buffer: UnsafeRawBufferPointer, flags: MessageFlags = []) throws(SystemCallError) -> Int? {
        try retryingInterruptsUnlessWouldBlock("send", Glibc.send(fd.rawValue, buffer.baseAddress, buffer.count, flags.rawValue | AIRLOCK_MSG_NOSIGNAL))
    }

    /// `sendmsg` of up to three buffers in order, with `MSG_NOSIGNAL` always added: on a
    /// `SOCK_SEQPACKET` socket they leave as one packet, without being copied together
    /// first. Returns the count sent, or `nil` on `EAGAIN`.
    public static func send(
        _ fd: FileDescriptor, _ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer,
        _ third: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0), flags: MessageFlags = []
    ) throws(SystemCallError) -> Int? {
        var vectors = (
            iovec(iov_base: UnsafeMutableRawPointer(mutating: first.baseAddress), iov_len: first.count),
            iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress), iov_len: second.count),
            iovec(iov_base: UnsafeMutableRawPointer(mutating: third.baseAddress), iov_len: third.count))
        return try withUnsafeMutablePointer(to: &vectors) { (tuple) throws(SystemCallError) -> Int? in
            var header = msghdr()
            header.msg_iov = UnsafeMutableRawPointer(tuple).assumingMemoryBound(to: iovec.self)
            header.msg_iovlen = third.count > 0 ? 3 : 2
            return try retryingInterruptsUnlessWouldBlock("sendmsg", Glibc.sendmsg(fd.rawValue, &header, flags.rawValue | AIRLOCK_MSG_NOSIGNAL))
        }
    }

    /// `sendmsg` of `buffer` with the descriptor `passed` attached (`SCM_RIGHTS`) and
    /// `MSG_NOSIGNAL`: the descriptor arrives with the first of these bytes. Returns the
    /// count sent, or `nil` on `EAGAIN`.
    public static func send(_ fd: FileDescriptor, _ buffer: UnsafeRawBufferPointer, passing passed: FileDescriptor, flags: MessageFlags = []) throws(SystemCallError) -> Int? {
        try retryingInterruptsUnlessWouldBlock(
            "sendmsg(SCM_RIGHTS)", airlock_send_with_descriptor(fd.rawValue, buffer.baseAddress, buffer.count, passed.rawValue, flags.rawValue))
    }

    /// What ``receive(_:into:passing:flags:)`` brought beside the bytes.
    public struct PassedDescriptors: Sendable {
        /// The descriptors passed with the bytes (`SCM_RIGHTS`), close-on-exec; the caller
        /// owns them. At most ``capacity``.
        public var descriptors: [FileDescriptor] = []
        /// True when more were passed than ``capacity`` (the rest were closed) or the
        /// kernel truncated the control data.
        public var truncated = false
        /// The most descriptors one receive keeps.
        public static let capacity = 4
        public init() {}
    }

    /// `recvmsg` into `buffer`, keeping descriptors passed with the bytes (`SCM_RIGHTS`,
    /// received close-on-exec) in `passed`. Returns the count received (0 when the peer
    /// closed), or `nil` on `EAGAIN`.
    public static func receive(
        _ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, passing passed: inout PassedDescriptors, flags: MessageFlags = []
    ) throws(SystemCallError) -> Int? {
        var descriptors: (Int32, Int32, Int32, Int32) = (-1, -1, -1, -1)
        var received: Int32 = 0
        var truncated: Int32 = 0
        let count = try withUnsafeMutableBytes(of: &descriptors) { (raw) throws(SystemCallError) -> Int? in
            try retryingInterruptsUnlessWouldBlock("recvmsg", airlock_receive_with_descriptors(
                fd.rawValue, buffer.baseAddress, buffer.count, flags.rawValue, raw.baseAddress!.assumingMemoryBound(to: Int32.self),
                Int32(PassedDescriptors.capacity), &received, &truncated))
        }
        if received > 0 {
            withUnsafeBytes(of: &descriptors) { raw in
                for value in raw.bindMemory(to: Int32.self).prefix(Int(received)) { passed.descriptors.append(FileDescriptor(rawValue: value)) }
            }
        }
        if truncated != 0 { passed.truncated = true }
        return count
    }

    /// The result of ``receivePacket(_:into:flags:)``.
    public enum PacketResult: Sendable, Equatable {
        /// A whole packet of this many bytes is in the buffer.
        case packet(Int)
        /// The peer closed the connection (a zero-length read).
        case endOfFile
        /// The socket is non-blocking and no packet is queued.
        case wouldBlock
        /// The packet was larger than the buffer; it is consumed and lost. `received` bytes
        /// were stored; the packet was `size` bytes long (as reported with `MSG_TRUNC`).
        case truncated(received: Int, size: Int)
    }

    /// Receives one `SOCK_SEQPACKET`/datagram packet, detecting truncation: a packet larger
    /// than `buffer` is reported as ``PacketResult/truncated(received:size:)``. A plain
    /// `recv` with `MSG_TRUNC`, which on these sockets returns the packet's real length
    /// (cheaper than `recvmsg`, which copies a message header in and out).
    ///
    /// A zero-length packet cannot be told apart from end of file on `SOCK_SEQPACKET`; the
    /// protocol never sends one.
    public static func receivePacket(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, flags: MessageFlags = []) throws(SystemCallError) -> PacketResult {
        let result = try retryingInterruptsUnlessWouldBlock("recv", Glibc.recv(fd.rawValue, buffer.baseAddress, buffer.count, flags.rawValue | AIRLOCK_MSG_TRUNC))
        guard let size = result else { return .wouldBlock }
        if size == 0 { return .endOfFile }
        if size > buffer.count { return .truncated(received: buffer.count, size: size) }
        return .packet(size)
    }

    /// Events for ``poll(_:timeoutMilliseconds:)``.
    public struct PollEvents: OptionSet, Sendable, Hashable {
        public let rawValue: Int16
        public init(rawValue: Int16) { self.rawValue = rawValue }
        public static let input = PollEvents(rawValue: Int16(POLLIN))
        public static let output = PollEvents(rawValue: Int16(POLLOUT))
        public static let error = PollEvents(rawValue: Int16(POLLERR))
        public static let hangup = PollEvents(rawValue: Int16(POLLHUP))
        public static let invalid = PollEvents(rawValue: Int16(POLLNVAL))
        /// `POLLRDHUP`: the peer shut down its writing half.
        public static let readHangup = PollEvents(rawValue: 0x2000)
    }

    /// One descriptor for ``poll(_:timeoutMilliseconds:)``: what to wait for, and what happened.
    public struct PollEntry: Sendable, Hashable {
        public var fd: FileDescriptor
        public var events: PollEvents
        public var returnedEvents: PollEvents
        public init(fd: FileDescriptor, events: PollEvents) {
            self.fd = fd
            self.events = events
            self.returnedEvents = []
        }
    }

    /// `poll`: waits until one entry is ready or the timeout passes (-1 = forever), filling
    /// each entry's `returnedEvents`. Returns the number of ready entries (0 on timeout).
    /// An interrupted wait is restarted with the full timeout.
    @discardableResult
    public static func poll(_ entries: inout [PollEntry], timeoutMilliseconds: Int32) throws(SystemCallError) -> Int {
        var descriptors = entries.map { pollfd(fd: $0.fd.rawValue, events: $0.events.rawValue, revents: 0) }
        let ready = try descriptors.withUnsafeMutableBufferPointer { (descriptors) throws(SystemCallError) -> Int32 in
            try retryingInterrupts("poll", Glibc.poll(descriptors.baseAddress, nfds_t(descriptors.count), timeoutMilliseconds))
        }
        for index in entries.indices {
            entries[index].returnedEvents = PollEvents(rawValue: descriptors[index].revents)
        }
        return Int(ready)
    }

    /// `poll` on a single descriptor. Returns the events that happened (empty on timeout).
    public static func poll(_ fd: FileDescriptor, for events: PollEvents, timeoutMilliseconds: Int32) throws(SystemCallError) -> PollEvents {
        var descriptor = pollfd(fd: fd.rawValue, events: events.rawValue, revents: 0)
        _ = try retryingInterrupts("poll", Glibc.poll(&descriptor, 1, timeoutMilliseconds))
        return PollEvents(rawValue: descriptor.revents)
    }

    /// `close`. `EINTR` is not retried (on Linux the descriptor is released anyway).
    public static func close(_ fd: FileDescriptor) throws(SystemCallError) {
        if Glibc.close(fd.rawValue) == -1 && Glibc.errno != EINTR {
            throw SystemCallError(call: "close(\(fd.rawValue))")
        }
    }

    /// `dup2`: makes `target` a copy of `source` (the copy is *not* close-on-exec).
    public static func duplicate(_ source: FileDescriptor, as target: FileDescriptor) throws(SystemCallError) {
        _ = try retryingInterrupts("dup2(\(source.rawValue), \(target.rawValue))", Glibc.dup2(source.rawValue, target.rawValue))
    }

    /// `fcntl(F_DUPFD_CLOEXEC)`: a close-on-exec copy numbered at least `minimum`.
    public static func duplicate(_ source: FileDescriptor, atLeast minimum: Int32 = 0) throws(SystemCallError) -> FileDescriptor {
        FileDescriptor(rawValue: try retryingInterrupts("fcntl(F_DUPFD_CLOEXEC)", airlock_fcntl_dupfd_cloexec(source.rawValue, minimum)))
    }

    /// `pipe2(O_CLOEXEC)`, optionally non-blocking on both ends.
    public static func pipe(nonBlocking: Bool = false) throws(SystemCallError) -> (read: FileDescriptor, write: FileDescriptor) {
        var fds: (Int32, Int32) = (-1, -1)
        _ = try withUnsafeMutableBytes(of: &fds) { (raw) throws(SystemCallError) -> Int32 in
            let pointer = raw.baseAddress!.assumingMemoryBound(to: Int32.self)
            return try retryingInterrupts("pipe2", airlock_pipe2(pointer, nonBlocking ? O_NONBLOCK : 0))
        }
        return (FileDescriptor(rawValue: fds.0), FileDescriptor(rawValue: fds.1))
    }

    /// Sets or clears `O_NONBLOCK`.
    public static func setNonBlocking(_ fd: FileDescriptor, _ nonBlocking: Bool = true) throws(SystemCallError) {
        let flags = try retryingInterrupts("fcntl(F_GETFL)", airlock_fcntl_getfl(fd.rawValue))
        let wanted = nonBlocking ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        if wanted != flags {
            _ = try retryingInterrupts("fcntl(F_SETFL)", airlock_fcntl_setfl(fd.rawValue, wanted))
        }
    }

    /// Sets or clears `FD_CLOEXEC`.
    public static func setCloseOnExec(_ fd: FileDescriptor, _ closeOnExec: Bool) throws(SystemCallError) {
        _ = try retryingInterrupts("fcntl(F_SETFD)", airlock_fcntl_setfd(fd.rawValue, closeOnExec ? FD_CLOEXEC : 0))
    }

    /// `close_range(first, ~0)`: closes every descriptor numbered `first` or above.
    public static func closeRange(first: Int32) throws(SystemCallError) {
        _ = try retryingInterrupts("close_range(\(first))", airlock_close_range(UInt32(first), UInt32.max, 0))
    }

    /// Opens `path` (always `O_CLOEXEC`) with raw `open(2)` flags and a mode for creation.
    public static func open(_ path: String, flags: Int32, mode: mode_t = 0o600) throws(SystemCallError) -> FileDescriptor {
        FileDescriptor(rawValue: try retryingInterrupts("open(\(path))", Glibc.open(path, flags | O_CLOEXEC, mode)))
    }

    /// The entries of a `/proc` folder that are numbers: the process ids in `/proc`, the
    /// thread ids in `/proc/PID/task`. `nil` when the folder cannot be opened.
    public static func numericEntries(of path: String) -> [Int32]? {
        guard let directory = opendir(path) else { return nil }
        defer { closedir(directory) }
        var result: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let number = Int32(name) { result.append(number) }
        }
        return result
    }

    /// Reads a whole (small) file such as `/proc/self/status`, up to `limit` bytes.
    public static func readFile(_ path: String, limit: Int = 1 << 20) throws(SystemCallError) -> [UInt8] {
        let fd = try open(path, flags: O_RDONLY)
        defer { try? close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while result.count < limit {
            guard let count = try retryingInterruptsUnlessWouldBlock("read(\(path))", Glibc.read(fd.rawValue, &chunk, chunk.count)) else {
                throw SystemCallError(call: "read(\(path))", errno: .resourceTemporarilyUnavailable)
            }
            if count == 0 { break }
            result.append(contentsOf: chunk[0..<count])
        }
        return result
    }

    /// Writes `contents` to an existing file such as `/proc/self/uid_map` or a cgroup control
    /// file, with a single `write` (those files need the whole value in one call).
    public static func writeFile(_ path: String, _ contents: String) throws(SystemCallError) {
        let fd = try open(path, flags: O_WRONLY)
        defer { try? close(fd) }
        let bytes = Array(contents.utf8)
        let written = try retryingInterrupts("write(\(path))", Glibc.write(fd.rawValue, bytes, bytes.count))
        if written != bytes.count {
            throw SystemCallError(call: "write(\(path))", errno: .ioError)
        }
    }
}
