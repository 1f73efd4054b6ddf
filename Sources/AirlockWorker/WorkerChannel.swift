import AirlockChannel
import AirlockPosix
import AirlockProtocol
import Glibc

/// The worker's end of the channel to the supervisor (PROTOCOL.md §5.5): two rings in
/// shared memory (descriptor 4, mapped and closed at start), the supervisor's doorbell
/// (descriptor 5, an eventfd), and a `SOCK_SEQPACKET` socket (descriptor 3) for `W_FATAL`.
///
/// Every frame is one record of a ring. Any thread may send: the writer of the ring to
/// the supervisor is behind a lock, and a full ring blocks the sender until the supervisor
/// frees space (the natural backpressure). Reader threads take requests one at a time; those with nothing
/// to read sleep on the ring's tail, and each request wakes one of them.
final class WorkerChannel: Sendable {
    /// The channel of this process.
    static let shared = WorkerChannel.attach()

    /// The socket (3): `W_FATAL`, and the supervisor's end of file when it is gone.
    let fd: FileDescriptor
    /// The doorbell (5): rung when the supervisor may be waiting for what was just done.
    let doorbell: FileDescriptor
    /// The shared memory of the rings.
    let region: ChannelRegion
    /// Frames to the supervisor.
    private let answers: ChannelLock<RingProducer>
    /// Requests from the supervisor.
    private let requests: ChannelLock<RingConsumer>

    private init(fd: FileDescriptor, doorbell: FileDescriptor, region: ChannelRegion) {
        self.fd = fd
        self.doorbell = doorbell
        self.region = region
        answers = ChannelLock(RingProducer(region.toSupervisor))
        requests = ChannelLock(RingConsumer(region.toWorker))
    }

    /// Checks descriptors 3 to 5 and maps the rings; a worker not started by airlockd
    /// (or started by a different build) says so and ends with status 64.
    private static func attach() -> WorkerChannel {
        var status = stat()
        if fstat(3, &status) != 0 || status.st_mode & S_IFMT != S_IFSOCK {
            WorkerLog.write("descriptor 3 is not the supervisor's channel (a SOCK_SEQPACKET socket); airlock-worker is started by airlockd")
            _exit(64)
        }
        let region: ChannelRegion
        do throws(ChannelRegionError) {
            region = try ChannelRegion.attach(FileDescriptor(rawValue: 4))
        } catch {
            WorkerLog.write("descriptor 4 is not the channel's shared memory (\(error)); airlock-worker is started by airlockd")
            _exit(64)
        }
        _ = Glibc.close(4)
        if fstat(5, &status) != 0 {
            WorkerLog.write("descriptor 5 (the supervisor's doorbell) is not open; airlock-worker is started by airlockd")
            _exit(64)
        }
        // Programs the plug-in executes do not inherit the channel.
        for fd in [Int32(3), 5] { try? Posix.setCloseOnExec(FileDescriptor(rawValue: fd), true) }
        return WorkerChannel(fd: FileDescriptor(rawValue: 3), doorbell: FileDescriptor(rawValue: 5), region: region)
    }

    /// The largest frame a ring carries whole.
    var largestFrame: Int { min(region.toSupervisor.capacity, region.toWorker.capacity) / 2 }

    /// Rings the supervisor's doorbell. A full counter (only a plug-in writing to the
    /// descriptor can fill it) is left as it is; a closed doorbell is fatal.
    private func ringDoorbell() {
        var one: UInt64 = 1
        while Glibc.write(doorbell.rawValue, &one, 8) < 0 {
            let error = errno
            if error == EINTR { continue }
            if error == EAGAIN { return }
            fatal("cannot ring the supervisor's doorbell (fd 5), closed or replaced inside the worker by the plug-in or a library it uses: \(String(cString: strerror(error)))")
        }
    }

    /// Writes one frame to the supervisor's ring, waiting for space when it is full, and
    /// rings the doorbell when the supervisor had read everything before it.
    private func write(_ bytes: UnsafeRawBufferPointer, type: MessageType) {
        write(count: bytes.count, type: type) { producer throws(RingError) in try producer.write(bytes) }
    }

    /// ``write(_:type:)`` of a frame in three parts (head, data, tail), written in place.
    private func write(_ head: UnsafeRawBufferPointer, _ data: UnsafeRawBufferPointer, _ tail: UnsafeRawBufferPointer, type: MessageType) {
        write(count: head.count + data.count + tail.count, type: type) { producer throws(RingError) in
            try producer.write(head, data, tail)
        }
    }

    @inline(__always)
    private func write(count: Int, type: MessageType, _ attempt: (inout RingProducer) throws(RingError) -> Bool) {
        let caughtUp: Bool
        do throws(RingError) {
            caughtUp = try answers.withLock { producer throws(RingError) in
                while try !attempt(&producer) {
                    try producer.waitForSpace(forRecord: count)
                }
                return producer.consumerHadCaughtUp
            }
        } catch {
            fatal("cannot write \(type.wireName) (\(count) bytes) to the supervisor's ring: \(error)")
        }
        if caughtUp { ringDoorbell() }
    }

    /// Sends one frame.
    func send(_ frame: Frame) {
        var writer = ByteWriter(reservingCapacity: 256)
        frame.encode(into: &writer)
        writer.withUnsafeBytes { send($0, type: frame.message.type) }
    }

    /// Sends one `W_RESULT` whose binary data is the plug-in's own memory: the header, the
    /// data and the tail are copied straight into one record of the ring.
    func sendBinaryResult(
        operation operationID: UInt64, flags: UInt32, stream: String?, data: UnsafeRawBufferPointer,
        commandState: String?, exitCode: UInt32
    ) {
        let (head, tail) = ResultFrames.binaryResultParts(
            type: .workerResult, operationID: operationID, resultFlags: flags, stream: stream, byteCount: data.count,
            commandState: commandState, exitCode: exitCode)
        head.withUnsafeBytes { head in
            tail.withUnsafeBytes { tail in
                write(head, data, tail, type: .workerResult)
            }
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
        write(bytes, type: type)
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

    /// Blocks until the next request and returns it (its bytes at the start of `buffer`).
    /// A request larger than `buffer` or a corrupt ring is fatal.
    func receive(into buffer: UnsafeMutableRawBufferPointer, maxFrameSize: Int) -> UnsafeRawBufferPointer {
        while true {
            let outcome: RingConsumer.ReadResult
            let spaceFreed: Bool
            do throws(RingError) {
                (outcome, spaceFreed) = try requests.withLock { consumer throws(RingError) in
                    let result = try consumer.read(into: buffer)
                    if case .empty = result { return (result, false) }
                    consumer.publish()
                    return (result, consumer.takeProducerWaiting())
                }
            } catch {
                fatal("protocol violation by the supervisor: its ring is corrupt (\(error))")
            }
            if spaceFreed { ringDoorbell() }
            switch outcome {
            case .empty(let tail):
                region.toWorker.waitForRecords(after: tail)
            case .oversized(let size):
                fatal("protocol violation by the supervisor: a frame of \(size) bytes exceeds the maximum frame size of \(maxFrameSize) bytes")
            case .record(let size):
                return UnsafeRawBufferPointer(rebasing: buffer[0..<size])
            }
        }
    }

    /// Watches the socket, forever: when the supervisor closes its end the process ends
    /// with status 0 (a supervisor that dies takes the worker with it by
    /// `PR_SET_PDEATHSIG`; one that closes the channel is obeyed the same way), and when a
    /// plug-in closes descriptor 3 inside the worker, which would silence `W_FATAL`, the
    /// worker ends as broken (status 70) within a second. Runs on a thread of its own: the
    /// requests arrive in the ring, the socket only ever hangs up.
    func watchSocket() -> Never {
        while true {
            let events: Posix.PollEvents
            do throws(SystemCallError) {
                // Not blocking for good: a descriptor closed by another thread does not
                // wake a poll already waiting on it.
                events = try Posix.poll(fd, for: [.readHangup], timeoutMilliseconds: 1000)
            } catch {
                fatal("cannot watch the supervisor channel (fd 3): \(error)")
            }
            if events.contains(.invalid) {
                fatal("the supervisor channel (fd 3) was closed inside the worker, by the plug-in or a library it uses")
            }
            if !events.intersection([.readHangup, .hangup]).isEmpty { _exit(0) }
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

/// One end of a ring behind a `pthread` mutex.
///
/// Not `Synchronization.Mutex`: its priority-inheritance futex records the owner's thread
/// id, which Swift caches per thread, and the worker's main thread (a reader) changes id
/// when the sandbox forks it into a PID namespace after its first receive. Its first
/// contended unlock then traps ("Call to unlock Mutex on a thread which hasn't acquired
/// the lock"). A plain `pthread` mutex keeps no thread id.
final class ChannelLock<Value: ~Copyable>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    init(_ value: consuming Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` on the value with the lock held.
    @inline(__always)
    func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
