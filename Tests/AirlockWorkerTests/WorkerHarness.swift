import AirlockChannel
import AirlockPosix
import AirlockProtocol
import Glibc
import Testing

/// A test failure with a message (a frame that did not come, a process that did not end).
struct HarnessError: Error, CustomStringConvertible {
    var description: String
}

/// Where the build put its products: the folder of the test binary, or the nearest
/// `.build/debug` above it.
enum BuildProducts {
    static let folder: String = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        var path = count > 0 ? String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "."
        while !path.isEmpty && path != "/" {
            path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            if access(path + "/airlock-worker", X_OK) == 0 { return path }
        }
        return "."
    }()

    static var worker: String { folder + "/airlock-worker" }

    /// `lib<name>.so` of a plug-in product, e.g. `airlock-plugin-echo`.
    static func plugin(_ name: String) -> String { folder + "/lib" + name + ".so" }
}

/// The encoded sandbox profile of PROTOCOL.md §8.
func sandboxProfile(layers: UInt32) -> [UInt8] {
    var w = ByteWriter()
    w.u32(layers)
    w.u32(0xFFFF_FFFF) // runAsUID: unchanged
    w.u32(0xFFFF_FFFF) // runAsGID
    w.u64(1 << 30)     // memoryBytes
    w.u32(256)         // maxTasks
    w.u32(256)         // maxOpenFiles
    w.bool(false)      // allowNetwork
    w.str("")          // stateDirectory
    w.strings([])      // readPaths
    w.strings([])      // writePaths
    w.str("")          // cgroupPath
    w.u32(0)           // supplementaryGroups: none
    return w.bytes
}

/// Plays the supervisor for one real `airlock-worker` process over a real channel: a
/// `SOCK_SEQPACKET` socket pair (descriptor 3 in the worker), the rings' shared memory (4)
/// and the doorbell eventfd (5), as airlockd makes them.
final class WorkerHarness {
    let channel: FileDescriptor
    let region: ChannelRegion
    let doorbell: EventDescriptor
    private var requests: RingProducer
    private var answers: RingConsumer
    let pid: pid_t
    private var exited: WaitStatus?
    /// Frames received but not yet asked for, in arrival order.
    private var pending: [Frame] = []
    /// Every `W_BREACH` message received so far.
    private(set) var breaches: [String] = []
    private var buffer = [UInt8](repeating: 0, count: 2 << 20)
    /// How long a test waits for a frame that should come before it fails (not a timing
    /// assertion: a guard against a hang).
    static let patienceMilliseconds: Int32 = 30_000

    init() throws {
        let (ours, theirs) = try UnixSocket.makePair(.seqPacket)
        let null = try Posix.open("/dev/null", flags: O_RDWR)
        let (region, regionFD) = try ChannelRegion.create(toWorker: 1 << 20, toSupervisor: 2 << 20)
        defer {
            try? Posix.close(theirs)
            try? Posix.close(null)
            try? Posix.close(regionFD)
        }
        channel = ours
        self.region = region
        doorbell = try EventDescriptor()
        requests = RingProducer(region.toWorker)
        answers = RingConsumer(region.toSupervisor)
        pid = try ProcessControl.spawn(
            executable: BuildProducts.worker, arguments: [],
            environment: ["SWIFT_BACKTRACE": "enable=no", "PATH": "/usr/bin:/bin"],
            fileDescriptors: [
                .init(source: null, target: 0),
                .init(source: FileDescriptor(rawValue: 1), target: 1),
                .init(source: FileDescriptor(rawValue: 2), target: 2),
                .init(source: theirs, target: 3),
                .init(source: regionFD, target: 4), .init(source: doorbell.fd, target: 5),
            ],
            newSession: true)
    }

    deinit {
        if exited == nil {
            _ = try? ProcessControl.kill(pid, signal: SIGKILL)
            _ = try? ProcessControl.wait(pid: pid)
        }
        try? Posix.close(channel)
    }

    // MARK: Sending

    func send(_ message: Message, operation: UInt64 = 0) throws {
        try send(bytes: Frame(operationID: operation, message: message).encoded())
    }

    /// Writes one record to the request ring (waiting for space, as airlockd queues) and
    /// wakes a reader.
    func send(bytes: [UInt8]) throws {
        var waited: Int32 = 0
        while try !bytes.withUnsafeBytes({ buffer throws(RingError) in try requests.write(buffer) }) {
            requests.announceWaitingForSpace()
            if try bytes.withUnsafeBytes({ buffer throws(RingError) in try requests.write(buffer) }) { break }
            guard waited < WorkerHarness.patienceMilliseconds else {
                throw HarnessError(description: "the worker freed no space in its request ring within \(WorkerHarness.patienceMilliseconds) ms")
            }
            _ = try Posix.poll(doorbell.fd, for: .input, timeoutMilliseconds: 100)
            _ = try doorbell.consume()
            waited += 100
        }
        if requests.consumersAreWaiting { requests.wakeConsumer() }
    }

    static let defaultConfiguration: [ConfigurationValue] = [
        ConfigurationValue(flag: 5, value: .text("echo")),
        ConfigurationValue(flag: 3, value: .dword(1)),
        ConfigurationValue(flag: 1, value: .dword(0)),
        ConfigurationValue(flag: 2, value: .text("nobody")),
        ConfigurationValue(flag: 4, value: .dword(300)),
    ]

    /// Sends `W_START` and returns `W_READY`.
    func start(
        plugin: String = "echo", library: String, window: UInt32 = 1 << 20, dropOutput: Bool = false,
        layers: UInt32 = 0, maxEnvelopeSize: UInt32 = 512_000, extraInfo: String? = "<Param Name=\"x\" Value=\"1\"/>"
    ) throws -> WorkerReady {
        try send(.workerStart(WorkerStart(
            plugin: plugin, libraryPath: library, applicationIdentification: "wsman", extraInfo: extraInfo,
            startupFlags: 0, maxEnvelopeSize: maxEnvelopeSize, outputWindowBytes: window, dropOutput: dropOutput,
            configuration: WorkerHarness.defaultConfiguration, sandboxProfile: sandboxProfile(layers: layers))))
        let frame = try next()
        guard case .workerReady(let ready) = frame.message else {
            throw HarnessError(description: "expected W_READY, got \(frame.message.type.wireName)")
        }
        return ready
    }

    static func context(_ timeoutMs: UInt32 = 0) -> RequestContext {
        RequestContext(senderName: "alice", authenticationMechanism: "Negotiate", resourceURI: "http://schemas.example/echo",
                       locale: "en-US", dataLocale: "de-DE", timeoutMs: timeoutMs)
    }

    func shell(_ operation: UInt64, shellID: UInt64, environment: [EnvironmentVariable] = [], workingDirectory: String? = nil) throws {
        try send(.workerShell(WorkerShell(
            context: WorkerHarness.context(), shellID: shellID, idleTimeoutMs: 0, inputStreams: ["stdin"],
            outputStreams: ["stdout", "stderr"], workingDirectory: workingDirectory, environment: environment, name: "test",
            options: [WSManOption(name: "WINRS_NOPROFILE", value: "TRUE")], optionsMustUnderstand: false,
            inboundShellInformation: .none)), operation: operation)
    }

    func command(_ operation: UInt64, shellID: UInt64, commandID: UInt64, _ line: String, _ arguments: [String] = [], timeoutMs: UInt32 = 0) throws {
        try send(.workerCommand(WorkerCommand(
            context: WorkerHarness.context(timeoutMs), shellID: shellID, commandID: commandID, commandLine: line,
            arguments: arguments, options: [])), operation: operation)
    }

    func receive(_ operation: UInt64, shellID: UInt64, commandID: UInt64) throws {
        try send(.workerReceive(WorkerReceive(
            context: WorkerHarness.context(), shellID: shellID, commandID: commandID, streams: [])), operation: operation)
    }

    func input(_ operation: UInt64, shellID: UInt64, commandID: UInt64, _ data: [UInt8], end: Bool) throws {
        try send(.workerSend(WorkerSend(
            context: WorkerHarness.context(), shellID: shellID, commandID: commandID, stream: "stdin",
            endOfStream: end, data: data)), operation: operation)
    }

    // MARK: Receiving

    /// The next frame from the worker, whatever its operation (`W_BREACH` is recorded
    /// and returned like any other frame).
    func next() throws -> Frame {
        if !pending.isEmpty { return pending.removeFirst() }
        return try read()
    }

    /// The next frame from the ring, or else from the socket (`W_FATAL`), waiting for the
    /// doorbell or the socket.
    private func read() throws -> Frame {
        var size = 0
        while true {
            let result = try buffer.withUnsafeMutableBytes { bytes throws(RingError) in try answers.read(into: bytes) }
            answers.publish()
            if answers.producerIsWaiting { answers.wakeProducer() }
            if case .record(let count) = result {
                size = count
                break
            }
            if case .oversized(let count) = result {
                throw HarnessError(description: "the worker wrote a \(count)-byte record")
            }
            var entries = [Posix.PollEntry(fd: doorbell.fd, events: .input), Posix.PollEntry(fd: channel, events: .input)]
            if try Posix.poll(&entries, timeoutMilliseconds: WorkerHarness.patienceMilliseconds) == 0 {
                throw HarnessError(description: "no frame from the worker within \(WorkerHarness.patienceMilliseconds) ms")
            }
            _ = try doorbell.consume()
            if answers.hasRecords { continue }
            if !entries[1].returnedEvents.isEmpty {
                let result = try buffer.withUnsafeMutableBytes { try Posix.receivePacket(channel, into: $0) }
                guard case .packet(let count) = result else {
                    throw HarnessError(description: "the worker closed the channel (\(result))")
                }
                size = count
                break
            }
        }
        let frame = try Frame.decode(buffer, range: 0..<size, maxFrameSize: buffer.count)
        if case .workerBreach(let message) = frame.message {
            breaches.append(message)
        }
        return frame
    }

    /// The next frame of `operation`, keeping frames of other operations for later.
    func next(for operation: UInt64) throws -> Frame {
        if let index = pending.firstIndex(where: { $0.operationID == operation }) {
            return pending.remove(at: index)
        }
        while true {
            let frame = try read()
            if frame.operationID == operation { return frame }
            pending.append(frame)
        }
    }

    /// Frames of `operation` received and not yet asked for.
    func pendingFrames(for operation: UInt64) -> [Frame] {
        pending.filter { $0.operationID == operation }
    }

    /// Every frame of `operation` up to and including its `FINAL` one.
    func frames(until operation: UInt64) throws -> [Frame] {
        var frames: [Frame] = []
        while true {
            let frame = try next(for: operation)
            frames.append(frame)
            if frame.flags.contains(.final) { return frames }
        }
    }

    /// The `W_COMPLETE` that ends `operation` (after any other frames of it).
    func completion(of operation: UInt64) throws -> WorkerComplete {
        let last = try frames(until: operation).last!
        guard case .workerComplete(let complete) = last.message else {
            throw HarnessError(description: "operation \(operation) ended with \(last.message.type.wireName)")
        }
        return complete
    }

    /// Expects `W_CONTEXT` for `operation`.
    func expectContext(_ operation: UInt64) throws {
        let frame = try next(for: operation)
        guard case .workerContext = frame.message else {
            throw HarnessError(description: "operation \(operation): expected W_CONTEXT, got \(frame.message) ")
        }
    }

    /// Reads frames until a `W_BREACH` arrives whose message contains `text`.
    func waitForBreach(containing text: String) throws -> String {
        if let found = breaches.first(where: { $0.contains(text) }) { return found }
        while true {
            let frame = try read()
            if case .workerBreach(let message) = frame.message {
                if message.contains(text) { return message }
            } else {
                pending.append(frame)
            }
        }
    }

    /// The output bytes and the final state of a Receive's results, and its completion.
    func receiveOutput(_ operation: UInt64) throws -> (output: [UInt8], done: Bool, exitCode: UInt32, complete: WorkerComplete) {
        var output: [UInt8] = []
        var done = false
        var exitCode: UInt32 = 0
        for frame in try frames(until: operation) {
            switch frame.message {
            case .workerResult(let result):
                if case .binary(let bytes) = result.streamResult { output += bytes }
                if case .text(let text) = result.streamResult { output += Array(text.utf8) }
                if result.commandState?.hasSuffix("/CommandState/Done") == true {
                    done = true
                    exitCode = result.exitCode
                }
            case .workerComplete(let complete):
                return (output, done, exitCode, complete)
            default:
                throw HarnessError(description: "unexpected \(frame.message.type.wireName) in Receive \(operation)")
            }
        }
        throw HarnessError(description: "Receive \(operation) did not complete")
    }

    // MARK: The process

    /// Waits for the worker to end (killing it after the patience period) and returns how.
    func waitForExit() throws -> WaitStatus {
        if let exited { return exited }
        var waited: Int32 = 0
        while waited < WorkerHarness.patienceMilliseconds {
            if let status = try ProcessControl.wait(pid: pid, noHang: true) {
                exited = status
                return status
            }
            usleep(10_000)
            waited += 10
        }
        _ = try? ProcessControl.kill(pid, signal: SIGKILL)
        let status = try ProcessControl.wait(pid: pid)
        exited = status
        throw HarnessError(description: "the worker did not exit within \(WorkerHarness.patienceMilliseconds) ms (killed: \(String(describing: status)))")
    }
}
