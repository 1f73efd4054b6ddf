import AirlockPosix
import Glibc

/// The stream's floor: the same bytes in 64 KiB sends over one Unix stream socket to a
/// child (`airlock-bench --sink 3 BYTES`, the other end of a socket pair as descriptor 3)
/// that receives them into a 1 MiB buffer and answers with the count at the end. One hop
/// with one copy in and one out, where Airlock's stream crosses two hops and copies three
/// times; measured in the same run, so the stream's figure can be read against what the
/// machine does at that moment.
enum StreamFloor {
    static let chunkSize = 65_536
    /// The send buffer of airlockd's client connections (``Supervisor``'s
    /// `clientSendBufferBytes`), so the floor's socket holds as much as the stream's.
    static let sendBufferBytes: Int32 = 512 << 10

    /// Sends `bytes` (whole chunks) to a fresh child; returns GB/s from the first send to
    /// the child's count.
    static func measure(bytes: UInt64, products: BuildProducts) throws(BenchFailure) -> Double {
        let chunks = max(1, Int(bytes) / chunkSize)
        let total = UInt64(chunks * chunkSize)
        do {
            let (ours, theirs) = try UnixSocket.makePair(.stream)
            defer { try? Posix.close(ours) }
            try? UnixSocket.setBufferSize(ours, .send, bytes: sendBufferBytes, force: true)
            let pid: pid_t
            do {
                defer { try? Posix.close(theirs) }
                pid = try ProcessControl.spawn(
                    executable: products.bench, arguments: ["--sink", "3", String(total)],
                    environment: ["PATH": "/usr/bin:/bin"], fileDescriptors: [.init(source: theirs, target: 3)], newSession: false)
            }
            defer { _ = try? ProcessControl.wait(pid: pid) }
            let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 64)
            defer { chunk.deallocate() }
            chunk.initializeMemory(as: UInt8.self, repeating: 0x5A)
            let start = SystemClock.monotonicNanoseconds()
            for _ in 0..<chunks { try Posix.writeAll(ours, UnsafeRawBufferPointer(chunk)) }
            var count: UInt64 = 0
            try withUnsafeMutableBytes(of: &count) { (answer) throws(SystemCallError) in try PongServer.readMessage(ours, into: answer) }
            let seconds = Double(SystemClock.monotonicNanoseconds() &- start) / 1e9
            guard count == total else { throw BenchFailure("the stream floor's child received \(count) bytes, not \(total)") }
            return Double(total) / seconds / 1e9
        } catch let failure as BenchFailure {
            throw failure
        } catch {
            throw BenchFailure("the stream floor: \(error)")
        }
    }

    /// The child: receives `BYTES` bytes on descriptor `FD`, then writes their count.
    static func runSink(arguments: [String]) -> Never {
        guard arguments.count >= 3, let number = Int32(arguments[1]), let expected = UInt64(arguments[2]) else { exit(64) }
        let fd = FileDescriptor(rawValue: number)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        var received: UInt64 = 0
        do {
            while received < expected {
                guard let count = try Posix.receive(fd, into: buffer) else { continue }
                if count == 0 { exit(1) }
                received += UInt64(count)
            }
            var answer = received
            try withUnsafeBytes(of: &answer) { (bytes) throws(SystemCallError) in try Posix.writeAll(fd, bytes) }
        } catch {
            exit(1)
        }
        exit(0)
    }
}
