import AirlockPosix
import CWSMan
import Glibc

/// A function registered with `WSManPluginRegisterShutdownCallback`.
struct ShutdownCallback {
    var function: @convention(c) (UnsafeMutableRawPointer?) -> Void
    var context: UnsafeMutableRawPointer?
}

/// One operation request handed to the plug-in: its request block and where it stands.
///
/// An `Operation` is recycled: once it has left quarantine, the object, its block memory
/// and its (never signalled) eventfd serve a later request (``activate(id:kind:block:timeoutMs:shell:command:)``),
/// which saves an object, a `malloc`/`free` of the block, an eventfd and two table
/// updates per request. Only the reader thread that holds a spare lays out a new request
/// in its memory; every `var` is otherwise guarded by the ``PluginHost``'s lock, except
/// ``completionSentOnEntryThread``, which only the thread running the entry point touches.
final class Operation: @unchecked Sendable {
    /// The supervisor's operation id.
    private(set) var id: UInt64 = 0
    private(set) var kind: OperationKind = .signal
    /// The `WSMAN_PLUGIN_REQUEST` and everything it points to, laid out in ``memory``.
    private(set) var block: RequestBlock
    /// The block's memory (`malloc`), for the object's whole life unless freed with
    /// ``freeMemory()`` as it is dropped: its address is the request pointer the plug-in
    /// gets, the key of the host's request table.
    let memory: UnsafeMutableRawPointer
    /// Bytes allocated at ``memory``: a request whose block needs more cannot reuse it.
    let capacity: Int
    /// The eventfd behind `shutdownNotificationHandle`; closed when the operation is
    /// deallocated, after its block has been freed. Recycled only while never signalled.
    let cancelEvent: EventDescriptor
    /// `WSMAN_PLUGIN_PARAMS_TIMEOUT` (0 = the default).
    private(set) var timeoutMs: UInt32 = 0
    /// The shell the operation addresses (a Shell operation: its own).
    private(set) var shell: ShellRecord
    /// The command it addresses (a Command operation: its own), or `nil` for the shell.
    private(set) var command: CommandRecord?
    /// The thread that calls the entry point (a reader), for ``completionSentOnEntryThread``.
    private(set) var entryThread: pthread_t = 0

    /// The plug-in called OperationComplete.
    var completed = false
    /// ... and `W_COMPLETE` has been sent.
    var completionSent = false
    /// `W_COMPLETE` was sent by an OperationComplete called on ``entryThread`` while the
    /// entry point ran: the reader sets ``completionSent`` when the entry point returns,
    /// under the lock it takes then anyway (one lock round fewer per blocking request).
    /// Touched only by ``entryThread``.
    var completionSentOnEntryThread = false
    /// The entry point returned.
    var entryReturned = false
    /// Completed, returned, and no callback of ours runs for it: the block only waits in
    /// quarantine to be freed.
    var finished = false
    /// Out of quarantine and kept for a later request: its request pointer stays in the
    /// host's table but names no operation (a plug-in using it is told it is unknown).
    var recycled = false
    /// The next spare in the host's list of recycled operations.
    var nextSpare: Operation?
    /// `W_CANCEL` (or shutdown) reached it.
    var cancelled = false
    var contextReported = false
    var detailsFreed = false
    /// `W_CONTEXT` / `W_RESULT` frames being sent; `W_COMPLETE` waits for them.
    var sendsInFlight = 0
    /// Result bytes not yet credited by `W_CREDIT`.
    var unacknowledgedBytes = 0
    /// Result bytes dropped because the window was full (`dropOutput`).
    var droppedBytes = 0
    /// Registered and not yet run.
    var shutdownCallbacks: [ShutdownCallback] = []
    /// Threads running this operation's shutdown callbacks right now.
    var callbackThreads: [pid_t] = []

    /// A new operation owning `capacity` bytes at `memory` and `cancelEvent`, not yet
    /// serving a request (``activate(id:kind:block:timeoutMs:shell:command:)``).
    init(memory: UnsafeMutableRawPointer, capacity: Int, cancelEvent: EventDescriptor, shell: ShellRecord) {
        self.memory = memory
        self.capacity = capacity
        self.cancelEvent = cancelEvent
        self.shell = shell
        block = RequestBlock(request: memory.assumingMemoryBound(to: WSMAN_PLUGIN_REQUEST.self), size: capacity)
    }

    /// Makes the operation serve a request whose block was laid out in ``memory``, with
    /// every state reset (lock held; the operation is in no table but the request table).
    func activate(id: UInt64, kind: OperationKind, block: RequestBlock, timeoutMs: UInt32, shell: ShellRecord, command: CommandRecord?) {
        self.id = id
        self.kind = kind
        self.block = block
        self.timeoutMs = timeoutMs
        // The same records as last time, usually: no retain and release then.
        if self.shell !== shell { self.shell = shell }
        if self.command !== command { self.command = command }
        entryThread = pthread_self()
        completed = false
        completionSent = false
        completionSentOnEntryThread = false
        entryReturned = false
        finished = false
        recycled = false
        cancelled = false
        contextReported = false
        detailsFreed = false
        sendsInFlight = 0
        unacknowledgedBytes = 0
        droppedBytes = 0
        if !shutdownCallbacks.isEmpty { shutdownCallbacks = [] }
        if !callbackThreads.isEmpty { callbackThreads = [] }
    }

    /// Frees the block's memory: the operation is being dropped.
    func freeMemory() {
        Glibc.free(memory)
    }

    /// The request pointer as a table key.
    var address: UInt { UInt(bitPattern: memory) }

    /// `Receive operation 7`.
    var description: String { "\(kind.name) operation \(id)" }
}

/// A shell: Airlock's id, the context the plug-in reported, and its commands.
final class ShellRecord: @unchecked Sendable {
    let id: UInt64
    var context: UnsafeMutableRawPointer?
    var contextReported = false
    /// The Shell request has completed: the shell has ended.
    var completed = false
    /// Operations not yet finished that address the shell (its own Shell request
    /// included): the context is released only when there are none.
    var references = 0
    /// Commands not yet released.
    var commands = IntegerTable<CommandRecord>()
    /// The reported contexts of those commands (unique within the shell).
    var commandContexts: Set<UInt> = []
    var releaseStarted = false

    init(id: UInt64) {
        self.id = id
    }
}

/// A command of a shell.
final class CommandRecord: @unchecked Sendable {
    let id: UInt64
    let shell: ShellRecord
    var context: UnsafeMutableRawPointer?
    var contextReported = false
    /// The Command request has completed: the command has ended.
    var completed = false
    /// Operations not yet finished that address the command (its own included).
    var references = 0
    var releaseStarted = false

    init(id: UInt64, shell: ShellRecord) {
        self.id = id
        self.shell = shell
    }
}

/// A context release the housekeeping thread performs.
enum ReleaseJob {
    case command(CommandRecord)
    case shell(ShellRecord)
}
