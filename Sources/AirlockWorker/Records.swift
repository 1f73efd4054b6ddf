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
/// Every `var` is guarded by the ``PluginHost``'s lock.
final class Operation: @unchecked Sendable {
    /// The supervisor's operation id.
    let id: UInt64
    let kind: OperationKind
    /// The `WSMAN_PLUGIN_REQUEST` and everything it points to.
    let block: RequestBlock
    /// The eventfd behind `shutdownNotificationHandle`; closed when the operation is
    /// deallocated, after its block has been freed.
    let cancelEvent: EventDescriptor
    /// `WSMAN_PLUGIN_PARAMS_TIMEOUT` (0 = the default).
    let timeoutMs: UInt32
    /// The shell the operation addresses (a Shell operation: its own).
    let shell: ShellRecord
    /// The command it addresses (a Command operation: its own), or `nil` for the shell.
    let command: CommandRecord?

    /// The plug-in called OperationComplete.
    var completed = false
    /// ... and `W_COMPLETE` has been sent.
    var completionSent = false
    /// The entry point returned.
    var entryReturned = false
    /// Completed, returned, and no callback of ours runs for it: the block only waits in
    /// quarantine to be freed.
    var finished = false
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

    init(id: UInt64, kind: OperationKind, block: RequestBlock, cancelEvent: EventDescriptor, timeoutMs: UInt32, shell: ShellRecord, command: CommandRecord?) {
        self.id = id
        self.kind = kind
        self.block = block
        self.cancelEvent = cancelEvent
        self.timeoutMs = timeoutMs
        self.shell = shell
        self.command = command
    }

    /// The request pointer as a table key.
    var address: UInt { UInt(bitPattern: block.request) }

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
