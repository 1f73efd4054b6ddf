import AirlockPosix
import Glibc

/// The floor: a raw Unix-socket ping-pong of 64-byte messages between this process and a
/// child (`airlock-bench --pong 3 KIND`, the other end of a socket pair as descriptor 3).
/// The child inherits the CPU affinity of the spawning thread, so it runs under the same
/// pinning as the round trips it is compared with. One thread at a time uses a partner.
final class PingPongPartner: @unchecked Sendable {
    static let messageSize = 64

    let kind: UnixSocket.Kind
    private let pid: pid_t
    private let fd: FileDescriptor
    private var stopped = false

    var kindName: String { kind == .stream ? "SOCK_STREAM" : "SOCK_SEQPACKET" }

    private init(kind: UnixSocket.Kind, pid: pid_t, fd: FileDescriptor) {
        self.kind = kind
        self.pid = pid
        self.fd = fd
    }

    deinit { stop() }

    static func start(kind: UnixSocket.Kind, products: BuildProducts) throws(BenchFailure) -> PingPongPartner {
        do {
            let (ours, theirs) = try UnixSocket.makePair(kind)
            defer { try? Posix.close(theirs) }
            let pid = try ProcessControl.spawn(
                executable: products.bench, arguments: ["--pong", "3", kind == .stream ? "stream" : "seqpacket"],
                environment: ["PATH": "/usr/bin:/bin"], fileDescriptors: [.init(source: theirs, target: 3)], newSession: false)
            return PingPongPartner(kind: kind, pid: pid, fd: ours)
        } catch {
            throw BenchFailure("cannot start the ping-pong partner: \(error)")
        }
    }

    /// `count` round trips; appends each one's duration in nanoseconds to `samples`.
    func measure(count: Int, into samples: inout [UInt64]) throws(BenchFailure) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.messageSize, alignment: 16)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0x5A)
        let outgoing = UnsafeRawBufferPointer(buffer)
        for _ in 0..<count {
            let start = SystemClock.monotonicNanoseconds()
            do {
                try Posix.writeAll(fd, outgoing)
                try PongServer.readMessage(fd, into: buffer)
            } catch {
                throw BenchFailure("ping-pong (\(kindName)): \(error)")
            }
            samples.append(SystemClock.monotonicNanoseconds() &- start)
        }
    }

    /// Closes the socket (the child sees end of file and exits) and reaps the child.
    func stop() {
        guard !stopped else { return }
        stopped = true
        try? Posix.close(fd)
        _ = try? ProcessControl.wait(pid: pid)
    }
}

/// The child side of the ping-pong: echoes 64-byte messages on descriptor 3 until end of
/// file.
enum PongServer {
    static func run(arguments: [String]) -> Never {
        guard arguments.count >= 2, let number = Int32(arguments[1]) else { exit(64) }
        let fd = FileDescriptor(rawValue: number)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: PingPongPartner.messageSize, alignment: 16)
        while true {
            do {
                try readMessage(fd, into: buffer)
                try Posix.writeAll(fd, UnsafeRawBufferPointer(buffer))
            } catch {
                exit(0)
            }
        }
    }

    /// Reads exactly one message (a stream may deliver it in pieces). End of file throws.
    static func readMessage(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) {
        var received = 0
        while received < buffer.count {
            guard let count = try Posix.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[received...])) else { continue }
            if count == 0 { throw SystemCallError(call: "read (end of file)", errno: .brokenPipe) }
            received += count
        }
    }
}
