import AirlockPosix
import AirlockProtocol
import CAirlockShims
import Foundation
import Glibc
import Synchronization

/// Runs blocking work (socket reads that wait, `connect` as another user) on a thread of
/// its own, never on the Swift concurrency pool, and returns its result.
func onDedicatedThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(with: Result { try body() })
        }
    }
}

// Glibc does not export `SYS_*` to Swift: the numbers of setresuid and setresgid.
#if arch(x86_64)
private let setresuidNumber = 117
private let setresgidNumber = 119
#elseif arch(arm64) || arch(aarch64)
private let setresuidNumber = 147
private let setresgidNumber = 149
#endif

/// True while process `pid` exists and is not a zombie.
func processIsAlive(_ pid: pid_t) -> Bool {
    guard Glibc.kill(pid, 0) == 0 else { return false }
    let stat = (try? Posix.readFile("/proc/\(pid)/stat", limit: 4096)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    guard let close = stat.lastIndex(of: ")") else { return true }
    return !stat[stat.index(after: close)...].hasPrefix(" Z")
}

/// A client connection to `airlockd` that sends and receives raw frames: for requests the
/// client library would refuse to send (malformed, oversized, half frames, garbage), for
/// another user's identity, and for many connections at once.
///
/// Its methods block; call them from ``onDedicatedThread(_:)`` or a thread of the test's own.
/// One thread at a time uses a connection.
final class RawFrameConnection: @unchecked Sendable {
    let fd: FileDescriptor
    let socketPath: String
    private var decoder = FrameDecoder(maxFrameSize: 64 << 20)
    private var buffer = [UInt8](repeating: 0, count: 65_536)
    private var closed = false
    private var nextOperationID: UInt64 = 1

    /// Why reading a frame stopped without one.
    enum ReadEnd: Error, CustomStringConvertible {
        /// Nothing came within the time allowed.
        case timedOut(seconds: Double)
        /// The server closed the connection (end of file or a reset).
        case closed

        var description: String {
            switch self {
            case .timedOut(let seconds): "no frame within \(seconds) s"
            case .closed: "the server closed the connection"
            }
        }
    }

    private init(fd: FileDescriptor, socketPath: String) {
        self.fd = fd
        self.socketPath = socketPath
    }

    deinit { close() }

    /// Connects to `socketPath` (blocking). With `identity`, the connecting thread takes
    /// that effective uid and gid for the `connect` call only, so the server's
    /// `SO_PEERCRED` sees that user: the process must be root, and the change uses raw
    /// `setresuid`/`setresgid` system calls, which (unlike glibc's wrappers) change the
    /// calling thread alone. Call it on a thread that is about to end
    /// (``connect(socketPath:as:)`` does).
    static func connectBlocking(socketPath: String, as identity: (uid: uid_t, gid: gid_t)? = nil) throws -> RawFrameConnection {
        ignoreBrokenPipes
        guard let identity else {
            return RawFrameConnection(fd: try UnixSocket.connect(path: socketPath), socketPath: socketPath)
        }
        let unchanged: Int = -1
        guard airlock_raw_syscall3(setresgidNumber, unchanged, Int(identity.gid), unchanged) == 0 else {
            throw HarnessError("setresgid(-1, \(identity.gid), -1) on this thread failed: errno \(errno)")
        }
        guard airlock_raw_syscall3(setresuidNumber, unchanged, Int(identity.uid), unchanged) == 0 else {
            let error = errno
            _ = airlock_raw_syscall3(setresgidNumber, unchanged, 0, unchanged)
            throw HarnessError("setresuid(-1, \(identity.uid), -1) on this thread failed: errno \(error)")
        }
        let result: Result<FileDescriptor, SystemCallError>
        do throws(SystemCallError) {
            result = .success(try UnixSocket.connect(path: socketPath))
        } catch {
            result = .failure(error)
        }
        // Back to root (the real and saved ids are still 0), so nothing else runs as the user.
        let restoredUID = airlock_raw_syscall3(setresuidNumber, unchanged, 0, unchanged) == 0
        let restoredGID = airlock_raw_syscall3(setresgidNumber, unchanged, 0, unchanged) == 0
        precondition(restoredUID && restoredGID, "cannot restore this thread's credentials: errno \(errno)")
        return RawFrameConnection(fd: try result.get(), socketPath: socketPath)
    }

    /// Connects on a thread of its own (see ``connectBlocking(socketPath:as:)``).
    static func connect(socketPath: String, as identity: (uid: uid_t, gid: gid_t)? = nil) async throws -> RawFrameConnection {
        try await onDedicatedThread { try connectBlocking(socketPath: socketPath, as: identity) }
    }

    /// Writing to a connection the server has closed must fail with `EPIPE`, not kill the tests.
    private static let ignoreBrokenPipes: Void = {
        _ = Glibc.signal(SIGPIPE, SIG_IGN)
    }()

    /// Closes the socket (once).
    func close() {
        guard !closed else { return }
        closed = true
        try? Posix.close(fd)
    }

    /// A fresh operation id for this connection.
    func allocateOperationID() -> UInt64 {
        defer { nextOperationID += 1 }
        return nextOperationID
    }

    // MARK: - Sending

    /// Writes `bytes` whole. Throws when the server has closed the connection.
    func send(_ bytes: [UInt8]) throws {
        let failure = bytes.withUnsafeBytes { buffer -> SystemCallError? in
            do throws(SystemCallError) {
                try Posix.writeAll(fd, buffer)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    /// Encodes and writes one frame.
    func send(_ frame: Frame) throws {
        try send(frame.encoded())
    }

    // MARK: - Receiving

    /// The next frame from the server. Throws ``ReadEnd`` when the connection closes first
    /// or nothing arrives within `timeout`.
    func nextFrame(timeout: Duration = .seconds(30)) throws -> Frame {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let frame = try decoder.next() { return frame }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw ReadEnd.timedOut(seconds: Self.seconds(timeout)) }
            let milliseconds = Int32(clamping: max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            let ready = try Posix.poll(fd, for: [.input], timeoutMilliseconds: milliseconds)
            if ready.isEmpty { continue }
            let count = buffer.withUnsafeMutableBytes { bytes -> Int in
                do throws(SystemCallError) {
                    return try Posix.read(fd, into: bytes) ?? -1
                } catch {
                    // ECONNRESET: the server closed with our bytes unread.
                    return 0
                }
            }
            if count == 0 { throw ReadEnd.closed }
            if count < 0 { continue }
            buffer.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        }
    }

    /// Waits until the server closes the connection, skipping any frames it sends; returns
    /// them. Throws ``ReadEnd/timedOut(seconds:)`` when it stays open longer than `timeout`.
    func framesUntilClosed(timeout: Duration = .seconds(30)) throws -> [Frame] {
        var frames: [Frame] = []
        while true {
            do {
                frames.append(try nextFrame(timeout: timeout))
            } catch ReadEnd.closed {
                return frames
            }
        }
    }

    /// Sends `HELLO` and returns the `HELLO_ACK`.
    @discardableResult
    func handshake(clientName: String = "raw-test") throws -> HelloAck {
        try send(Frame(operationID: 0, message: .hello(Hello(clientName: clientName))))
        let answer = try nextFrame()
        guard case .helloAck(let ack) = answer.message else {
            throw HarnessError("expected HELLO_ACK, got \(answer.message.type.wireName): \(answer.message)")
        }
        // The server's limit, and the client's from now on.
        decoder.maxFrameSize = max(decoder.maxFrameSize, Int(ack.maxFrameSize))
        return ack
    }

    /// Sends `message` as a new operation and returns the frame that ends it (`FINAL`),
    /// with the connection-level events (`SHELL_CLOSED`, `COMMAND_ENDED`) and results that
    /// came before it.
    func request(_ message: Message, timeout: Duration = .seconds(60)) throws -> (final: Frame, before: [Frame]) {
        let id = allocateOperationID()
        try send(Frame(operationID: id, message: message))
        var before: [Frame] = []
        while true {
            let frame = try nextFrame(timeout: timeout)
            if frame.operationID == id && frame.flags.contains(.final) { return (frame, before) }
            if case .error = frame.message, frame.operationID == 0 {
                throw HarnessError("the server reported a protocol error: \(frame.message)")
            }
            before.append(frame)
        }
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

extension Frame {
    /// The error code and message of an `OPERATION_COMPLETE` or `ERROR` frame (nil for
    /// other frames).
    var failure: (code: UInt32, message: String)? {
        switch message {
        case .operationComplete(let complete): (complete.errorCode, complete.message)
        case .error(let report): (report.errorCode, report.message)
        default: nil
        }
    }
}
