/// A client `SIGNAL` or `RECEIVE` (PROTOCOL.md §5.3) read in place, and the `W_SIGNAL` or
/// `W_RECEIVE` that forwards it to a worker (§5.4) written without building a ``Message``:
/// the requests clients send most, on airlockd's hot path.
///
/// The worker request's payload is the request context, the shell and command ids, and
/// then the client's payload after its `timeoutMs` (the signal code, or the list of
/// streams) unchanged, so those bytes, once checked, are copied as they are.
public struct ShellRequestPacket {
    /// Which request the packet is.
    public enum Kind: Sendable {
        case signal
        case receive

        /// The client request's message type.
        public var requestType: MessageType {
            switch self {
            case .signal: .signal
            case .receive: .receive
            }
        }

        /// The message type of the worker request that forwards it.
        public var workerRequestType: MessageType {
            switch self {
            case .signal: .workerSignal
            case .receive: .workerReceive
            }
        }
    }

    public let kind: Kind
    /// The whole frame (valid as long as the caller's buffer is).
    public let frame: UnsafeRawBufferPointer
    public let operationID: UInt64
    public let shellID: UInt64
    public let commandID: UInt64
    public let timeoutMs: UInt32
    /// The checked bytes after `timeoutMs`: the `code` string, or the `streams` list.
    public let tail: UnsafeRawBufferPointer

    /// The kind of a frame of type `rawType`, when it is one this reader handles.
    public static func kind(ofFrameType rawType: UInt16) -> Kind? {
        switch rawType {
        case MessageType.signal.rawValue: .signal
        case MessageType.receive.rawValue: .receive
        default: nil
        }
    }

    /// Reads `frame`, one whole frame of type `kind.requestType`, with exactly the checks
    /// of ``Frame/decode(_:range:maxFrameSize:)`` (same errors, same messages).
    public init(frame: UnsafeRawBufferPointer, kind: Kind, maxFrameSize: Int) throws(ProtocolError) {
        var r = try WireCursor(frame: frame, type: kind.requestType, maxFrameSize: maxFrameSize)
        self.kind = kind
        self.frame = frame
        operationID = WireCursor.load64(frame, 8)
        shellID = try r.u64("shellId")
        commandID = try r.u64("commandId")
        timeoutMs = try r.u32("timeoutMs")
        let start = r.position
        switch kind {
        case .signal: _ = try r.str("code")
        case .receive: _ = try r.strings("streams")
        }
        try r.expectEnd(kind.requestType)
        tail = UnsafeRawBufferPointer(rebasing: frame[start..<r.position])
    }

    /// Appends the worker request with operation id `workerOperationID` and the request
    /// context of these fields: byte for byte what ``Frame/encode(into:)-([UInt8])`` writes
    /// for ``workerMessage(context:)`` of the equivalent ``RequestContext`` (taken field by
    /// field: no context value is built, and no string retained, per request).
    public func encodeWorkerRequest(
        operationID workerOperationID: UInt64, senderName: String, authenticationMechanism: String, resourceURI: String,
        locale: String, dataLocale: String, timeoutMs: UInt32, httpURL: String, into w: inout ByteWriter
    ) {
        let start = w.beginFrame(type: kind.workerRequestType, operationID: workerOperationID)
        RequestContext.encode(
            senderName: senderName, authenticationMechanism: authenticationMechanism, resourceURI: resourceURI,
            locale: locale, dataLocale: dataLocale, timeoutMs: timeoutMs, httpURL: httpURL, to: &w)
        w.u64(shellID)
        w.u64(commandID)
        w.append(tail)
        w.endFrame(startingAt: start)
    }

    /// The client request as a ``Message`` (decoded again: for the paths off the hot one).
    public func message() -> Message {
        // The frame passed every check of Frame.decode already.
        try! Frame.decode(Array(frame), maxFrameSize: Int(UInt32.max)).message
    }

    /// The worker request as a ``Message``, for a request that waits for its worker to start.
    public func workerMessage(context: RequestContext) -> Message {
        switch message() {
        case .signal(let request):
            .workerSignal(WorkerSignal(context: context, shellID: request.shellID, commandID: request.commandID, code: request.code))
        case .receive(let request):
            .workerReceive(WorkerReceive(context: context, shellID: request.shellID, commandID: request.commandID, streams: request.streams))
        default:
            preconditionFailure("a ShellRequestPacket is a SIGNAL or a RECEIVE")
        }
    }
}
