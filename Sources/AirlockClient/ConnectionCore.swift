import AirlockPosix
import AirlockProtocol
import Synchronization

/// The answer to one request: the frame that ended it, or why it failed.
typealias Answer = Result<Message, AirlockError>

/// A thread parked on one operation's answer (the blocking API).
final class BlockingWaiter: @unchecked Sendable {
    let semaphore = Semaphore()
    /// Written by the reader before `semaphore.signal()`, read by the waiter after `wait()`.
    /// Behind a pointer, not a stored `var`: a class's stored property is checked for
    /// exclusive access at run time on every access.
    private let slot = UnsafeMutablePointer<Answer?>.allocate(capacity: 1)

    init() { slot.initialize(to: nil) }

    deinit {
        slot.deinitialize(count: 1)
        slot.deallocate()
    }

    /// Hands the waiting thread its answer and wakes it.
    func deliver(_ answer: consuming Answer) {
        slot.pointee = answer
        semaphore.signal()
    }

    /// The answer delivered (call after the semaphore was taken), leaving the slot empty.
    func takeAnswer() -> Answer {
        let answer = slot.move()!
        slot.initialize(to: nil)
        return answer
    }
}

/// Who is waiting for an operation, and how to hand it its frames.
enum Waiter {
    /// Registered; the continuation is not attached yet and the request not sent.
    case unattached
    /// Cancelled while unattached: it is never sent.
    case cancelledUnattached
    /// A task suspended in ``ConnectionCore/perform(_:shellID:commandID:)``.
    case task(UnsafeContinuation<Answer, Never>)
    /// A thread blocked in ``ConnectionCore/performBlocking(_:shellID:commandID:)``.
    case thread(BlockingWaiter)
    /// A `RECEIVE`, whose results are yielded as they arrive.
    case stream(StreamSink)
    /// A `RECEIVE` whose results a thread takes in ``BlockingOutput/next()``, reading the
    /// socket itself when nobody else does.
    case readingThread(BlockingStreamSink)
    /// The `OPEN_RESULT_RING` offering the connection's result ring; nobody waits for it.
    case resultRingOffer

    var isAttached: Bool {
        switch self {
        case .unattached, .cancelledUnattached: false
        case .task, .thread, .stream, .readingThread, .resultRingOffer: true
        }
    }

    /// The sink of a blocking `RECEIVE` whose consumer reads the socket itself, or nil.
    var selfReadingSink: BlockingStreamSink? {
        guard case .readingThread(let sink) = self, !sink.abandoned.load(ordering: .relaxed) else { return nil }
        return sink
    }
}

/// The continuation of a `RECEIVE`'s stream, in a box: `AsyncThrowingStream.Continuation`
/// is a resilient type of the standard library, whose size is known only at run time. Held
/// directly, it made ``Waiter`` and ``PendingOperation`` types of run-time layout, so every
/// copy, test and destruction of them (several per operation, in the operations table) went
/// through generic value witnesses; a class reference has a fixed layout.
final class StreamSink: Sendable {
    let continuation: AsyncThrowingStream<OutputChunk, any Error>.Continuation

    init(_ continuation: AsyncThrowingStream<OutputChunk, any Error>.Continuation) {
        self.continuation = continuation
    }
}

/// One operation in flight.
struct PendingOperation {
    var waiter: Waiter
    let request: MessageType
    let shellID: UInt64
    let commandID: UInt64
}

/// Records the `SHELL_CLOSED` or `COMMAND_ENDED` event of one shell or command.
final class EndMonitor: Sendable {
    private let notice = Mutex<EndNotice?>(nil)

    var value: EndNotice? { notice.withLock { $0 } }

    func record(_ newNotice: EndNotice) {
        notice.withLock { if $0 == nil { $0 = newNotice } }
    }
}

/// The reading side of the socket. One thread reads at a time: normally the reader thread;
/// but when the reader thread has just handed a blocking caller its answer and nothing else
/// is in flight, it parks, and the next blocking caller reads its own answer (no hand-off
/// between threads: one context switch less per operation). It parks too while everything
/// in flight is a ``BlockingOutput`` whose consumer reads its own results. The decoder, the
/// receive size and the ending belong to whoever reads; `owner` and `wake` are guarded by
/// `parking`.
final class ReadSide: @unchecked Sendable {
    enum Owner {
        /// The reader thread reads (or is about to).
        case readerThread
        /// The reader thread is parked and nobody reads.
        case free
        /// A blocking caller reads.
        case caller
    }

    /// How long the parked reader thread waits before it reads again by itself (so
    /// unsolicited frames, like a server `PING`, are never left unread for long).
    static let parkNanoseconds = 20_000_000

    /// The first receives ask for this many bytes; a receive that fills its whole request
    /// doubles the next one, up to ``largestReceive``.
    static let smallestReceive = 65_536
    /// The most one receive asks for: a stream of output is taken in several results per
    /// system call (and per wake-up of the consumer).
    static let largestReceive = 1 << 20
    /// A result whose binary data still has this many bytes to come is received into an
    /// array of its own (``FrameDecoder/setAsideResultData(minimumMissing:)``): the output
    /// a stream delivers is then not copied out of the decoder's storage.
    static let setAsideMinimum = 32_768
    /// What a receive into set-aside data takes beyond it: the rest of that frame and the
    /// start of the next. Small, so that the next large result's data is mostly still
    /// queued, to be set aside in turn, rather than received (and copied) here.
    static let receiveBeyondSetAside = 4096

    /// What the reading thread owns, and what `parking` guards. Behind a pointer rather
    /// than in stored `var`s, which are checked for exclusive access at run time on every
    /// access (several times per operation); the ownership protocol above is what keeps
    /// the accesses apart.
    struct Fields {
        // Guarded by `parking`.
        var owner = Owner.readerThread
        /// Set to make the parked reader thread take the socket back as soon as it is free.
        var wake = false

        // Owned by the thread that reads.
        var receiveSize = ReadSide.smallestReceive
        /// Set while results with large data arrive (the last frame decoded was one, or the
        /// next one's data is set aside): until the next frame's start is in, a receive
        /// then takes only ``receiveBeyondSetAside`` bytes, so that its data can be set
        /// aside too.
        var receivingOutput = false
        /// The frames of one receive between decoding and routing (kept: no allocation
        /// per receive).
        var frameList: [Frame] = []
        var handshakeDone = false
        /// Why reading ended (set by whoever read last).
        var ending: AirlockError?
    }

    let parking = ParkingLock()
    private let fields = UnsafeMutablePointer<Fields>.allocate(capacity: 1)
    /// Owned by the thread that reads. Frames are received straight into the decoder's
    /// storage, kept for the connection's life: at most twice a frame plus
    /// ``largestReceive``, and never reallocated per receive (freeing and regrowing it at
    /// every receive is what made the first attempt at 1 MiB receives crawl: seconds per
    /// receive in debug builds).
    private let decoderStorage = UnsafeMutablePointer<FrameDecoder>.allocate(capacity: 1)

    init() {
        fields.initialize(to: Fields())
        decoderStorage.initialize(to: FrameDecoder(maxFrameSize: ProtocolLimits.handshakeMaxFrameSize, keptStorage: .max))
    }

    deinit {
        fields.deinitialize(count: 1)
        fields.deallocate()
        decoderStorage.deinitialize(count: 1)
        decoderStorage.deallocate()
    }

    var owner: Owner {
        get { fields.pointee.owner }
        set { fields.pointee.owner = newValue }
    }

    var wake: Bool {
        get { fields.pointee.wake }
        set { fields.pointee.wake = newValue }
    }

    var decoder: FrameDecoder {
        unsafeAddress { UnsafePointer(decoderStorage) }
        unsafeMutableAddress { decoderStorage }
    }

    var receiveSize: Int {
        get { fields.pointee.receiveSize }
        set { fields.pointee.receiveSize = newValue }
    }

    /// Whether `frame` is a result whose data would have been set aside.
    static func isLargeResult(_ frame: Frame) -> Bool {
        guard case .receiveResult(let result) = frame.message, case .binary(let data) = result.streamResult else { return false }
        return data.count >= setAsideMinimum
    }

    var receivingOutput: Bool {
        get { fields.pointee.receivingOutput }
        set { fields.pointee.receivingOutput = newValue }
    }

    /// The kept list for one receive's frames, empty; give it back with
    /// ``returnFrameList(_:)``.
    func takeFrameList() -> [Frame] {
        var list: [Frame] = []
        swap(&list, &fields.pointee.frameList)
        return list
    }

    /// Empties `list` (keeping its capacity) and keeps it for the next receive.
    func returnFrameList(_ list: inout [Frame]) {
        if !list.isEmpty { list.removeAll(keepingCapacity: true) }
        swap(&list, &fields.pointee.frameList)
    }

    var handshakeDone: Bool {
        get { fields.pointee.handshakeDone }
        set { fields.pointee.handshakeDone = newValue }
    }

    var ending: AirlockError? {
        get { fields.pointee.ending }
        set { fields.pointee.ending = newValue }
    }

    /// Takes the socket for a blocking caller when nobody reads; false otherwise. When
    /// another blocking caller reads, the reader thread is asked to take the socket back as
    /// soon as that caller gives it up (it may give it up before this caller's answer came).
    func takeForCaller() -> Bool {
        parking.lock()
        defer { parking.unlock() }
        guard owner == .free else {
            if owner == .caller { wake = true }
            return false
        }
        owner = .caller
        return true
    }

    /// A blocking caller gives the socket back; `wakeReader` makes the reader thread read
    /// again at once (other operations are in flight, or the connection ended). So does a
    /// wake-up asked for while the caller read (``wakeReader()``, or another blocking caller
    /// in ``takeForCaller()``): the parked reader thread could not take the socket then.
    func releaseFromCaller(wakeReader: Bool) {
        parking.lock()
        owner = .free
        if wakeReader || wake {
            wake = true
            parking.signal()
        }
        parking.unlock()
    }

    /// Makes a parked reader thread read again as soon as the socket is free. Also when it
    /// is reading: it may be about to park, and must not then.
    func wakeReader() {
        parking.lock()
        wake = true
        if owner != .readerThread { parking.signal() }
        parking.unlock()
    }

    /// The reader thread parks until woken with the socket free, or until the socket has
    /// been free for a whole ``parkNanoseconds`` and `readsOnTimeout` says it should read;
    /// it then owns the socket again. Once the socket is free, the consumers of `consumers`
    /// are nudged: one may be waiting for the reader thread, having found the socket taken
    /// a moment ago. (`readsOnTimeout` runs with `parking` held.)
    func parkReader(nudging consumers: [BlockingStreamSink], readsOnTimeout: () -> Bool) {
        parking.lock()
        if owner == .readerThread { owner = .free }
        for sink in consumers { sink.nudge() }
        while true {
            if owner == .free && wake { break }
            let timedOut = parking.wait(nanoseconds: Self.parkNanoseconds)
            if owner == .free && (wake || (timedOut && readsOnTimeout())) { break }
        }
        wake = false
        owner = .readerThread
        parking.unlock()
    }
}

/// One connection to `airlockd`: the socket, the writer, the reader thread and the table of
/// operations in flight. ``AirlockConnection`` owns it; the reader thread keeps it alive
/// until the socket is closed.
///
/// Threading: any thread may write (frames are encoded and sent whole under `writer`); only
/// the reader thread reads. Continuations are resumed outside the locks.
final class ConnectionCore: Sendable {
    private struct CommandKey: Hashable {
        let shellID: UInt64
        let commandID: UInt64
    }

    private struct State {
        var operations = OperationTable()
        var shells: [UInt64: EndMonitor] = [:]
        var commands: [CommandKey: EndMonitor] = [:]
        /// Set once the connection is unusable; every later request fails with it.
        var failure: AirlockError?
        var handshake: UnsafeContinuation<Result<HelloAck, AirlockError>, Never>?
        /// A waiter kept for the next blocking call (callers at the same time make their
        /// own). Here rather than behind a lock of its own: it is taken in the same critical
        /// section that registers the operation, and given back in the one that ends it.
        var idleWaiter: BlockingWaiter?
        /// The result ring offered to the server, once offered (PROTOCOL.md §5.6).
        var resultRing: ClientResultRing?
        /// Whether the server accepted it: nil until it answered.
        var resultRingAccepted: Bool?
        /// Why the server refused it, or why it could not be offered.
        var resultRingRefusal: String?
    }

    private struct Writer: ~Copyable {
        /// Reused for every frame so encoding does not allocate.
        var buffer = ByteWriter(reservingCapacity: 4096)
        /// Set when no more frames may be written.
        var closedReason: AirlockError?
        /// Set by the reader thread when it closes the descriptor.
        var descriptorClosed = false
    }

    let fd: FileDescriptor
    let socketPath: String
    private let state = Mutex(State())
    private let writer: Mutex<Writer>
    private let nextOperationID = Atomic<UInt64>(1)
    private let outgoingFrameLimit = Atomic<Int>(ProtocolLimits.handshakeMaxFrameSize)
    private let readSide = ReadSide()
    /// Set when the last frames routed answered a blocking caller or fed a
    /// ``BlockingOutput`` (the reader may park).
    private let servedBlockingThread = Atomic<Bool>(false)

    /// Seconds to wait for `HELLO_ACK`.
    static let handshakeTimeoutMilliseconds: Int32 = 10_000

    /// The size of the result ring offered with the first `RECEIVE` (0: none).
    let resultRingSize: Int
    /// Set once the result ring was offered (or found impossible).
    private let resultRingOffered = Atomic<Bool>(false)

    init(fd: FileDescriptor, socketPath: String, resultRingSize: Int = 0) {
        self.fd = fd
        self.socketPath = socketPath
        self.resultRingSize = resultRingSize
        self.writer = Mutex(Writer())
    }

    /// Whether the server writes this connection's large results into its result ring:
    /// nil until it answered the offer (or when none was made), then its answer.
    var resultRingAccepted: Bool? { state.withLock { $0.resultRingAccepted } }

    /// Why the result ring is not used, when the server refused it or it could not be made.
    var resultRingRefusal: String? { state.withLock { $0.resultRingRefusal } }

    /// Offers the connection's result ring once, before its first `RECEIVE` (PROTOCOL.md
    /// §5.6). The answer is not awaited: the server handles frames in order, so the ring is
    /// in place (or refused) before the `RECEIVE` that follows is served. When it is refused,
    /// results travel through the socket as they would anyway.
    private func offerResultRingIfNeeded() {
        guard resultRingSize > 0, !resultRingOffered.exchange(true, ordering: .relaxed) else { return }
        let ring: ClientResultRing
        let descriptor: FileDescriptor
        do throws(SystemCallError) {
            (ring, descriptor) = try ClientResultRing.create(size: resultRingSize)
        } catch {
            state.withLock { $0.resultRingRefusal = "cannot create the result ring: \(error)" }
            return
        }
        defer { try? Posix.close(descriptor) }
        let id = allocateOperationID()
        let registered = state.withLock { state -> Bool in
            guard state.failure == nil else { return false }
            state.resultRing = ring
            state.operations[id] = PendingOperation(waiter: .resultRingOffer, request: .openResultRing, shellID: 0, commandID: 0)
            return true
        }
        guard registered else { return }
        let frame = Frame(operationID: id, message: .openResultRing(size: UInt32(resultRingSize)))
        if let error = writeFrame(.openResultRing, passing: descriptor, { frame.encode(into: &$0) }) {
            complete(id, with: .failure(error))
        }
    }

    /// The server's answer to the result ring's offer.
    private func resultRingAnswered(_ answer: consuming Answer) {
        let refusal: String?
        switch answer {
        case .success: refusal = nil
        case .failure(let error): refusal = error.message
        }
        state.withLock { state in
            state.resultRingAccepted = refusal == nil
            state.resultRingRefusal = refusal
        }
    }

    /// The largest frame the server accepts, once the handshake is done.
    var maxFrameSize: Int { outgoingFrameLimit.load(ordering: .relaxed) }

    /// Why the connection is unusable, or nil while it works.
    var failure: AirlockError? { state.withLock { $0.failure } }

    // MARK: - Handshake

    /// Sends `HELLO` and waits for `HELLO_ACK` (the reader thread must be running).
    func handshake(clientName: String) async -> Result<HelloAck, AirlockError> {
        let answer = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<HelloAck, AirlockError>, Never>) in
            let early: AirlockError? = state.withLock { state in
                if let failure = state.failure { return failure }
                state.handshake = continuation
                return nil
            }
            if let early {
                continuation.resume(returning: .failure(early))
                return
            }
            if let error = write(Frame(operationID: 0, message: .hello(Hello(clientName: clientName)))) {
                failAll(error)
            }
        }
        if case .success(let ack) = answer {
            outgoingFrameLimit.store(Int(ack.maxFrameSize), ordering: .relaxed)
        }
        return answer
    }

    // MARK: - Requests

    private func allocateOperationID() -> UInt64 {
        nextOperationID.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    /// Sends `message` as a new operation and waits for the frame that ends it. An
    /// `OPERATION_COMPLETE` with an error code, or an `ERROR`, is returned as a failure.
    /// Cancelling the calling task sends `CANCEL`; the operation then completes as the
    /// server decides (normally `ERROR_OPERATION_ABORTED`).
    func perform(_ message: Message, shellID: UInt64 = 0, commandID: UInt64 = 0) async -> Answer {
        let id = allocateOperationID()
        let request = message.type
        let refused: AirlockError? = state.withLock { state in
            if let failure = state.failure { return failure }
            state.operations[id] = PendingOperation(waiter: .unattached, request: request, shellID: shellID, commandID: commandID)
            return nil
        }
        if let refused { return .failure(refused) }
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Answer, Never>) in
                let early: AirlockError? = state.withLock { state in
                    guard var operation = state.operations[id] else {
                        return state.failure ?? .closedByClient(socketPath: socketPath)
                    }
                    if let failure = state.failure {
                        state.operations[id] = nil
                        return failure
                    }
                    if case .cancelledUnattached = operation.waiter {
                        state.operations[id] = nil
                        return .cancelledBeforeSending
                    }
                    operation.waiter = .task(continuation)
                    state.operations[id] = operation
                    return nil
                }
                if let early {
                    continuation.resume(returning: .failure(early))
                    return
                }
                readSide.wakeReader()
                if let error = write(Frame(operationID: id, message: message)) {
                    complete(id, with: .failure(error))
                }
            }
        } onCancel: {
            cancel(id)
        }
    }

    /// Like ``perform(_:shellID:commandID:)`` but blocks the calling thread. Never call it
    /// from a Swift concurrency pool thread.
    func performBlocking(_ message: Message, shellID: UInt64 = 0, commandID: UInt64 = 0) -> Answer {
        let answer = performBlocking(request: message.type, shellID: shellID, commandID: commandID, completesInPlace: false) { writer, id in
            Frame(operationID: id, message: message).encode(into: &writer)
        }
        // Without completesInPlace every answer comes as an Answer.
        return answer ?? .success(.operationComplete(OperationComplete(errorCode: WSManError.noError)))
    }

    /// A blocking request whose successful answer carries nothing the caller reads (a
    /// `SIGNAL`, a `SEND`): `encodeFrame` appends the whole request frame, given its
    /// operation id, to the empty writer (see ``ClientFrames``). Returns nil when the
    /// operation succeeded, or why it failed, exactly as
    /// ``performBlocking(_:shellID:commandID:)`` would have.
    ///
    /// When this thread reads its own answer and it is an `OPERATION_COMPLETE` without an
    /// error, the answer is checked in place in the decoder and the operation ends there:
    /// no ``Frame``, ``Message`` or ``Answer`` is made, and nothing is handed over through
    /// the waiter.
    func performBlockingCompletion(
        request: MessageType, shellID: UInt64, commandID: UInt64, encodeFrame: (inout ByteWriter, UInt64) -> Void
    ) -> AirlockError? {
        switch performBlocking(request: request, shellID: shellID, commandID: commandID, completesInPlace: true, encodeFrame: encodeFrame) {
        case nil, .success?: nil
        case .failure(let error)?: error
        }
    }

    /// The blocking call of ``performBlocking(_:shellID:commandID:)`` and
    /// ``performBlockingCompletion(request:shellID:commandID:encodeFrame:)``: registers the
    /// operation, sends the frame `encodeFrame` writes, and either reads the socket itself
    /// (when the reader thread is parked, see ``ReadSide``) or waits for the reader thread
    /// to hand it the answer. Returns nil only when `completesInPlace` and the answer was a
    /// successful `OPERATION_COMPLETE` taken in place.
    private func performBlocking(
        request: MessageType, shellID: UInt64, commandID: UInt64, completesInPlace: Bool,
        encodeFrame: (inout ByteWriter, UInt64) -> Void
    ) -> Answer? {
        let id = allocateOperationID()
        // One critical section takes the kept waiter and registers the operation. (A new
        // waiter is made inside it only when another blocking call holds the kept one.)
        let (registered, refused) = state.withLock { state -> (BlockingWaiter?, AirlockError?) in
            if let failure = state.failure { return (nil, failure) }
            let waiter = state.idleWaiter.take() ?? BlockingWaiter()
            state.operations[id] = PendingOperation(waiter: .thread(waiter), request: request, shellID: shellID, commandID: commandID)
            return (waiter, nil)
        }
        guard let waiter = registered else { return .failure(refused!) }
        let readsItself = readSide.takeForCaller()
        if let error = writeFrame(request, { encodeFrame(&$0, id) }) {
            complete(id, with: .failure(error))
        }
        if readsItself {
            // The reader thread is parked: read and route frames here until ours is answered.
            var ended = false
            var own = OwnAnswer(operationID: completesInPlace ? id : 0, waiter: waiter)
            while !waiter.semaphore.tryWait() {
                if readAndRoute(own: &own) != nil {
                    ended = true
                    break
                }
                if own.taken { break }
            }
            if own.taken {
                // Answered in place: the operation left the table and the waiter went back
                // to it in the same critical section (it is not touched again here).
                readSide.releaseFromCaller(wakeReader: ended || own.othersInFlight)
                return nil
            }
            let othersInFlight = state.withLock { !$0.operations.isEmpty }
            readSide.releaseFromCaller(wakeReader: ended || othersInFlight)
            // When reading ended, the reader thread fails every operation, this one too.
            if ended { waiter.semaphore.wait() }
        } else {
            waiter.semaphore.wait()
        }
        let answer = waiter.takeAnswer()
        state.withLock { if $0.idleWaiter == nil { $0.idleWaiter = waiter } }
        return answer
    }

    /// Sends a `RECEIVE` (or any request answered by a series of `RECEIVE_RESULT`s) and
    /// returns its results as a stream. Ending the stream early (the consuming task is
    /// cancelled or the iterator dropped) sends `CANCEL`.
    func openStream(_ message: Message, shellID: UInt64, commandID: UInt64) -> AsyncThrowingStream<OutputChunk, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: OutputChunk.self)
        let id = allocateOperationID()
        continuation.onTermination = { [self] termination in
            if case .cancelled = termination { cancel(id) }
        }
        let request = message.type
        let refused: AirlockError? = state.withLock { state in
            if let failure = state.failure { return failure }
            state.operations[id] = PendingOperation(waiter: .stream(StreamSink(continuation)), request: request, shellID: shellID, commandID: commandID)
            return nil
        }
        if let refused {
            continuation.finish(throwing: refused)
            return stream
        }
        offerResultRingIfNeeded()
        readSide.wakeReader()
        if let error = write(Frame(operationID: id, message: message)) {
            complete(id, with: .failure(error))
        }
        return stream
    }

    /// Sends a `RECEIVE` whose results the calling thread takes with ``BlockingOutput/next()``
    /// (see ``readForBlockingStream(_:connectionEnded:)``).
    func openBlockingStream(_ message: Message, shellID: UInt64, commandID: UInt64) -> BlockingOutput {
        let sink = BlockingStreamSink()
        let id = allocateOperationID()
        let request = message.type
        let refused: AirlockError? = state.withLock { state in
            if let failure = state.failure { return failure }
            state.operations[id] = PendingOperation(waiter: .readingThread(sink), request: request, shellID: shellID, commandID: commandID)
            return nil
        }
        if refused == nil { offerResultRingIfNeeded() }
        if let refused {
            sink.finish(refused)
        } else if let error = write(Frame(operationID: id, message: message)) {
            complete(id, with: .failure(error))
        }
        return BlockingOutput(core: self, operationID: id, sink: sink)
    }

    /// For ``BlockingOutput/next()``, which found no result in `sink`: when nobody reads the
    /// socket, receives once and routes what came (results of this Receive go to `sink`,
    /// anything else where it belongs), then gives the socket back. Returns false when
    /// another thread reads; the caller then waits on `sink`, which that thread fills, or
    /// nudges when it parks with the socket free. `connectionEnded` is set when reading
    /// ended here: the reader thread then fails every operation, `sink`'s too.
    func readForBlockingStream(_ sink: BlockingStreamSink, connectionEnded: inout Bool) -> Bool {
        guard readSide.takeForCaller() else { return false }
        sink.stopWaiting()
        let ending = readAndRoute()
        // The reader thread is needed at once when the connection ended, or when an
        // operation in flight is not one whose own consumer reads.
        let othersInFlight = ending == nil && state.withLock { Self.selfReadingSinks(of: $0.operations) == nil }
        readSide.releaseFromCaller(wakeReader: ending != nil || othersInFlight)
        if ending != nil { connectionEnded = true }
        return true
    }

    /// A ``BlockingOutput`` released before its end: the reader thread takes over its
    /// results (until the Receive completes), and the server is asked to cancel it.
    func abandonBlockingStream(_ id: UInt64, _ sink: BlockingStreamSink) {
        sink.abandoned.store(true, ordering: .relaxed)
        readSide.wakeReader()
        cancel(id)
    }

    /// Asks the server to cancel operation `id` (no-op when it is not in flight).
    func cancel(_ id: UInt64) {
        let sendCancel: Bool = state.withLock { state in
            guard var operation = state.operations[id] else { return false }
            switch operation.waiter {
            case .unattached:
                operation.waiter = .cancelledUnattached
                state.operations[id] = operation
                return false
            case .cancelledUnattached, .resultRingOffer:
                return false
            case .task, .thread, .stream, .readingThread:
                return true
            }
        }
        if sendCancel {
            _ = write(Frame(operationID: id, message: .cancel))
        }
    }

    // MARK: - Shell and command events

    /// The monitor of shell `shellID`'s `SHELL_CLOSED` event (shared by every ``Shell``
    /// object for that id on this connection).
    func shellMonitor(_ shellID: UInt64) -> EndMonitor {
        state.withLock { state in
            if let monitor = state.shells[shellID] { return monitor }
            let monitor = EndMonitor()
            state.shells[shellID] = monitor
            return monitor
        }
    }

    /// The monitor of a command's `COMMAND_ENDED` event.
    func commandMonitor(shellID: UInt64, commandID: UInt64) -> EndMonitor {
        let key = CommandKey(shellID: shellID, commandID: commandID)
        return state.withLock { state in
            if let monitor = state.commands[key] { return monitor }
            let monitor = EndMonitor()
            state.commands[key] = monitor
            return monitor
        }
    }

    /// Stops tracking a shell this client closed.
    func forgetShell(_ shellID: UInt64) {
        state.withLock { state in
            state.shells[shellID] = nil
            state.commands = state.commands.filter { $0.key.shellID != shellID }
        }
    }

    // MARK: - Writing

    /// Encodes and sends one frame whole. Returns why it could not be sent, if so; a failed
    /// send shuts the socket down, so the reader fails every operation in flight.
    func write(_ frame: Frame) -> AirlockError? {
        writeFrame(frame.message.type) { frame.encode(into: &$0) }
    }

    /// Sends the frame of type `type` that `encode` appends to the (empty) kept writer, as
    /// ``write(_:)`` does.
    private func writeFrame(_ type: MessageType, passing descriptor: FileDescriptor? = nil, _ encode: (inout ByteWriter) -> Void) -> AirlockError? {
        let limit = outgoingFrameLimit.load(ordering: .relaxed)
        return writer.withLock { writer -> AirlockError? in
            if let reason = writer.closedReason { return reason }
            writer.buffer.removeAll(keepingCapacity: 1 << 20)
            encode(&writer.buffer)
            if writer.buffer.count > limit {
                return AirlockError(
                    code: WSManError.maxEnvelopeSizeExceeded,
                    message: "a \(type.wireName) request of \(writer.buffer.count) bytes exceeds the maximum frame size of \(limit) bytes that airlockd accepts")
            }
            let failure: SystemCallError? = writer.buffer.withUnsafeBytes { bytes -> SystemCallError? in
                var offset = 0
                while offset < bytes.count {
                    do throws(SystemCallError) {
                        let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
                        // A passed descriptor travels with the frame's first byte.
                        let sent = if offset == 0, let descriptor {
                            try Posix.send(fd, rest, passing: descriptor)
                        } else {
                            try Posix.send(fd, rest)
                        }
                        guard let sent else { continue }
                        offset += sent
                    } catch {
                        return error
                    }
                }
                return nil
            }
            if let failure {
                let reason = AirlockError.connectionLost(socketPath: socketPath, "\(failure)")
                writer.closedReason = reason
                try? UnixSocket.shutdown(fd, .both)
                return reason
            }
            return nil
        }
    }

    /// Fails every operation with `reason` and shuts the socket down; the reader thread then
    /// closes it.
    func close(reason: AirlockError) {
        failAll(reason)
        writer.withLock { writer in
            if writer.closedReason == nil { writer.closedReason = reason }
            if !writer.descriptorClosed { try? UnixSocket.shutdown(fd, .both) }
        }
        readSide.wakeReader()
    }

    // MARK: - Reading (the reader thread)

    /// The reader thread's body: reads frames until the connection ends, routes each to its
    /// operation, and finally fails whatever is still in flight and closes the socket.
    /// After answering a blocking caller with nothing else in flight it parks, so the next
    /// blocking caller reads its own answer (see ``ReadSide``).
    func readLoop() {
        let read = readSide
        reading: while read.ending == nil {
            if !read.handshakeDone {
                do {
                    let ready = try Posix.poll(fd, for: [.input], timeoutMilliseconds: Self.handshakeTimeoutMilliseconds)
                    if ready.isEmpty {
                        read.ending = AirlockError(
                            kind: .protocolViolation, code: WSManError.operationTimedOut,
                            message: "airlockd at \(socketPath) did not answer HELLO within \(Self.handshakeTimeoutMilliseconds / 1000) seconds (is this an airlockd socket?)")
                        break reading
                    }
                } catch {
                    read.ending = .connectionLost(socketPath: socketPath, "\(error)")
                    break reading
                }
            }
            if readAndRoute() != nil { break reading }
            if read.handshakeDone && servedBlockingThread.load(ordering: .relaxed), let consumers = consumersReadingThemselves() {
                servedBlockingThread.store(false, ordering: .relaxed)
                // While only blocking outputs whose consumers read are in flight, the reader
                // thread does not read for them when they pause: a consumer that has not
                // taken its results yet gets no more of them (the server then stops sending,
                // and the plug-in waits), rather than an ever longer queue in memory.
                read.parkReader(nudging: consumers) { consumersReadingThemselves()?.isEmpty ?? true }
            }
        }
        let ending = read.ending!
        failAll(ending)
        writer.withLock { writer in
            if writer.closedReason == nil { writer.closedReason = ending }
            if !writer.descriptorClosed {
                writer.descriptorClosed = true
                try? Posix.close(fd)
            }
        }
    }

    /// Whether the reader thread may park, having just answered a blocking caller: when
    /// nothing is in flight (and no frame is half read), or when everything in flight is a
    /// ``BlockingOutput`` whose consumer reads the socket itself. Returns those consumers'
    /// sinks (none in the first case), to be nudged once the socket is free; nil when the
    /// reader thread must go on reading.
    private func consumersReadingThemselves() -> [BlockingStreamSink]? {
        let halfRead = readSide.decoder.bufferedByteCount > 0
        return state.withLock { state -> [BlockingStreamSink]? in
            guard state.failure == nil else { return nil }
            if state.operations.isEmpty { return halfRead ? nil : [] }
            return Self.selfReadingSinks(of: state.operations)
        }
    }

    /// The sinks of the operations in flight when every one is a ``BlockingOutput`` whose
    /// consumer reads the socket itself (none when nothing is in flight); nil otherwise.
    private static func selfReadingSinks(of operations: OperationTable) -> [BlockingStreamSink]? {
        var sinks: [BlockingStreamSink] = []
        let all = operations.allSatisfy { operation in
            guard let sink = operation.waiter.selfReadingSink else { return false }
            sinks.append(sink)
            return true
        }
        return all ? sinks : nil
    }

    /// What a blocking caller reading its own answer learns from ``readAndRoute(own:)``.
    private struct OwnAnswer {
        /// The caller's operation, whose successful `OPERATION_COMPLETE` is taken in place;
        /// 0 for none.
        let operationID: UInt64
        /// The caller's waiter, given back to the connection when the answer is taken.
        let waiter: BlockingWaiter?
        /// Set when the answer was taken in place and the operation ended with it.
        var taken = false
        /// Whether other operations were in flight when it ended.
        var othersInFlight = false
    }

    /// ``readAndRoute(own:)`` for the reader thread.
    private func readAndRoute() -> AirlockError? {
        var none = OwnAnswer(operationID: 0, waiter: nil)
        return readAndRoute(own: &none)
    }

    /// Receives once (blocking) and routes every complete frame; by the thread that owns
    /// the reading side. Returns (and records in the read side) why the connection must
    /// end, if it must. A successful `OPERATION_COMPLETE` for `own.operationID` is checked
    /// in place and ends that operation in its turn among the frames, without being decoded
    /// (see ``FrameDecoder/takeSuccessfulCompletion(of:)``).
    private func readAndRoute(own: inout OwnAnswer) -> AirlockError? {
        let read = readSide
        if let ending = read.ending { return ending }
        // Sleep in poll(POLLIN), not in recv: a thread blocked in recv on a stream socket
        // is also woken each time airlockd reads what this side sent (the kernel's
        // write-space wake-up), one useless context switch per request; poll's wake-up
        // filters on the events asked for. In the middle of a frame (a stream of output
        // whose last receive ended inside a result) the rest is on its way, and while
        // large results arrive the next one likely is: receive at once, one system call
        // less per receive.
        if !read.decoder.isMidFrame && !read.receivingOutput {
            do throws(SystemCallError) {
                _ = try Posix.poll(fd, for: [.input], timeoutMilliseconds: -1)
            } catch {
                read.ending = .connectionLost(socketPath: socketPath, "\(error)")
                return read.ending
            }
        }
        // Every complete frame is decoded first and then routed in order: a stream's
        // consumer, woken by the first result, finds the others of this receive already
        // queued, instead of being woken again for each one while the next is decoded.
        var frames = read.takeFrameList()
        var malformed: ProtocolError?
        var receiveEnding: AirlockError?
        // Where the caller's own answer, taken in place, comes among the frames (-1: not
        // in this receive).
        var ownIndex = -1
        var flags: Posix.MessageFlags = []
        var received = 0
        receiving: while true {
            switch receiveOnce(read, flags: flags) {
            case .bytes(let count): received += count
            case .nothingQueued: break receiving
            case .ended(let reason):
                receiveEnding = reason
                break receiving
            }
            let decodedBefore = frames.count
            do throws(ProtocolError) {
                while true {
                    if own.operationID != 0 && ownIndex < 0 && read.decoder.takeSuccessfulCompletion(of: own.operationID) {
                        ownIndex = frames.count
                        continue
                    }
                    guard let frame = try read.decoder.next() else { break }
                    if case .helloAck(let ack) = frame.message, !read.handshakeDone {
                        read.decoder.maxFrameSize = Int(ack.maxFrameSize)
                        read.handshakeDone = true
                    }
                    frames.append(frame)
                }
            } catch {
                malformed = error
                break receiving
            }
            // A large result is likely followed by another: then the next receives take only
            // the start of the next frame, so that its data can be set aside.
            if frames.count > decodedBefore { read.receivingOutput = ReadSide.isLargeResult(frames[frames.count - 1]) }
            // While large results arrive one after another (each received into its own
            // array, a few per receive at most), the ones already queued are taken too
            // before any is routed, up to what one large receive would take: the consumer
            // is still woken once for several.
            guard read.receivingOutput && received < ReadSide.largestReceive else { break }
            flags = .dontWait
        }
        var ending: AirlockError?
        for index in frames.indices {
            if index == ownIndex { takeOwnAnswer(&own) }
            ending = route(frames[index])
            if ending != nil { break }
        }
        if ending == nil && ownIndex == frames.count { takeOwnAnswer(&own) }
        read.returnFrameList(&frames)
        if ending == nil, let malformed { ending = .protocolViolation(malformed, socketPath: socketPath) }
        if ending == nil { ending = receiveEnding }
        if let ending { read.ending = ending }
        return ending
    }

    /// What one ``receiveOnce(_:flags:)`` brought.
    private enum Received {
        /// This many bytes are in the decoder.
        case bytes(Int)
        /// Nothing was queued (a non-blocking receive).
        case nothingQueued
        /// The connection ended: airlockd closed it, or the receive failed.
        case ended(AirlockError)
    }

    /// Receives once, straight into the decoder's storage (no copy between a receive buffer
    /// and it). When the next frame is a large result, its data is received into an array
    /// of its own (``FrameDecoder/setAsideResultData(minimumMissing:)``) and the receive
    /// takes little beyond it; so does the receive after such a result (the next one is
    /// likely another).
    private func receiveOnce(_ read: ReadSide, flags: Posix.MessageFlags) -> Received {
        let intoSetAside = read.handshakeDone && read.decoder.setAsideResultData(minimumMissing: ReadSide.setAsideMinimum)
            && read.decoder.missingSetAsideByteCount > 0
        if intoSetAside { read.receivingOutput = true }
        // While results with large data arrive, a receive takes little until the next
        // frame's start is in: enough to set its data aside.
        let capacity = intoSetAside || (read.receivingOutput && read.decoder.bufferedByteCount < ReadSide.receiveBeyondSetAside)
            ? ReadSide.receiveBeyondSetAside : read.receiveSize
        var failure: SystemCallError?
        var wouldBlock = false
        let count = read.decoder.receive(upTo: capacity) { data, space in
            do throws(SystemCallError) {
                let received = data.isEmpty
                    ? try Posix.receive(fd, into: space, flags: flags) : try Posix.receive(fd, into: data, space, flags: flags)
                guard let received else {
                    wouldBlock = true
                    return 0
                }
                return received
            } catch {
                failure = error
                return 0
            }
        }
        if let failure { return .ended(.connectionLost(socketPath: socketPath, "\(failure)")) }
        if wouldBlock { return .nothingQueued }
        if count == 0 {
            return .ended(.connectionLost(
                socketPath: socketPath, read.decoder.isMidFrame ? "airlockd closed the socket in the middle of a frame" : "airlockd closed the socket"))
        }
        if capacity == read.receiveSize && count == capacity && capacity < ReadSide.largestReceive { read.receiveSize = capacity * 2 }
        return .bytes(count)
    }

    /// Ends the caller's own operation with the successful answer taken in place, unless
    /// something ended it already (a failure of the connection, a `SHELL_CLOSED` routed
    /// before): that delivered its answer through the waiter, which the caller then takes.
    private func takeOwnAnswer(_ own: inout OwnAnswer) {
        let id = own.operationID
        let waiter = own.waiter
        let othersInFlight: Bool? = state.withLock { state in
            guard state.operations.removeValue(forKey: id) != nil else { return nil }
            if state.idleWaiter == nil { state.idleWaiter = waiter }
            return !state.operations.isEmpty
        }
        guard let othersInFlight else { return }
        servedBlockingThread.store(true, ordering: .relaxed)
        own.taken = true
        own.othersInFlight = othersInFlight
    }

    /// Routes one frame; returns an error when the connection must end.
    private func route(_ frame: Frame) -> AirlockError? {
        if frame.operationID == 0 { return routeConnectionFrame(frame.message) }
        let id = frame.operationID
        if case .receiveResultInRing(let inRing) = frame.message {
            return routeResultInRing(inRing, operation: id, final: frame.flags.contains(.final))
        }
        if frame.flags.contains(.final) {
            switch frame.message {
            case .operationComplete(let complete) where complete.errorCode != WSManError.noError:
                self.complete(id, with: .failure(AirlockError(
                    code: complete.errorCode, extendedInformation: complete.extendedInformation, message: complete.message)))
            case .error(let report):
                self.complete(id, with: .failure(AirlockError(code: report.errorCode, message: report.message)))
            default:
                self.complete(id, with: .success(frame.message))
            }
            return nil
        }
        switch frame.message {
        case .receiveResult(let result):
            deliver(result, to: state.withLock { $0.operations[id]?.waiter })
            return nil
        case .ping(let token):
            return write(Frame(operationID: id, flags: .final, message: .pong(token: token)))
        default:
            return AirlockError(
                kind: .protocolViolation, code: WSManError.invalidParameter,
                message: "airlockd at \(socketPath) sent \(frame.message.type.wireName) for operation \(id) without the FINAL flag")
        }
    }

    /// A `RECEIVE_RESULT_IN_RING`: its bytes are checked and copied out of the result ring,
    /// the ring is released a batch at a time, and the result goes where a
    /// `RECEIVE_RESULT` would.
    private func routeResultInRing(_ inRing: RingReceiveResult, operation id: UInt64, final: Bool) -> AirlockError? {
        let (ring, waiter) = state.withLock { ($0.resultRing, $0.operations[id]?.waiter) }
        guard let ring, !final else {
            return AirlockError(
                kind: .protocolViolation, code: WSManError.invalidParameter,
                message: "airlockd at \(socketPath) sent RECEIVE_RESULT_IN_RING " + (final ? "with the FINAL flag" : "on a connection without a result ring"))
        }
        do throws(ProtocolError) {
            // Results of an operation nobody waits for any more (cancelled, abandoned) are
            // checked and released like the others, but not copied out.
            if waiter == nil {
                _ = try ring.cursor.accept(position: inRing.position, length: inRing.length)
            } else {
                deliver(try ring.take(inRing), to: waiter)
            }
        } catch {
            return .protocolViolation(error, socketPath: socketPath)
        }
        if let position = ring.cursor.releaseRead(batch: ring.releaseBatch) {
            return write(Frame(operationID: 0, message: .releaseResultRing(position: position)))
        }
        return nil
    }

    /// Hands a `RECEIVE_RESULT` to the consumer of its operation's output, if any.
    private func deliver(_ result: ReceiveResult, to waiter: Waiter?) {
        switch waiter {
        case .stream(let sink)?:
            sink.continuation.yield(OutputChunk(result))
        case .readingThread(let sink)?:
            servedBlockingThread.store(true, ordering: .relaxed)
            sink.deliver(OutputChunk(result))
        default:
            break
        }
    }

    private func routeConnectionFrame(_ message: Message) -> AirlockError? {
        switch message {
        case .helloAck(let ack):
            let continuation = state.withLock { state in
                defer { state.handshake = nil }
                return state.handshake
            }
            guard let continuation else {
                return AirlockError(kind: .protocolViolation, code: WSManError.invalidParameter, message: "airlockd at \(socketPath) sent a second HELLO_ACK")
            }
            continuation.resume(returning: .success(ack))
            return nil
        case .error(let report):
            let refusedHandshake = state.withLock { $0.handshake != nil }
            let verb = refusedHandshake ? "refused the connection" : "reported a protocol error and closed the connection"
            return AirlockError(kind: .protocolViolation, code: report.errorCode, message: "airlockd at \(socketPath) \(verb): \(report.message)")
        case .ping(let token):
            return write(Frame(operationID: 0, flags: .final, message: .pong(token: token)))
        case .shellClosed(let event):
            shellClosed(event)
            return nil
        case .commandEnded(let event):
            commandEnded(event)
            return nil
        default:
            return AirlockError(
                kind: .protocolViolation, code: WSManError.invalidParameter,
                message: "airlockd at \(socketPath) sent \(message.type.wireName) on operation 0")
        }
    }

    private func shellClosed(_ event: ShellClosed) {
        let notice = EndNotice(errorCode: event.errorCode, extendedInformation: event.extendedInformation, message: event.message)
        let failure = event.errorCode == WSManError.noError ? nil : AirlockError(
            code: event.errorCode, extendedInformation: event.extendedInformation,
            message: "shell \(event.shellID) was closed" + (event.message.isEmpty ? "" : ": \(event.message)"))
        let (monitors, victims) = state.withLock { state -> ([EndMonitor], [PendingOperation]) in
            var monitors: [EndMonitor] = []
            if let shell = state.shells.removeValue(forKey: event.shellID) { monitors.append(shell) }
            for (key, monitor) in state.commands where key.shellID == event.shellID {
                monitors.append(monitor)
                state.commands[key] = nil
            }
            guard failure != nil else { return (monitors, []) }
            return (monitors, Self.removeOperations(from: &state) { $0.shellID == event.shellID && $0.request != .closeShell })
        }
        for monitor in monitors { monitor.record(notice) }
        if let failure { for victim in victims { Self.resume(victim.waiter, with: .failure(failure)) } }
    }

    private func commandEnded(_ event: CommandEnded) {
        let notice = EndNotice(errorCode: event.errorCode, extendedInformation: event.extendedInformation, message: event.message)
        let failure = event.errorCode == WSManError.noError ? nil : AirlockError(
            code: event.errorCode, extendedInformation: event.extendedInformation,
            message: "command \(event.commandID) of shell \(event.shellID) ended" + (event.message.isEmpty ? "" : ": \(event.message)"))
        let key = CommandKey(shellID: event.shellID, commandID: event.commandID)
        let (monitor, victims) = state.withLock { state -> (EndMonitor?, [PendingOperation]) in
            let monitor = state.commands.removeValue(forKey: key)
            guard failure != nil else { return (monitor, []) }
            return (monitor, Self.removeOperations(from: &state) { $0.shellID == event.shellID && $0.commandID == event.commandID })
        }
        monitor?.record(notice)
        if let failure { for victim in victims { Self.resume(victim.waiter, with: .failure(failure)) } }
    }

    private static func removeOperations(from state: inout State, where matches: (PendingOperation) -> Bool) -> [PendingOperation] {
        state.operations.removeAll { $0.waiter.isAttached && matches($0) }
    }

    // MARK: - Completion

    /// Ends operation `id` with `answer` (no-op when it already ended).
    private func complete(_ id: UInt64, with answer: consuming Answer) {
        guard let operation = state.withLock({ $0.operations.removeValue(forKey: id) }) else { return }
        switch operation.waiter {
        case .thread, .readingThread: servedBlockingThread.store(true, ordering: .relaxed)
        case .resultRingOffer: return resultRingAnswered(answer)
        default: break
        }
        Self.resume(operation.waiter, with: answer)
    }

    private static func resume(_ waiter: consuming Waiter, with answer: consuming Answer) {
        switch waiter {
        case .unattached, .cancelledUnattached, .resultRingOffer:
            break
        case .task(let continuation):
            continuation.resume(returning: answer)
        case .thread(let blocked):
            blocked.deliver(answer)
        case .stream(let sink):
            let (last, failure) = receiveEnding(answer)
            if let last { sink.continuation.yield(last) }
            if let failure { sink.continuation.finish(throwing: failure) } else { sink.continuation.finish() }
        case .readingThread(let sink):
            let (last, failure) = receiveEnding(answer)
            if let last { sink.deliver(last) }
            sink.finish(failure)
        }
    }

    /// What the frame that ends a `RECEIVE` means to its consumer: a last result (a final
    /// `RECEIVE_RESULT`), and the failure it ends with, if any.
    private static func receiveEnding(_ answer: consuming Answer) -> (last: OutputChunk?, failure: AirlockError?) {
        switch answer {
        case .failure(let error): (nil, error)
        case .success(.operationComplete): (nil, nil)
        case .success(.receiveResult(let result)): (OutputChunk(result), nil)
        case .success(let other): (nil, .unexpectedAnswer(other, to: .receive))
        }
    }

    /// Marks the connection failed and ends every attached operation with `reason`.
    private func failAll(_ reason: AirlockError) {
        let (operations, handshake) = state.withLock { state -> ([PendingOperation], UnsafeContinuation<Result<HelloAck, AirlockError>, Never>?) in
            if state.failure == nil { state.failure = reason }
            let handshake = state.handshake
            state.handshake = nil
            return (Self.removeOperations(from: &state) { _ in true }, handshake)
        }
        let failure = state.withLock { $0.failure! }
        handshake?.resume(returning: .failure(failure))
        for operation in operations { Self.resume(operation.waiter, with: .failure(failure)) }
    }
}
