import AirlockPosix
import AirlockProtocol
import Glibc

/// The worker's end of the channel to the supervisor: file descriptor 3, one end of a
/// `SOCK_SEQPACKET` socket pair. Every packet is exactly one frame.
///
/// Any thread may send: one `send` per frame keeps frames whole without a lock, and a
/// blocking send is the natural backpressure when the supervisor falls behind.
final class WorkerChannel: Sendable {
    /// The channel of this process.
    static let shared = WorkerChannel(fd: FileDescriptor(rawValue: 3))

    /// The descriptor (3).
    let fd: FileDescriptor

    init(fd: FileDescriptor) {
        self.fd = fd
    }

    /// Sends one frame. When the supervisor is gone (`EPIPE`, `ECONNRESET`) the process
    /// ends at once: nobody is left to serve.
    func send(_ frame: Frame) {
        var writer = ByteWriter(reservingCapacity: 256)
        frame.encode(into: &writer)
        writer.withUnsafeBytes { send($0, type: frame.message.type) }
    }

    /// Sends one `W_RESULT` whose binary data is the plug-in's own memory: the header, the
    /// data and the tail leave in one packet with one `sendmsg`, the data never copied.
    func sendBinaryResult(
        operation operationID: UInt64, flags: UInt32, stream: String?, data: UnsafeRawBufferPointer,
        commandState: String?, exitCode: UInt32
    ) {
        let (head, tail) = ResultFrames.binaryResultParts(
            type: .workerResult, operationID: operationID, resultFlags: flags, stream: stream, byteCount: data.count,
            commandState: commandState, exitCode: exitCode)
        let outcome = head.withUnsafeBytes { head in
            tail.withUnsafeBytes { tail in
                Result { () throws(SystemCallError) -> Int? in try Posix.send(fd, head, data, tail) }
            }
        }
        if case .failure(let error) = outcome {
            if error.errno == .brokenPipe || error.errno == .connectionReset || error.errno == .socketNotConnected {
                _exit(0)
            }
            WorkerLog.write("cannot send W_RESULT (\(head.count + data.count + tail.count) bytes) on the supervisor channel (fd 3): \(error)")
            _exit(70)
        }
    }

    /// Sends the `W_COMPLETE` that ends operation `operationID`, encoded on the stack.
    func sendComplete(operation operationID: UInt64, errorCode: UInt32, extendedInformation: String?) {
        guard var information = extendedInformation else {
            sendComplete(operation: operationID, errorCode: errorCode, utf8: nil)
            return
        }
        information.withUTF8 { utf8 in
            sendComplete(operation: operationID, errorCode: errorCode, utf8: UnsafeRawBufferPointer(utf8))
        }
    }

    private func sendComplete(operation operationID: UInt64, errorCode: UInt32, utf8: UnsafeRawBufferPointer?) {
        let size = CompletionFrame.size(informationBytes: utf8?.count)
        withUnsafeTemporaryAllocation(byteCount: size, alignment: 8) { buffer in
            _ = CompletionFrame.write(operationID: operationID, errorCode: errorCode, information: utf8, into: buffer)
            send(UnsafeRawBufferPointer(buffer), type: .workerComplete)
        }
    }

    /// Sends one encoded frame of type `type` (for the error message).
    private func send(_ bytes: UnsafeRawBufferPointer, type: MessageType) {
        do throws(SystemCallError) {
            _ = try Posix.send(fd, bytes)
        } catch {
            if error.errno == .brokenPipe || error.errno == .connectionReset || error.errno == .socketNotConnected {
                _exit(0)
            }
            WorkerLog.write("cannot send \(type.wireName) (\(bytes.count) bytes) on the supervisor channel (fd 3): \(error)")
            _exit(70)
        }
    }

    /// Sends `message` with operation id `operationID`.
    func send(_ message: Message, operation operationID: UInt64 = 0, final: Bool = false) {
        send(Frame(operationID: operationID, flags: final ? .final : [], message: message))
    }

    /// A fatal error in the worker itself: reports it with `W_FATAL`, logs it, and ends
    /// the process with status 70 (`EX_SOFTWARE`) without running exit handlers.
    func fatal(_ message: String) -> Never {
        WorkerLog.write("fatal: \(message)")
        let frame = Frame(operationID: 0, message: .workerFatal(message: WideString.truncated(message, maximumBytes: 3000)))
        let bytes = frame.encoded()
        _ = bytes.withUnsafeBytes { buffer in
            Glibc.send(fd.rawValue, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL))
        }
        _exit(70)
    }

    /// Blocks until the next packet and returns it (its bytes at the start of `buffer`), or
    /// `nil` when the supervisor closed its end. A packet larger than `buffer` or a receive
    /// error is fatal.
    func receive(into buffer: UnsafeMutableRawBufferPointer, maxFrameSize: Int) -> UnsafeRawBufferPointer? {
        while true {
            let result: Posix.PacketResult
            do throws(SystemCallError) {
                result = try Posix.receivePacket(fd, into: buffer)
            } catch {
                if error.errno == .connectionReset { return nil }
                if error.errno == .badFileDescriptor {
                    fatal("the supervisor channel (fd 3) was closed inside the worker, by the plug-in or a library it uses: \(error)")
                }
                fatal("cannot receive from the supervisor channel (fd 3): \(error)")
            }
            switch result {
            case .wouldBlock:
                continue  // the descriptor is blocking: retry
            case .endOfFile:
                return nil
            case .truncated(_, let size):
                fatal("protocol violation by the supervisor: a packet of \(size) bytes exceeds the maximum frame size of \(maxFrameSize) bytes")
            case .packet(let size):
                return UnsafeRawBufferPointer(rebasing: buffer[0..<size])
            }
        }
    }

    /// Decodes one packet as a whole frame; a malformed frame is fatal.
    func decode(_ packet: UnsafeRawBufferPointer, maxFrameSize: Int) -> Frame {
        do throws(ProtocolError) {
            return try Frame.decode(Array(packet), maxFrameSize: maxFrameSize)
        } catch {
            fatal("protocol violation by the supervisor: \(error.message)")
        }
    }
}
