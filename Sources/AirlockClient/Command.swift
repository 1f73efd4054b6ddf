import AirlockProtocol

/// A command running in a ``Shell``: the context its plug-in's `WSManPluginCommand`
/// reported.
///
/// Send it input with ``send(_:stream:endOfStream:timeout:)``, read its output with
/// ``output(streams:timeout:)`` (one `RECEIVE`; ``outputBlocking(streams:timeout:)`` from a
/// thread of your own) or ``outputUntilDone(streams:deadline:)`` (as many as it takes to
/// see the Done state), and signal it with
/// ``signal(_:timeout:)``.
public final class Command: Sendable {
    /// The shell the command runs in.
    public let shell: Shell
    /// The command's id, assigned by `airlockd` (the `commandId` of the protocol).
    public let id: UInt64

    let monitor: EndMonitor

    init(shell: Shell, id: UInt64) {
        self.shell = shell
        self.id = id
        self.monitor = shell.connection.core.commandMonitor(shellID: shell.id, commandID: id)
    }

    /// Why the server ended the command (`COMMAND_ENDED`), or nil while it runs (or when the
    /// server did not report its end).
    public var endedNotice: EndNotice? { monitor.value }

    /// Sends input (`SEND`); the plug-in acknowledges it before this returns. Data larger
    /// than one frame is sent as several `SEND`s. Mark the last input with `endOfStream`
    /// (an empty `data` with `endOfStream` just closes the stream).
    public func send(_ data: [UInt8], stream: String = "stdin", endOfStream: Bool = false, timeout: Duration? = nil) async throws(AirlockError) {
        try await sendInput(connection: shell.connection, shellID: shell.id, commandID: id, data, stream: stream, endOfStream: endOfStream, timeout: timeout)
    }

    /// Like ``send(_:stream:endOfStream:timeout:)`` but blocks the calling thread; for
    /// threads that are not Swift tasks (such as a thread reading standard input). `data`
    /// must fit in one frame (``AirlockConnection/server``'s `maxFrameSize` minus about 64
    /// bytes). Never call it from async code.
    public func sendBlocking(_ data: [UInt8], stream: String = "stdin", endOfStream: Bool = false, timeout: Duration? = nil) throws(AirlockError) {
        let (shellID, commandID, timeoutMs) = (shell.id, id, milliseconds(timeout))
        let failure = shell.connection.core.performBlockingCompletion(request: .send, shellID: shellID, commandID: commandID) { writer, operationID in
            ClientFrames.encodeSend(
                into: &writer, operationID: operationID, shellID: shellID, commandID: commandID, timeoutMs: timeoutMs,
                stream: stream, endOfStream: endOfStream, data: data)
        }
        if let failure { throw failure }
    }

    /// The most bytes ``sendBlocking(_:stream:endOfStream:timeout:)`` takes at once.
    public func maximumSendSize(stream: String = "stdin") -> Int {
        sendChunkSize(connection: shell.connection, stream: stream)
    }

    /// Receives output (one `RECEIVE`): each `RECEIVE_RESULT` is yielded as it arrives;
    /// the sequence finishes when the plug-in completes the Receive, and throws
    /// ``AirlockError`` when it completes with an error. Cancelling the consuming task
    /// cancels the Receive.
    ///
    /// The connection's reader thread yields each result as it arrives, however far the
    /// consumer is behind: a task slower than the plug-in lets results queue in memory.
    /// For large or untrusted output prefer ``outputBlocking(streams:timeout:)``, which
    /// never reads ahead of its consumer.
    ///
    /// - Parameter streams: the streams wanted; empty for every output stream.
    public func output(streams: [String] = [], timeout: Duration? = nil) -> AsyncThrowingStream<OutputChunk, any Error> {
        shell.connection.core.openStream(
            .receive(ReceiveOutput(shellID: shell.id, commandID: id, timeoutMs: milliseconds(timeout), streams: streams)),
            shellID: shell.id, commandID: id)
    }

    /// Like ``output(streams:timeout:)`` but for a thread that is not a Swift task: the
    /// caller takes each result with ``BlockingOutput/next()``, which reads the socket
    /// itself when no other thread does. The fastest way to take a large stream of output;
    /// never use it from async code.
    ///
    /// - Parameter streams: the streams wanted; empty for every output stream.
    public func outputBlocking(streams: [String] = [], timeout: Duration? = nil) -> BlockingOutput {
        shell.connection.core.openBlockingStream(
            .receive(ReceiveOutput(shellID: shell.id, commandID: id, timeoutMs: milliseconds(timeout), streams: streams)),
            shellID: shell.id, commandID: id)
    }

    /// Receives output until the plug-in reports the Done state, issuing another `RECEIVE`
    /// whenever one completes (or times out) earlier.
    ///
    /// - Parameter deadline: when to give up (the last `RECEIVE` then fails with
    ///   `ERROR_WSMAN_OPERATION_TIMEDOUT`); nil to wait as long as the command runs.
    public func outputUntilDone(streams: [String] = [], deadline: ContinuousClock.Instant? = nil) -> CommandOutputSequence {
        CommandOutputSequence(command: self, streams: streams, deadline: deadline)
    }

    /// Runs ``outputUntilDone(streams:deadline:)`` to the end and gathers `stdout`, `stderr`
    /// and the exit code.
    public func collectOutput(deadline: ContinuousClock.Instant? = nil) async throws(AirlockError) -> CollectedOutput {
        var collected = CollectedOutput()
        do {
            for try await chunk in outputUntilDone(deadline: deadline) {
                switch chunk.stream {
                case "stdout": collected.stdout += chunk.bytes
                case "stderr": collected.stderr += chunk.bytes
                case let other?: collected.other[other, default: []] += chunk.bytes
                case nil: break
                }
                if let exitCode = chunk.exitCode { collected.exitCode = exitCode }
            }
        } catch let error as AirlockError {
            throw error
        } catch {
            throw AirlockError(code: WSManError.operationAborted, message: "receiving output failed: \(error)")
        }
        return collected
    }

    /// Signals the command (`SIGNAL`): ctrl_c, ctrl_break, terminate or a plug-in defined
    /// code; the plug-in decides what it does.
    public func signal(_ code: SignalCode, timeout: Duration? = nil) async throws(AirlockError) {
        let message = Message.signal(SignalRequest(shellID: shell.id, commandID: id, timeoutMs: milliseconds(timeout), code: code.uri))
        _ = try await shell.connection.core.perform(message, shellID: shell.id, commandID: id).get()
    }

    /// Like ``signal(_:timeout:)`` but blocks the calling thread; for threads that are not
    /// Swift tasks. Never call it from async code.
    public func signalBlocking(_ code: SignalCode, timeout: Duration? = nil) throws(AirlockError) {
        try shell.connection.signalBlocking(shellID: shell.id, commandID: id, code: code, timeout: timeout)
    }
}

/// The output of a command gathered by ``Command/collectOutput(deadline:)``.
public struct CollectedOutput: Sendable, Equatable {
    /// Everything written to `stdout`.
    public var stdout: [UInt8] = []
    /// Everything written to `stderr`.
    public var stderr: [UInt8] = []
    /// Other streams, by name.
    public var other: [String: [UInt8]] = [:]
    /// The exit code reported with the Done state, if the plug-in reported one.
    public var exitCode: UInt32?

    /// Creates an empty collection.
    public init() {}

    /// `stdout` decoded as UTF-8 (invalid sequences repaired).
    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    /// `stderr` decoded as UTF-8 (invalid sequences repaired).
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}

/// The output of a command across as many `RECEIVE`s as it takes to see the Done state
/// (``Command/outputUntilDone(streams:deadline:)``).
public struct CommandOutputSequence: AsyncSequence {
    /// Each result of the plug-in.
    public typealias Element = OutputChunk

    let command: Command
    let streams: [String]
    let deadline: ContinuousClock.Instant?

    /// Starts iterating: the first `RECEIVE` is sent on the first `next()`.
    public func makeAsyncIterator() -> Iterator {
        Iterator(command: command, streams: streams, deadline: deadline)
    }

    /// Iterates the chunks; throws ``AirlockError``.
    public struct Iterator: AsyncIteratorProtocol {
        let command: Command
        let streams: [String]
        let deadline: ContinuousClock.Instant?
        var current: AsyncThrowingStream<OutputChunk, any Error>.Iterator?
        var receivedInCurrent = false
        var sawLastResult = false
        var finished = false

        init(command: Command, streams: [String], deadline: ContinuousClock.Instant?) {
            self.command = command
            self.streams = streams
            self.deadline = deadline
        }

        /// The next result, or nil once the command is done.
        public mutating func next() async throws -> OutputChunk? {
            while !finished {
                if sawLastResult {
                    // The plug-in said Done with NO_MORE_DATA: let its Receive complete
                    // rather than cancel it by dropping the stream.
                    finished = true
                    if var rest = current {
                        current = nil
                        while (try? await rest.next()) != nil {}
                    }
                    return nil
                }
                if current == nil {
                    var timeout: Duration?
                    if let deadline {
                        timeout = deadline - ContinuousClock.now
                        if timeout! <= .zero { timeout = .milliseconds(1) }
                    }
                    current = command.output(streams: streams, timeout: timeout).makeAsyncIterator()
                    receivedInCurrent = false
                }
                do {
                    if let chunk = try await current!.next() {
                        receivedInCurrent = true
                        if chunk.commandState == .done {
                            if chunk.flags.contains(.noMoreData) { sawLastResult = true } else { finished = true }
                        }
                        return chunk
                    }
                    // The Receive completed before Done: ask again, unless it brought nothing.
                    current = nil
                    if !receivedInCurrent { finished = true }
                } catch let error as AirlockError
                    where error.code == WSManError.operationTimedOut && error.kind == .operationFailed
                    && (deadline.map { ContinuousClock.now < $0 } ?? true) {
                    current = nil
                } catch {
                    finished = true
                    current = nil
                    throw error
                }
            }
            return nil
        }
    }
}
