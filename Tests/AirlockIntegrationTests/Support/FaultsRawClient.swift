import AirlockPosix
import AirlockProtocol
import Glibc

/// A bare protocol client that reads from its socket only when asked to, unlike
/// AirlockClient (whose reader thread drains the socket at once). It plays the client that
/// stops reading in the flow-control test.
///
/// Reads never block a Swift concurrency thread: they poll with a zero timeout and sleep
/// between tries.
final class RawClient {
    let fd: FileDescriptor
    private var decoder = FrameDecoder(maxFrameSize: ProtocolLimits.handshakeMaxFrameSize)
    private var nextOperationID: UInt64 = 1
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)
    private var closed = false

    /// Connects and completes the handshake.
    init(socketPath: String) async throws {
        fd = try UnixSocket.connect(path: socketPath)
        do {
            try write(Frame(operationID: 0, message: .hello(Hello(clientName: "raw-client"))))
            let answer = try await readFrame()
            guard case .helloAck(let ack) = answer.message else {
                throw HarnessError("expected HELLO_ACK, got \(answer.message.type.wireName)")
            }
            decoder.maxFrameSize = Int(ack.maxFrameSize)
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    func close() {
        guard !closed else { return }
        closed = true
        try? Posix.close(fd)
    }

    /// Sends a request with a fresh operation id; returns the id.
    @discardableResult
    func request(_ message: Message) throws -> UInt64 {
        let operation = newOperationID()
        try write(Frame(operationID: operation, message: message))
        return operation
    }

    /// A fresh operation id, for a request sent some other way.
    func newOperationID() -> UInt64 {
        defer { nextOperationID += 1 }
        return nextOperationID
    }

    /// Asks the server to cancel `operation`.
    func cancel(_ operation: UInt64) throws {
        try write(Frame(operationID: operation, message: .cancel))
    }

    func write(_ frame: Frame) throws {
        let bytes = frame.encoded()
        // An untyped closure: a typed-throws one here crashes Swift 6.3.1's IRGen.
        try bytes.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) throws -> Void in try Posix.writeAll(fd, buffer) }
    }

    /// The next frame from the server; throws when none arrives within `timeout` or the
    /// connection ends.
    func readFrame(timeout: Duration = .seconds(30)) async throws -> Frame {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let frame = try decoder.next() { return frame }
            let ready = try Posix.poll(fd, for: [.input], timeoutMilliseconds: 0)
            if ready.isEmpty {
                if ContinuousClock.now > deadline { throw HarnessError("no frame from airlockd within \(timeout)") }
                try await Task.sleep(for: .milliseconds(5))
                continue
            }
            let count = try buffer.withUnsafeMutableBytes { (bytes: UnsafeMutableRawBufferPointer) throws -> Int? in try Posix.read(fd, into: bytes) } ?? 0
            if count == 0 { throw HarnessError("airlockd closed the connection") }
            decoder.append(Array(buffer[0..<count]))
        }
    }

    /// Reads frames until the `FINAL` one of `operation`; returns it and how many bytes of
    /// results arrived for `operation` on the way. Other frames are skipped.
    func readUntilFinal(of operation: UInt64, timeout: Duration = .seconds(30)) async throws -> (final: Frame, resultBytes: Int) {
        var bytes = 0
        while true {
            let frame = try await readFrame(timeout: timeout)
            guard frame.operationID == operation else { continue }
            if case .receiveResult(let result) = frame.message, case .binary(let data) = result.streamResult {
                bytes += data.count
            }
            if frame.flags.contains(.final) { return (frame, bytes) }
        }
    }

    /// Reads result frames of `operation` until at least `byteCount` bytes of data arrived.
    func readResults(of operation: UInt64, atLeast byteCount: Int, timeout: Duration = .seconds(30)) async throws {
        var bytes = 0
        while bytes < byteCount {
            let frame = try await readFrame(timeout: timeout)
            guard frame.operationID == operation else { continue }
            if frame.flags.contains(.final) {
                throw HarnessError("operation \(operation) ended after \(bytes) bytes: \(frame.message)")
            }
            if case .receiveResult(let result) = frame.message, case .binary(let data) = result.streamResult {
                bytes += data.count
            }
        }
    }
}
