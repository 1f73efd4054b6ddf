import AirlockPosix
import Glibc
import AirlockProtocol
import SystemPackage

/// What a worker operation is, and the entry point that serves it.
enum OperationKind: String {
    case shell, command, send, receive, signal, connect

    var entryPoint: String {
        switch self {
        case .shell: "WSManPluginShell"
        case .command: "WSManPluginCommand"
        case .send: "WSManPluginSend"
        case .receive: "WSManPluginReceive"
        case .signal: "WSManPluginSignal"
        case .connect: "WSManPluginConnect"
        }
    }

    /// Children are cancelled before their parents.
    var cancelOrder: Int {
        switch self {
        case .send, .receive, .signal, .connect: 0
        case .command: 1
        case .shell: 2
        }
    }
}

/// An operation in flight on a worker, and where its answers go.
struct Route {
    var kind: OperationKind
    /// The client connection waiting for it (0 when nobody is, e.g. a shell after its
    /// creation was answered, or after the client went away).
    var connectionID: UInt64
    var clientOperationID: UInt64
    var shellID: UInt64
    var commandID: UInt64
    var startedAt: UInt64
    /// Monotonic deadline in ns (0 = none).
    var deadline: UInt64
    var cancelSentAt: UInt64 = 0
    var timedOut = false
    var cancelledByClient = false
    /// Result bytes forwarded but not yet credited back to the worker.
    var pendingCredit: UInt32 = 0
    /// For sends: the key of the per-stream queue this send holds.
    var sendKey: String? = nil
    /// The principal (``PeerIdentity/principal``) the operation counts against.
    var principal: UInt64
}

extension Route {
    /// True while the worker owes an answer: every call, and a shell or command until its
    /// context is reported (its deadline is then cleared).
    var awaitsAnswer: Bool { (kind != .shell && kind != .command) || deadline != 0 }
}

/// A worker's routes by operation id, counting those that await an answer (so the channel
/// reader knows, without walking the table, whether more packets are on their way).
struct RouteTable: Sequence {
    private var routes: [UInt64: Route] = [:]
    /// Routes whose ``Route/awaitsAnswer`` is true.
    private(set) var awaitingAnswer = 0

    subscript(operation: UInt64) -> Route? {
        get { routes[operation] }
        set {
            let old = newValue.map { routes.updateValue($0, forKey: operation) } ?? routes.removeValue(forKey: operation)
            if old?.awaitsAnswer == true { awaitingAnswer -= 1 }
            if newValue?.awaitsAnswer == true { awaitingAnswer += 1 }
        }
    }

    @discardableResult
    mutating func removeValue(forKey operation: UInt64) -> Route? {
        let old = routes.removeValue(forKey: operation)
        if old?.awaitsAnswer == true { awaitingAnswer -= 1 }
        return old
    }

    mutating func removeAll() {
        routes.removeAll()
        awaitingAnswer = 0
    }

    var count: Int { routes.count }
    var isEmpty: Bool { routes.isEmpty }
    var values: Dictionary<UInt64, Route>.Values { routes.values }

    func makeIterator() -> Dictionary<UInt64, Route>.Iterator { routes.makeIterator() }
}

/// A request waiting for its worker to become ready.
struct QueuedRequest {
    var workerOperationID: UInt64
    var message: Message
}

/// A shell as the supervisor tracks it.
final class ShellRecord {
    let id: UInt64
    let plugin: String
    /// The plug-in's runtime when the shell was created (a shell is usable only while that
    /// runtime is still registered and its worker generation is the shell's).
    let runtime: PluginRuntime
    let resourceURI: String
    let ownerUID: UInt32
    let ownerName: String
    /// The owner's ``PeerIdentity/principal``: who may use the shell.
    let ownerPrincipal: UInt64
    /// The generation of the worker that hosts it (set when the request reaches a worker).
    var generation: UInt64
    var workerOperationID: UInt64
    var attachedConnection: UInt64
    var ready = false
    var closing = false
    /// Monotonic ns after which a disconnected shell is closed (0 = attached).
    var disconnectedUntil: UInt64 = 0
    var commands: [UInt64: CommandRecord] = [:]
    /// CLOSE_SHELL operations to answer when the shell ends.
    var closeWaiters: [(connection: UInt64, operation: UInt64)] = []
    /// Sends waiting for the previous send on the same command and stream.
    var sendQueues: [String: [QueuedSend]] = [:]
    var busySendKeys: Set<String> = []

    init(id: UInt64, runtime: PluginRuntime, resourceURI: String, owner: PeerIdentity, generation: UInt64, workerOperationID: UInt64, attachedConnection: UInt64) {
        self.id = id
        self.plugin = runtime.name
        self.runtime = runtime
        self.resourceURI = resourceURI
        self.ownerUID = owner.uid
        self.ownerName = owner.accessName
        self.ownerPrincipal = owner.principal
        self.generation = generation
        self.workerOperationID = workerOperationID
        self.attachedConnection = attachedConnection
    }
}

final class CommandRecord {
    let id: UInt64
    var workerOperationID: UInt64
    var ready = false
    init(id: UInt64, workerOperationID: UInt64) {
        self.id = id
        self.workerOperationID = workerOperationID
    }
}

struct QueuedSend {
    var connectionID: UInt64
    var clientOperationID: UInt64
    var request: SendInput
    /// Whom the send acts for (the connection may be gone when it is dispatched).
    var peer: PeerIdentity
}

/// The lifecycle of a plug-in's worker.
enum WorkerState: Equatable {
    /// No process; the next operation starts one.
    case idle
    /// Spawned; waiting for `W_READY`.
    case starting
    case running
    /// Shutdown sent; waiting for the process to exit.
    case stopping
    /// Too many crashes in the window; refuses operations until this monotonic time.
    case quarantined(until: UInt64)

    var name: String {
        switch self {
        case .idle: "idle"
        case .starting: "starting"
        case .running: "running"
        case .stopping: "stopping"
        case .quarantined: "quarantined"
        }
    }
}

/// A registered plug-in and its (at most one) worker process.
final class PluginRuntime {
    var config: PluginConfiguration
    /// False once the supervisor dropped the plug-in from its table (a reload removed it).
    var isRegistered = true
    var state: WorkerState = .idle
    var generation: UInt64 = 0

    // The current process.
    var pid: pid_t = 0
    var channel: FileDescriptor?
    var channelToken: UInt64 = 0
    /// The shared-memory half of the channel (while a worker runs).
    var rings: WorkerRings?
    var outputPipes: [(fd: FileDescriptor, token: UInt64, stream: String)] = []
    var lineBuffers: [String: [UInt8]] = [:]
    var startedAt: UInt64 = 0
    var readyAt: UInt64 = 0
    /// Frames for the worker that did not fit its request ring, in order.
    var pendingWrites: [[UInt8]] = []
    var routes = RouteTable()
    var queued: [QueuedRequest] = []
    var nextOperationID: UInt64 = 1
    var shells: Set<UInt64> = []
    var pingSentAt: UInt64 = 0
    var lastActivity: UInt64 = 0
    var exports: UInt32 = 0
    var sandboxReport: [SandboxLayerReport] = []
    /// Why the current process is going away, when we decided it.
    var stopReason: String?
    var fatalMessage: String?
    /// The last line the worker wrote on stderr (quoted when it exits with an error).
    var lastErrorLine: String?
    /// Set when the channel closed before the process was reaped.
    var channelClosedReason: String?
    /// The worker's cgroup, when the supervisor has a delegated one.
    var cgroupPath: String?
    var shutdownTimer: UInt64?
    var stopWaiters: [(connection: UInt64, operation: UInt64, restart: Bool)] = []

    // History.
    var restarts = 0
    var crashTimes: [UInt64] = []
    var lastExit: String?
    var recentFailures: [(time: Int64, message: String)] = []
    var threadsLeftAfterShutdown: UInt32?
    var latenciesMicros: [UInt32] = []
    var latencyCursor = 0
    var nextStartupFlags: UInt32 = 0
    var restartTimer: UInt64?
    var reportedBreaches: Set<String> = []

    init(config: PluginConfiguration) {
        self.config = config
    }

    var name: String { config.name }

    func allocateOperationID() -> UInt64 {
        defer { nextOperationID += 1 }
        return nextOperationID
    }

    func recordLatency(_ nanoseconds: UInt64) {
        let micros = UInt32(min(nanoseconds / 1000, UInt64(UInt32.max)))
        if latenciesMicros.count < 1024 {
            latenciesMicros.append(micros)
        } else {
            latenciesMicros[latencyCursor] = micros
            latencyCursor = (latencyCursor + 1) % 1024
        }
    }

    func latencyPercentile(_ p: Double) -> UInt32? {
        guard !latenciesMicros.isEmpty else { return nil }
        let sorted = latenciesMicros.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }

    func recordFailure(_ message: String) {
        recentFailures.append((SystemClock.realtime().seconds, message))
        if recentFailures.count > 10 { recentFailures.removeFirst(recentFailures.count - 10) }
    }
}
