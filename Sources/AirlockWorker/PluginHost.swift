import AirlockPosix
import AirlockProtocol
import CAirlockShims
import CWSMan
import Glibc
import Synchronization

/// The host side of one loaded plug-in: the operations it serves, the contexts it
/// reported, and the state every host callback checks.
///
/// One lock (``HostLock``) guards all of it; it is never held while calling into the
/// plug-in, and frames are sent outside it.
final class PluginHost: @unchecked Sendable {
    /// The host of this process, set once before the library is loaded: the exported
    /// host callbacks reach it through this.
    nonisolated(unsafe) static var current: PluginHost?

    let pluginName: String
    let channel: WorkerChannel
    /// The largest frame the supervisor accepts (`W_START.maxEnvelopeSize`).
    let maxEnvelopeSize: Int
    /// The largest frame this worker sends: the envelope, or less when a ring of the
    /// channel cannot carry that much whole.
    private(set) var maxFrameSize: Int
    /// Per-operation window of result bytes not yet credited.
    let outputWindow: Int
    let dropOutput: Bool
    /// GetConfiguration answers, text and bytes in permanent storage.
    private let configuration: [UInt32: WSMAN_DATA]

    /// Set before Startup and never changed afterwards.
    var library = PluginLibrary()
    /// What Startup returned (written before ``startupFinished`` is set).
    var pluginContext: UnsafeMutableRawPointer?
    /// Cleared once Startup has returned: until then any plug-in context is accepted.
    let startupFinished = Atomic<Bool>(false)
    /// Set just before `WSManPluginShutdown` is called: every callback is refused.
    let shutdownCalled = Atomic<Bool>(false)

    let lock = HostLock()
    // MARK: Guarded by `lock`
    private var operationsByRequest = IntegerTable<Operation>()
    /// Operations not yet completed, by the supervisor's id.
    private var operationsByID = IntegerTable<Operation>()
    /// Cancels that arrived before their operation was registered: several threads read
    /// the channel, so a W_CANCEL can overtake the request it targets. Applied when the
    /// operation registers. Bounded: the oldest are dropped beyond 4096.
    private var earlyCancels: Set<UInt64> = []
    /// Ids of the last ``recentlyFinishedLimit`` finished operations, so a late cancel is
    /// not taken for an early one: a ring from `recentlyFinishedNext`, searched only when a
    /// cancel finds no operation (rare), written once per operation (no hashing).
    private let recentlyFinished = UnsafeMutablePointer<UInt64>.allocate(capacity: PluginHost.recentlyFinishedLimit)
    private var recentlyFinishedCount = 0
    private var recentlyFinishedNext = 0
    /// A power of two (the ring index is masked).
    static let recentlyFinishedLimit = 4096
    /// Operations out of quarantine kept for later requests (``Operation/recycled``), a
    /// list through ``Operation/nextSpare``; a reader takes one after each request it
    /// served. Only operations whose eventfd was never signalled are kept.
    private var spareOperations: Operation?
    /// Recycled operations: those in ``spareOperations`` and those readers hold.
    private var spareCount = 0
    /// At most this many recycled operations (each keeps its eventfd open).
    static let spareLimit = 32
    /// Shells not yet released.
    private var shells = IntegerTable<ShellRecord>()
    /// The reported contexts of those shells.
    private var shellContexts: Set<UInt> = []
    /// Finished operations whose blocks are kept a little longer (a plug-in that reads
    /// a request just after completing it finds valid memory, and the address is not
    /// reused at once, so a stale pointer is recognized as finished).
    /// A ring of ``quarantineLimit`` slots, the oldest at `quarantineHead`.
    private let quarantine: UnsafeMutablePointer<Operation?> = {
        let ring = UnsafeMutablePointer<Operation?>.allocate(capacity: PluginHost.quarantineLimit)
        ring.initialize(repeating: nil, count: PluginHost.quarantineLimit)
        return ring
    }()
    private var quarantineHead = 0
    private var quarantineCount = 0
    private var quarantineBytes = 0
    private var releaseJobs: [ReleaseJob] = []
    private var housekeeperBusy = false
    private var reportedBreaches: Set<String> = []
    private var ownThreads: Set<pid_t> = []
    /// Own threads created and not yet registered.
    private var threadsStarting = 0
    private var shuttingDown = false

    /// At most this many finished blocks, and this many bytes, wait in quarantine (each
    /// keeps its eventfd open, which counts against the sandbox's descriptor limit).
    static let quarantineLimit = 64
    static let quarantineByteLimit = 4 << 20
    /// Room kept in a `W_RESULT` frame for everything but the data.
    static let resultOverhead = 16 + 4 + 5 + 256 + 5 + 5 + 1024 + 4 + 64

    init(start: WorkerStart, channel: WorkerChannel) {
        pluginName = start.plugin
        self.channel = channel
        maxEnvelopeSize = max(Int(start.maxEnvelopeSize), ProtocolLimits.handshakeMaxFrameSize)
        maxFrameSize = maxEnvelopeSize
        outputWindow = max(Int(start.outputWindowBytes), 1)
        dropOutput = start.dropOutput
        var configuration: [UInt32: WSMAN_DATA] = [:]
        for value in start.configuration {
            var data = WSMAN_DATA()
            switch value.value {
            case .none:
                data.type = WSMAN_DATA_NONE
            case .text(let text):
                data.type = WSMAN_DATA_TYPE_TEXT
                data.text = WSMAN_DATA_TEXT(bufferLength: UInt32(text.utf16.count), buffer: WideString.permanent(text))
            case .binary(let bytes):
                let storage = UnsafeMutablePointer<UInt8>.allocate(capacity: max(bytes.count, 1))
                storage.initialize(from: bytes, count: bytes.count)
                data.type = WSMAN_DATA_TYPE_BINARY
                data.binaryData = WSMAN_DATA_BINARY(dataLength: UInt32(bytes.count), data: storage)
            case .dword(let number):
                data.type = WSMAN_DATA_TYPE_DWORD
                data.number = number
            }
            configuration[value.flag] = data
        }
        self.configuration = configuration
    }

    /// Bounds the frames this worker sends by what a ring of the channel carries whole.
    func boundFrameSize() {
        maxFrameSize = min(maxEnvelopeSize, channel.largestFrame)
    }

    /// The largest data one `W_RESULT` carries (`WSMAN_PLUGIN_PARAMS_LARGEST_RESULT_SIZE`).
    var largestResult: Int { max(maxFrameSize - PluginHost.resultOverhead, 1024) }

    // MARK: - Threads

    /// Starts one of the worker's own threads running `body` (which must begin with
    /// ``registerCurrentThread()``); false when `pthread_create` fails.
    func startOwnThread(_ body: @escaping () -> Void) -> Bool {
        lock.withLock { threadsStarting += 1 }
        if WorkerThread.start(body) { return true }
        lock.withLock { threadsStarting -= 1 }
        return false
    }

    /// Records the calling thread as one of the worker's own (not the plug-in's).
    func registerCurrentThread(started: Bool = true) {
        let tid = ProcessControl.threadID()
        lock.withLock {
            ownThreads.insert(tid)
            if started && threadsStarting > 0 {
                threadsStarting -= 1
                lock.broadcastChange()
            }
        }
    }

    /// Threads of this process that are not the worker's own: the plug-in's.
    func foreignThreadCount() -> Int {
        // A thread of ours that is starting right now is not the plug-in's: let it register.
        let deadline = HostLock.monotonicNow() + 1_000_000_000
        let own = lock.withLock {
            while threadsStarting > 0 && lock.waitForChange(until: deadline) {}
            return ownThreads
        }
        guard let threads = Posix.numericEntries(of: "/proc/self/task") else {
            WorkerLog.write("cannot list /proc/self/task: \(String(cString: strerror(errno)))")
            return 0
        }
        return threads.count(where: { !own.contains($0) })
    }

    // MARK: - Breaches

    /// Reports that the plug-in broke the API contract: logged and sent as `W_BREACH`
    /// the first time `kind` happens, silently counted afterwards.
    func breach(_ kind: String, _ message: @autoclosure () -> String) {
        let first = lock.withLock { reportedBreaches.insert(kind).inserted }
        guard first else { return }
        let text = "plug-in \(pluginName): \(message())"
        WorkerLog.write("contract breach: \(text)")
        channel.send(.workerBreach(message: WideString.truncated(text, maximumBytes: 4000)))
    }

    /// What a request pointer from the plug-in refers to.
    private enum Lookup {
        case found(Operation)
        case null
        case unknown(UInt)
        /// Completed (OperationComplete was called): its description, taken under the
        /// lock (the operation may be recycled once the lock is released).
        case completed(String)
    }

    /// Finds the operation of `request` without ever dereferencing it (lock held).
    private func lookUp(_ request: RequestPointer?) -> Lookup {
        guard let request else { return .null }
        let address = UInt(bitPattern: request)
        guard let operation = operationsByRequest[UInt64(address)], !operation.recycled else { return .unknown(address) }
        return operation.completed ? .completed(operation.description) : .found(operation)
    }

    /// The live (not completed) operation of `request`, or `nil` (then ``lookUp(_:)`` says
    /// why); never dereferences it (lock held). The callbacks' fast path: no enum to copy.
    @inline(__always)
    private func liveOperation(_ request: RequestPointer?) -> Operation? {
        guard let request, let operation = operationsByRequest[UInt64(UInt(bitPattern: request))],
              !operation.recycled, !operation.completed else { return nil }
        return operation
    }

    /// Reports a request pointer that does not name a live operation; returns
    /// `ERROR_INVALID_PARAMETER` for the callback to return.
    private func refuse(_ lookup: Lookup, _ callback: String) -> UInt32 {
        switch lookup {
        case .null:
            breach("\(callback): NULL", "\(callback) was called with a NULL request pointer")
        case .unknown(let address):
            breach("\(callback): unknown", "\(callback) was called with an unknown request pointer 0x\(String(address, radix: 16)) (not a request this host passed to the plug-in)")
        case .completed(let description):
            if callback == "WSManPluginOperationComplete" {
                breach("\(callback): twice", "WSManPluginOperationComplete was called twice for the request of \(description)")
            } else {
                breach("\(callback): after completion", "\(callback) was called with the request of \(description) after WSManPluginOperationComplete")
            }
        case .found:
            break
        }
        return WSManError.invalidParameter
    }

    /// True (and a breach is reported, once) when `WSManPluginShutdown` has been called.
    private func refusedAfterShutdown(_ callback: String) -> Bool {
        guard shutdownCalled.load(ordering: .acquiring) else { return false }
        breach("after shutdown", "\(callback) was called after WSManPluginShutdown (the plug-in must end its threads before Shutdown returns)")
        return true
    }

    // MARK: - Requests from the supervisor

    /// Serves one packet from the supervisor, on the reader thread that received it: an
    /// operation request is read in place (`packet` stays valid until this returns), any
    /// other frame decoded. A malformed frame is fatal.
    ///
    /// `spare` is the calling reader's recycled operation (see ``start(_:kind:spare:)``).
    func serve(_ packet: UnsafeRawBufferPointer, maxFrameSize: Int, spare: inout Operation?) {
        guard let type = WorkerRequestPacket.requestType(of: packet) else {
            handle(channel.decode(packet, maxFrameSize: maxFrameSize))
            return
        }
        let request: WorkerRequestPacket
        do throws(ProtocolError) {
            request = try WorkerRequestPacket(packet: packet, type: type, maxFrameSize: maxFrameSize)
        } catch {
            channel.fatal("protocol violation by the supervisor: \(error.message)")
        }
        handle(request, spare: &spare)
    }

    /// Serves one frame from the supervisor other than an operation request.
    private func handle(_ frame: Frame) {
        switch frame.message {
        case .ping(let token):
            channel.send(.pong(token: token), operation: frame.operationID, final: true)
        case .workerCredit(let bytes):
            credit(operationID: frame.operationID, bytes: Int(bytes))
        case .workerCancel:
            lock.lock()
            // Found and cancelled under one lock: a recycled operation must not be
            // cancelled on behalf of the id it served before.
            if let operation = operationsByID[frame.operationID] {
                cancelAndUnlock(operation)
            } else {
                if !finishedRecently(frame.operationID) {
                    earlyCancels.insert(frame.operationID)
                    if earlyCancels.count > 4096, let oldest = earlyCancels.min() { earlyCancels.remove(oldest) }
                }
                lock.unlock()
            }
        case .workerShutdown(let request):
            shutdown(request, replyTo: frame.operationID)
        default:
            channel.fatal("protocol violation by the supervisor: \(frame.message.type.wireName) is not a message for a worker (or not after W_START)")
        }
    }

    /// Serves one operation request.
    private func handle(_ request: borrowing WorkerRequestPacket, spare: inout Operation?) {
        guard let kind = OperationKind(request.type) else {
            channel.fatal("protocol violation by the supervisor: \(request.type.wireName) is not an operation request")
        }
        if request.operationID == 0 {
            channel.fatal("protocol violation by the supervisor: \(request.type.wireName) with operation id 0")
        }
        start(request, kind: kind, spare: &spare)
    }

    /// Completes an operation the plug-in never saw. `message` travels in
    /// `extendedInformation` (the only text `W_COMPLETE` carries).
    private func reject(_ operationID: UInt64, _ code: UInt32, _ message: String) {
        channel.sendComplete(operation: operationID, errorCode: code, extendedInformation: message)
    }

    /// Builds the request, checks the shell and command it names, and calls the entry
    /// point on this thread. The block is laid out in `spare` (this reader's recycled
    /// operation) when it is large enough, else in a new operation; after the entry point
    /// returns, `spare` is refilled from the host's recycled operations.
    private func start(_ request: borrowing WorkerRequestPacket, kind: OperationKind, spare: inout Operation?) {
        let operationID = request.operationID
        let shellID = request.shellID
        let commandID = request.commandID
        let timeoutMs = request.context.timeoutMs
        let needed = RequestBlock.requiredSize(request, kind: kind)

        // The memory and eventfd: the reader's spare (only this thread touches its memory
        // until it is activated), else new ones, outside the lock.
        let operation: Operation
        let reused: Bool
        if let candidate = spare, candidate.capacity >= needed {
            operation = candidate
            reused = true
        } else {
            guard let fresh = newOperation(needed: needed, operationID: operationID) else { return }
            operation = fresh
            reused = false
        }
        let block = RequestBlock.layOut(
            request, kind: kind, into: operation.memory, capacity: operation.capacity,
            cancelEvent: operation.cancelEvent.fd.rawValue)

        lock.lock()
        if shuttingDown {
            lock.unlock()
            if !reused { operation.freeMemory() }
            reject(operationID, WSManError.shutdownInProgress, "plug-in \(pluginName) is shutting down")
            return
        }
        if operationsByID.contains(operationID) {
            lock.unlock()
            channel.fatal("protocol violation by the supervisor: operation id \(operationID) is already in use")
        }
        let shell: ShellRecord
        var command: CommandRecord?
        var refusal: String?
        switch kind {
        case .shell:
            if shells.contains(shellID) {
                refusal = "shell \(shellID) already exists"
                shell = ShellRecord(id: 0)
            } else {
                shell = ShellRecord(id: shellID)
                shells[shellID] = shell
            }
        default:
            if let known = shells[shellID], known.contextReported, !known.completed {
                shell = known
                if kind == .command {
                    if commandID == 0 || known.commands.contains(commandID) {
                        refusal = "command id \(commandID) is not a new command of shell \(shellID)"
                    } else {
                        let record = CommandRecord(id: commandID, shell: known)
                        known.commands[commandID] = record
                        command = record
                    }
                } else if commandID != 0 {
                    if let record = known.commands[commandID], record.contextReported, !record.completed {
                        command = record
                    } else {
                        refusal = known.commands[commandID]?.completed == true
                            ? "command \(commandID) of shell \(shellID) has ended"
                            : "plug-in \(pluginName) has no command \(commandID) in shell \(shellID) (no context was reported for it)"
                    }
                }
            } else {
                shell = ShellRecord(id: 0)
                refusal = shells[shellID]?.completed == true
                    ? "shell \(shellID) of plug-in \(pluginName) has been closed"
                    : "plug-in \(pluginName) has no shell \(shellID) (never created, closed, or no context reported yet)"
            }
        }
        if let refusal {
            lock.unlock()
            if !reused { operation.freeMemory() }
            reject(operationID, WSManError.invalidSelectors, refusal)
            return
        }
        if reused {
            spare = nil
            spareCount -= 1
        } else {
            operationsByRequest[UInt64(operation.address)] = operation
        }
        operation.activate(id: operationID, kind: kind, block: block, timeoutMs: timeoutMs, shell: shell, command: command)
        shell.references += 1
        command?.references += 1
        operationsByID[operationID] = operation
        let shellContext = shell.context
        let commandContext = command?.context
        let cancelledEarly = !earlyCancels.isEmpty && earlyCancels.remove(operationID) != nil
        lock.unlock()

        // A cancel that overtook this request: the plug-in sees it at once
        // (shutdownNotification set; a callback it registers runs immediately).
        if cancelledEarly { cancel(operation) }
        callEntryPoint(operation, shellContext: shellContext, commandContext: commandContext)

        lock.lock()
        operation.entryReturned = true
        if operation.completionSentOnEntryThread { operation.completionSent = true }
        let closing = finishIfDone(operation)
        if spare == nil, let recycled = spareOperations {
            spareOperations = recycled.nextSpare
            recycled.nextSpare = nil
            spare = recycled
        }
        lock.unlock()
        // Their eventfds close as they are deallocated, here, outside the lock.
        withExtendedLifetime(closing) {}
    }

    /// A new operation with room for a block of `needed` bytes (at least
    /// ``Operation/standardCapacity``, so that it can serve most later requests) and an
    /// eventfd; `nil` (the request rejected) when either cannot be had. No lock held.
    private func newOperation(needed: Int, operationID: UInt64) -> Operation? {
        let capacity = max(needed, PluginHost.standardCapacity)
        guard let memory = malloc(capacity) else {
            channel.fatal("out of memory allocating a \(capacity)-byte request block")
        }
        do {
            let cancelEvent = try EventDescriptor()
            return Operation(memory: memory, capacity: capacity, cancelEvent: cancelEvent, shell: PluginHost.noShell)
        } catch {
            free(memory)
            reject(operationID, WSManError.outOfMemory, "the worker of plug-in \(pluginName) cannot create the request's eventfd: \(error)")
            return nil
        }
    }

    /// The smallest block memory an operation gets: room for the block of any packet up
    /// to about 700 bytes (every Signal and Receive, most Commands and small Sends).
    static let standardCapacity = 4096
    /// Operations with more block memory than this are not recycled (a large Send's).
    static let recyclableCapacity = 16 << 10
    /// The shell of an operation not yet activated.
    static let noShell = ShellRecord(id: 0)

    /// Calls the operation's entry point (no lock held). A missing optional entry point
    /// completes the operation with `ERROR_INVALID_PARAMETER`.
    private func callEntryPoint(_ operation: Operation, shellContext: UnsafeMutableRawPointer?, commandContext: UnsafeMutableRawPointer?) {
        let block = operation.block
        let request = block.request
        switch operation.kind {
        case .shell:
            library.shell?(pluginContext, request, block.flags, block.startupInfo, block.data)
        case .command:
            library.command?(request, block.flags, shellContext, block.text, block.arguments)
        case .send:
            library.send?(request, block.flags, shellContext, commandContext, block.text, block.data)
        case .receive:
            library.receive?(request, block.flags, shellContext, commandContext, block.streamSet)
        case .signal:
            library.signal?(request, block.flags, shellContext, commandContext, block.text)
        case .connect:
            if let connect = library.connect {
                connect(request, block.flags, shellContext, commandContext, block.data)
            } else {
                completeUnsupported(operation)
            }
        }
    }

    /// Remembers that an operation finished (the lock is held).
    private func noteFinished(_ id: UInt64) {
        recentlyFinished[recentlyFinishedNext] = id
        recentlyFinishedNext = (recentlyFinishedNext + 1) & (Self.recentlyFinishedLimit - 1)
        if recentlyFinishedCount < Self.recentlyFinishedLimit { recentlyFinishedCount += 1 }
    }

    /// Whether `id` is among the recently finished operations (lock held; rare: a cancel
    /// that finds no operation).
    private func finishedRecently(_ id: UInt64) -> Bool {
        UnsafeBufferPointer(start: recentlyFinished, count: recentlyFinishedCount).contains(id)
    }

    /// Completes an operation whose optional entry point the plug-in does not export.
    private func completeUnsupported(_ operation: Operation) {
        lock.lock()
        operation.completed = true
        operationsByID[operation.id] = nil
        noteFinished(operation.id)
        lock.unlock()
        reject(operation.id, WSManError.invalidParameter, "plug-in \(pluginName) does not export \(operation.kind.entryPointName)")
        lock.lock()
        operation.completionSent = true
        lock.unlock()
    }

    /// `W_CREDIT`: `bytes` of the operation's results have left the supervisor.
    private func credit(operationID: UInt64, bytes: Int) {
        lock.lock()
        if let operation = operationsByID[operationID] {
            operation.unacknowledgedBytes = max(0, operation.unacknowledgedBytes - bytes)
            lock.broadcastChange()
        }
        lock.unlock()
    }

    /// Cancels an operation the documented way: `shutdownNotification = TRUE`, the
    /// eventfd signalled, then every registered shutdown callback (outside the lock).
    private func cancel(_ operation: Operation) {
        lock.lock()
        cancelAndUnlock(operation)
    }

    /// ``cancel(_:)`` with the lock held on entry (not on return).
    private func cancelAndUnlock(_ operation: Operation) {
        guard !operation.completed, !operation.cancelled, !operation.recycled else {
            lock.unlock()
            return
        }
        operation.cancelled = true
        // A volatile BOOL: a plain store through the pointer, which the compiler cannot
        // elide (the memory escapes to C) and x86-64 makes visible in order.
        UnsafeMutableRawPointer(operation.block.request)
            .storeBytes(of: Int32(1), toByteOffset: PluginHost.shutdownNotificationOffset, as: Int32.self)
        try? operation.cancelEvent.signal(1)
        let callbacks = operation.shutdownCallbacks
        operation.shutdownCallbacks = []
        var tid: pid_t = 0
        if !callbacks.isEmpty {
            tid = ProcessControl.threadID()
            operation.callbackThreads.append(tid)
        }
        lock.broadcastChange() // a ReceiveResult waiting for credit gives up
        lock.unlock()
        guard !callbacks.isEmpty else { return }
        for callback in callbacks {
            callback.function(callback.context)
        }
        lock.lock()
        if let index = operation.callbackThreads.firstIndex(of: tid) {
            operation.callbackThreads.remove(at: index)
        }
        lock.broadcastChange()
        finishIfDoneAndUnlock(operation)
    }

    static let shutdownNotificationOffset = MemoryLayout<WSMAN_PLUGIN_REQUEST>.offset(of: \.shutdownNotification)!

    // MARK: - Finishing operations and releasing contexts

    /// ``finishIfDone(_:)``, then unlocks (lock held on entry, not on return).
    private func finishIfDoneAndUnlock(_ operation: Operation) {
        let closing = finishIfDone(operation)
        lock.unlock()
        // Their eventfds close as they are deallocated, here, outside the lock.
        withExtendedLifetime(closing) {}
    }

    /// Marks the operation finished once nothing needs its block any more: completed,
    /// `W_COMPLETE` sent, entry point returned, no callback of ours running, and puts it in
    /// quarantine. Returns the operations pushed out of quarantine whose eventfd cannot
    /// serve again, to be released after unlocking (lock held).
    private func finishIfDone(_ operation: Operation) -> [Operation] {
        guard !operation.finished, operation.completionSent, operation.entryReturned,
              operation.callbackThreads.isEmpty, operation.sendsInFlight == 0 else { return [] }
        operation.finished = true
        if !operation.shutdownCallbacks.isEmpty { operation.shutdownCallbacks = [] }
        if operation.droppedBytes > 0 {
            WorkerLog.write("\(operation.description): dropped \(operation.droppedBytes) bytes of output (output window full)")
        }
        if let command = operation.command {
            command.references -= 1
            checkRelease(command)
        }
        operation.shell.references -= 1
        checkRelease(operation.shell)

        var closing: [Operation] = []
        if quarantineCount == PluginHost.quarantineLimit {
            evictFromQuarantine(into: &closing)
        }
        quarantine[(quarantineHead + quarantineCount) % PluginHost.quarantineLimit] = operation
        quarantineCount += 1
        quarantineBytes += operation.capacity
        while quarantineBytes > PluginHost.quarantineByteLimit && quarantineCount > 0 {
            evictFromQuarantine(into: &closing)
        }
        return closing
    }

    /// Ends the quarantine of the oldest finished operation. One whose eventfd was never
    /// signalled (counter 0) and whose memory is not large is recycled for a later request
    /// (its request pointer stays in the table, now naming no operation), up to
    /// ``spareLimit``; any other is forgotten, its block freed, and appended to `closing`
    /// to be deallocated (its eventfd closed) outside the lock (lock held).
    private func evictFromQuarantine(into closing: inout [Operation]) {
        // Moved out of its slot (no retain and release).
        guard let old = (quarantine + quarantineHead).move() else {
            (quarantine + quarantineHead).initialize(to: nil)
            return
        }
        (quarantine + quarantineHead).initialize(to: nil)
        quarantineHead = (quarantineHead + 1) % PluginHost.quarantineLimit
        quarantineCount -= 1
        quarantineBytes -= old.capacity
        if !old.cancelled && spareCount < Self.spareLimit && old.capacity <= Self.recyclableCapacity {
            old.recycled = true
            old.nextSpare = spareOperations
            spareOperations = old
            spareCount += 1
        } else {
            operationsByRequest[UInt64(old.address)] = nil
            old.freeMemory()
            closing.append(old)
        }
    }

    /// Queues a command's release once it has ended and nothing uses its context (lock held).
    private func checkRelease(_ command: CommandRecord) {
        guard command.completed, command.references == 0, !command.releaseStarted else { return }
        command.releaseStarted = true
        if command.contextReported && library.releaseCommandContext != nil && !shutdownCalled.load(ordering: .relaxed) {
            releaseJobs.append(.command(command))
            lock.signalJobs()
        } else {
            commandReleased(command)
        }
    }

    /// Queues a shell's release once it has ended, its commands are released and
    /// nothing uses its context (lock held).
    private func checkRelease(_ shell: ShellRecord) {
        guard shell.completed, shell.references == 0, shell.commands.isEmpty, !shell.releaseStarted else { return }
        shell.releaseStarted = true
        if shell.contextReported && library.releaseShellContext != nil && !shutdownCalled.load(ordering: .relaxed) {
            releaseJobs.append(.shell(shell))
            lock.signalJobs()
        } else {
            shellReleased(shell)
        }
    }

    /// `contextForgotten`: the housekeeper already took the context out of the live set.
    private func commandReleased(_ command: CommandRecord, contextForgotten: Bool = false) {
        let shell = command.shell
        shell.commands[command.id] = nil
        if command.contextReported && !contextForgotten {
            shell.commandContexts.remove(UInt(bitPattern: command.context))
        }
        checkRelease(shell)
    }

    private func shellReleased(_ shell: ShellRecord, contextForgotten: Bool = false) {
        if shells[shell.id] === shell {
            shells[shell.id] = nil
        }
        if shell.contextReported && !contextForgotten {
            shellContexts.remove(UInt(bitPattern: shell.context))
        }
    }

    /// The housekeeping thread: calls `WSManPluginRelease{Command,Shell}Context` outside
    /// any plug-in callback (a plug-in completing a request may hold its own locks).
    func runHousekeeper() -> Never {
        registerCurrentThread()
        try? ProcessControl.setName("airlock-release")
        lock.lock()
        while true {
            while releaseJobs.isEmpty {
                housekeeperBusy = false
                lock.broadcastChange()
                lock.waitForJobs()
            }
            let job = releaseJobs.removeFirst()
            housekeeperBusy = true
            let skip = shutdownCalled.load(ordering: .relaxed)
            // The context stops being live before the release callback runs: once the
            // plug-in frees it, another thread may get the same address for a new shell
            // or command and report it, which is no duplicate.
            switch job {
            case .command(let command):
                command.shell.commandContexts.remove(UInt(bitPattern: command.context))
            case .shell(let shell):
                shellContexts.remove(UInt(bitPattern: shell.context))
            }
            lock.unlock()
            switch job {
            case .command(let command):
                if !skip { library.releaseCommandContext?(command.shell.context, command.context) }
                lock.lock()
                commandReleased(command, contextForgotten: true)
            case .shell(let shell):
                if !skip { library.releaseShellContext?(shell.context) }
                lock.lock()
                shellReleased(shell, contextForgotten: true)
            }
        }
    }

    // MARK: - Shutdown

    /// `W_SHUTDOWN`: cancels every outstanding operation (children first), waits up to
    /// the grace period for their completions and context releases, calls
    /// `WSManPluginShutdown`, counts the plug-in's threads still alive, sends
    /// `W_SHUTDOWN_DONE` and ends the process at once (no `dlclose`, no exit handlers).
    private func shutdown(_ request: WorkerShutdown, replyTo operationID: UInt64) {
        lock.lock()
        if shuttingDown {
            lock.unlock()
            return
        }
        shuttingDown = true
        let outstanding = operationsByID.values.sorted {
            ($0.kind.cancellationRank, $0.id) < ($1.kind.cancellationRank, $1.id)
        }
        lock.unlock()
        for operation in outstanding {
            cancel(operation)
        }

        let deadline = HostLock.monotonicNow() + UInt64(request.graceMs) * 1_000_000
        lock.lock()
        while !operationsByID.isEmpty || !releaseJobs.isEmpty || housekeeperBusy {
            if !lock.waitForChange(until: deadline) { break }
        }
        shutdownCalled.store(true, ordering: .releasing)
        lock.broadcastChange() // ReceiveResult calls waiting for credit give up
        let abandoned = operationsByID.values.sorted { $0.id < $1.id }
        for operation in abandoned {
            operation.completed = true
        }
        operationsByID.removeAll()
        lock.unlock()

        for operation in abandoned {
            reject(operation.id, WSManError.shutdownInProgress,
                   "plug-in \(pluginName) did not complete the operation within the shutdown grace period of \(request.graceMs) ms")
        }
        if !abandoned.isEmpty {
            WorkerLog.write("\(abandoned.count) operation(s) not completed within the grace period; calling WSManPluginShutdown anyway")
        }
        let result = library.shutdown?(pluginContext, 0, request.reason) ?? 0
        let threadsLeft = foreignThreadCount()
        if threadsLeft > 0 {
            WorkerLog.write("WSManPluginShutdown returned with \(threadsLeft) plug-in thread(s) still running; ending the process")
        }
        channel.send(
            .workerShutdownDone(WorkerShutdownDone(errorCode: result, threadsLeft: UInt32(clamping: threadsLeft))),
            operation: operationID, final: operationID != 0)
        _exit(0)
    }

    // MARK: - Host callbacks (called by the plug-in, on any thread)

    func reportContext(_ request: RequestPointer?, flags: UInt32, context: UnsafeMutableRawPointer?) -> UInt32 {
        let callback = "WSManPluginReportContext"
        if refusedAfterShutdown(callback) { return WSManError.shutdownInProgress }
        lock.lock()
        guard let operation = liveOperation(request) else {
            let found = lookUp(request)
            lock.unlock()
            return refuse(found, callback)
        }
        var fault: (kind: String, message: String)?
        let key = UInt(bitPattern: context)
        if operation.kind != .shell && operation.kind != .command {
            fault = ("wrong request", "\(callback) was called on the request of \(operation.description); only Shell and Command requests report a context")
        } else if flags != 0 {
            fault = ("flags", "\(callback) was called with flags 0x\(String(flags, radix: 16)) (must be 0)")
        } else if operation.contextReported {
            fault = ("twice", "\(callback) was called twice for the request of \(operation.description)")
        } else if operation.kind == .shell && shellContexts.contains(key) {
            fault = ("duplicate shell", "\(callback) reported shell context 0x\(String(key, radix: 16)), which another live shell already has")
        } else if operation.kind == .command && operation.shell.commandContexts.contains(key) {
            fault = ("duplicate command", "\(callback) reported command context 0x\(String(key, radix: 16)), which another live command of the same shell already has")
        }
        if let fault {
            lock.unlock()
            breach("\(callback): \(fault.kind)", fault.message)
            return WSManError.invalidParameter
        }
        operation.contextReported = true
        if let command = operation.command, operation.kind == .command {
            command.context = context
            command.contextReported = true
            operation.shell.commandContexts.insert(key)
        } else {
            operation.shell.context = context
            operation.shell.contextReported = true
            shellContexts.insert(key)
        }
        operation.sendsInFlight += 1
        lock.unlock()

        channel.send(.workerContext, operation: operation.id)
        endSend(operation)
        return WSManError.noError
    }

    /// Ends a send counted in `sendsInFlight`.
    private func endSend(_ operation: Operation) {
        lock.lock()
        operation.sendsInFlight -= 1
        if operation.sendsInFlight == 0 { lock.broadcastChange() }
        finishIfDoneAndUnlock(operation)
    }

    /// The data of one `WSManPluginReceiveResult` call.
    private enum ResultData {
        case none
        case text([UInt8])
        case binary(UnsafeRawBufferPointer)
        case dword(UInt32)

        var count: Int {
            switch self {
            case .none, .dword: 0
            case .text(let bytes): bytes.count
            case .binary(let bytes): bytes.count
            }
        }
    }

    func receiveResult(
        _ request: RequestPointer?, flags: UInt32, stream: WidePointer?, streamResult: UnsafeMutablePointer<WSMAN_DATA>?,
        commandState: WidePointer?, exitCode: UInt32
    ) -> UInt32 {
        let callback = "WSManPluginReceiveResult"
        if refusedAfterShutdown(callback) { return WSManError.shutdownInProgress }
        lock.lock()
        guard let operation = liveOperation(request) else {
            let found = lookUp(request)
            lock.unlock()
            return refuse(found, callback)
        }
        guard operation.kind == .receive else {
            lock.unlock()
            breach("\(callback): wrong request", "\(callback) was called on the request of \(operation.description); results belong to Receive requests")
            return WSManError.invalidParameter
        }
        operation.sendsInFlight += 1
        lock.unlock()
        defer { endSend(operation) }

        // The plug-in's arguments (its memory, read before anything is sent).
        let streamName = stream.flatMap { WideString.decode($0) }.map { WideString.truncated($0, maximumBytes: 256) }
        let state = commandState.flatMap { WideString.decode($0) }.map { WideString.truncated($0, maximumBytes: 1024) }
        var data = ResultData.none
        if let streamResult {
            let value = streamResult.pointee
            switch value.type {
            case WSMAN_DATA_NONE:
                data = .none
            case WSMAN_DATA_TYPE_TEXT:
                let text = value.text
                if text.buffer == nil && text.bufferLength > 0 {
                    breach("\(callback): NULL text", "\(callback) was called with text data of \(text.bufferLength) units at a NULL buffer")
                    return WSManError.invalidParameter
                }
                let string = text.buffer.map { WideString.decode($0, count: Int(text.bufferLength)) } ?? ""
                data = .text(Array(string.utf8))
            case WSMAN_DATA_TYPE_BINARY:
                let binary = value.binaryData
                if binary.data == nil && binary.dataLength > 0 {
                    breach("\(callback): NULL binary", "\(callback) was called with binary data of \(binary.dataLength) bytes at a NULL pointer")
                    return WSManError.invalidParameter
                }
                data = .binary(UnsafeRawBufferPointer(start: binary.data, count: Int(binary.dataLength)))
            case WSMAN_DATA_TYPE_DWORD:
                data = .dword(value.number)
            default:
                breach("\(callback): data type", "\(callback) was called with an unknown WSMAN_DATA type \(value.type.rawValue)")
                return WSManError.invalidParameter
            }
        }

        // Split what does not fit one frame; the end-of-data flags, the command state and
        // the exit code travel with the last piece.
        let endFlags = WSMAN_FLAG_RECEIVE_RESULT_NO_MORE_DATA | WSMAN_FLAG_RECEIVE_RESULT_DATA_BOUNDARY
        let pieceSize = largestResult
        var offset = 0
        repeat {
            var end = min(offset + pieceSize, data.count)
            if case .text(let bytes) = data {
                while end < bytes.count && end > offset && bytes[end] & 0xC0 == 0x80 { end -= 1 }
            }
            let last = end >= data.count
            let count = end - offset

            var drop = false
            var aborted = false
            lock.lock()
            while true {
                // A cancelled operation's results go nowhere: the plug-in learns it here.
                if operation.completed || operation.cancelled || shutdownCalled.load(ordering: .relaxed) { aborted = true; break }
                if operation.unacknowledgedBytes == 0 || operation.unacknowledgedBytes + count <= outputWindow { break }
                if dropOutput { drop = true; break }
                lock.waitForChange()
            }
            if drop {
                operation.droppedBytes += count
            } else if !aborted {
                operation.unacknowledgedBytes += count
            }
            lock.unlock()
            if aborted { return WSManError.operationAborted }

            let carriesEnd = last && (state != nil || flags & endFlags != 0 || exitCode != 0)
            if !drop, case .binary(let bytes) = data {
                channel.sendBinaryResult(
                    operation: operation.id, flags: last ? flags : flags & ~endFlags, stream: streamName,
                    data: UnsafeRawBufferPointer(rebasing: bytes[offset..<end]),
                    commandState: last ? state : nil, exitCode: last ? exitCode : 0)
            } else if !drop || carriesEnd {
                let piece: WSManData
                switch data {
                case .none: piece = .none
                case .dword(let number): piece = .dword(number)
                case .text(let bytes): piece = .text(drop ? "" : String(decoding: bytes[offset..<end], as: UTF8.self))
                case .binary(let bytes): piece = .binary(drop ? [] : Array(UnsafeRawBufferPointer(rebasing: bytes[offset..<end])))
                }
                let result = ReceiveResult(
                    flags: last ? flags : flags & ~endFlags,
                    stream: streamName,
                    streamResult: piece,
                    commandState: last ? state : nil,
                    exitCode: last ? exitCode : 0)
                channel.send(.workerResult(result), operation: operation.id)
            }
            offset = end
        } while offset < data.count
        return WSManError.noError
    }

    func operationComplete(_ request: RequestPointer?, flags: UInt32, errorCode: UInt32, extendedInformation: WidePointer?) -> UInt32 {
        let callback = "WSManPluginOperationComplete"
        if refusedAfterShutdown(callback) { return WSManError.shutdownInProgress }
        let information = extendedInformation.flatMap { WideString.decode($0) }
            .map { WideString.truncated($0, maximumBytes: maxFrameSize - 64) }
        lock.lock()
        if shutdownCalled.load(ordering: .relaxed) {
            lock.unlock()
            _ = refusedAfterShutdown(callback)
            return WSManError.shutdownInProgress
        }
        guard let operation = liveOperation(request) else {
            let found = lookUp(request)
            lock.unlock()
            return refuse(found, callback)
        }
        operation.completed = true
        operationsByID[operation.id] = nil
        noteFinished(operation.id)
        switch operation.kind {
        case .shell: operation.shell.completed = true
        case .command: operation.command?.completed = true
        default: break
        }
        lock.broadcastChange() // a ReceiveResult waiting for credit gives up
        // W_COMPLETE ends the operation: every frame of it must be out first, and a
        // shutdown callback running on another thread must have returned.
        var me: pid_t = 0
        while operation.sendsInFlight > 0 || !operation.callbackThreads.isEmpty {
            if operation.sendsInFlight == 0 {
                if me == 0 { me = ProcessControl.threadID() }
                if operation.callbackThreads.contains(me) { break }
            }
            lock.waitForChange()
        }
        let onEntryThread = !operation.entryReturned && pthread_equal(operation.entryThread, pthread_self()) != 0
        lock.unlock()

        channel.sendComplete(operation: operation.id, errorCode: errorCode, extendedInformation: information)

        if onEntryThread {
            // Inside the entry point, on its thread: the operation cannot finish before the
            // entry point returns, and the reader notes the completion then, under the
            // lock it takes anyway.
            operation.completionSentOnEntryThread = true
            return WSManError.noError
        }
        lock.lock()
        operation.completionSent = true
        finishIfDoneAndUnlock(operation)
        return WSManError.noError
    }

    func getOperationParameters(_ request: RequestPointer?, flags: UInt32, data: UnsafeMutablePointer<WSMAN_DATA>?) -> UInt32 {
        let callback = "WSManPluginGetOperationParameters"
        if refusedAfterShutdown(callback) { return WSManError.shutdownInProgress }
        lock.lock()
        guard let operation = liveOperation(request) else {
            let found = lookUp(request)
            lock.unlock()
            return refuse(found, callback)
        }
        let timeoutMs = operation.timeoutMs
        let block = operation.block
        lock.unlock()
        guard let data else {
            breach("\(callback): NULL data", "\(callback) was called with a NULL data pointer")
            return WSManError.invalidParameter
        }
        var answer = WSMAN_DATA()
        switch flags {
        case WSMAN_PLUGIN_PARAMS_TIMEOUT:
            answer.type = WSMAN_DATA_TYPE_DWORD
            answer.number = timeoutMs == 0 ? WSMAN_DEFAULT_TIMEOUT_MS : timeoutMs
        case WSMAN_PLUGIN_PARAMS_MAX_ENVELOPE_SIZE:
            answer.type = WSMAN_DATA_TYPE_DWORD
            answer.number = UInt32(maxEnvelopeSize)
        case WSMAN_PLUGIN_PARAMS_REMAINING_RESULT_SIZE, WSMAN_PLUGIN_PARAMS_LARGEST_RESULT_SIZE:
            answer.type = WSMAN_DATA_TYPE_DWORD
            answer.number = UInt32(largestResult)
        case WSMAN_PLUGIN_PARAMS_GET_REQUESTED_LOCALE:
            answer.type = WSMAN_DATA_TYPE_TEXT
            answer.text = WSMAN_DATA_TEXT(bufferLength: UInt32(block.localeLength), buffer: block.locale)
        case WSMAN_PLUGIN_PARAMS_GET_REQUESTED_DATA_LOCALE:
            answer.type = WSMAN_DATA_TYPE_TEXT
            answer.text = WSMAN_DATA_TEXT(bufferLength: UInt32(block.dataLocaleLength), buffer: block.dataLocale)
        default:
            return WSManError.invalidParameter
        }
        data.pointee = answer
        return WSManError.noError
    }

    /// Whether `context` is what Startup returned (anything goes while Startup runs).
    private func checkPluginContext(_ context: UnsafeMutableRawPointer?, _ callback: String) -> Bool {
        if !startupFinished.load(ordering: .acquiring) || context == pluginContext { return true }
        breach("\(callback): plug-in context", "\(callback) was called with plug-in context 0x\(String(UInt(bitPattern: context), radix: 16)), not the one WSManPluginStartup returned")
        return false
    }

    func getConfiguration(_ context: UnsafeMutableRawPointer?, flags: UInt32, data: UnsafeMutablePointer<WSMAN_DATA>?) -> UInt32 {
        let callback = "WSManPluginGetConfiguration"
        if refusedAfterShutdown(callback) { return WSManError.shutdownInProgress }
        guard checkPluginContext(context, callback) else { return WSManError.invalidParameter }
        guard let data else {
            breach("\(callback): NULL data", "\(callback) was called with a NULL data pointer")
            return WSManError.invalidParameter
        }
        guard let answer = configuration[flags] else { return WSManError.invalidParameter }
        data.pointee = answer
        return WSManError.noError
    }

    func reportCompletion(_ context: UnsafeMutableRawPointer?, flags: UInt32) -> UInt32 {
        let callback = "WSManPluginReportCompletion"
        if refusedAfterShutdown(callback) { return WSManError.shutdownInProgress }
        guard checkPluginContext(context, callback) else { return WSManError.invalidParameter }
        channel.send(.workerReportCompletion(flags: flags))
        return WSManError.noError
    }

    func freeRequestDetails(_ request: RequestPointer?) -> UInt32 {
        let callback = "WSManPluginFreeRequestDetails"
        if refusedAfterShutdown(callback) { return WSManError.shutdownInProgress }
        lock.lock()
        guard let operation = liveOperation(request) else {
            let found = lookUp(request)
            lock.unlock()
            return refuse(found, callback)
        }
        // The memory stays the host's until the operation is finished; only note it.
        operation.detailsFreed = true
        lock.unlock()
        return WSManError.noError
    }

    func registerShutdownCallback(_ request: RequestPointer?, callback function: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?, context: UnsafeMutableRawPointer?) {
        let callback = "WSManPluginRegisterShutdownCallback"
        if refusedAfterShutdown(callback) { return }
        lock.lock()
        guard let operation = liveOperation(request) else {
            let found = lookUp(request)
            lock.unlock()
            _ = refuse(found, callback)
            return
        }
        guard let function else {
            lock.unlock()
            breach("\(callback): NULL callback", "\(callback) was called with a NULL callback")
            return
        }
        guard operation.cancelled else {
            operation.shutdownCallbacks.append(ShutdownCallback(function: function, context: context))
            lock.unlock()
            return
        }
        // Already cancelled: run it now, on this thread.
        let tid = ProcessControl.threadID()
        operation.callbackThreads.append(tid)
        lock.unlock()
        function(context)
        lock.lock()
        if let index = operation.callbackThreads.firstIndex(of: tid) {
            operation.callbackThreads.remove(at: index)
        }
        lock.broadcastChange()
        finishIfDoneAndUnlock(operation)
    }
}
