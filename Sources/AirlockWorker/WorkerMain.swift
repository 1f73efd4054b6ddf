import AirlockPosix
import AirlockProtocol
import Glibc

/// The `airlock-worker` process: one plug-in, hosted out of the supervisor's process.
///
/// The supervisor starts it with the channel (PROTOCOL.md §5.5) as descriptors 3 (one end
/// of a `SOCK_SEQPACKET` socket pair), 4 (the rings' shared memory) and 5 (the doorbell
/// eventfd), 0 = `/dev/null`, 1 and 2 = pipes it logs. The
/// worker receives `W_START`, enters the sandbox, loads the library, calls
/// `WSManPluginStartup` and answers `W_READY`; then its reader threads serve requests
/// until `W_SHUTDOWN` (a worker whose supervisor is gone dies by `PR_SET_PDEATHSIG`).
public enum WorkerMain {
    /// Runs the worker; never returns (the process ends with `_exit`).
    ///
    /// Exit status: 0 after `W_SHUTDOWN_DONE`, after a `W_READY` that reports an error,
    /// or when the supervisor is gone before `W_START`; 64 when descriptors 3 to 5 are not
    /// the channel;
    /// 70 after `W_FATAL` (a protocol violation or an internal error).
    public static func run() -> Never {
        // A plug-in writing to a pipe whose reader is gone gets EPIPE, not a dead worker.
        signal(SIGPIPE, SIG_IGN)
        let channel = WorkerChannel.shared

        // W_START, the supervisor's first frame.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: ProtocolLimits.defaultMaxFrameSize + 4096, alignment: 16)
        let packet = channel.receive(into: buffer, maxFrameSize: ProtocolLimits.defaultMaxFrameSize)
        let frame = channel.decode(packet, maxFrameSize: ProtocolLimits.defaultMaxFrameSize)
        buffer.deallocate()
        guard case .workerStart(let start) = frame.message else {
            channel.fatal("protocol violation by the supervisor: the first frame is \(frame.message.type.wireName), not W_START")
        }
        WorkerLog.pluginName = start.plugin
        let host = PluginHost(start: start, channel: channel)
        PluginHost.current = host
        host.boundFrameSize()
        let reply = frame.operationID

        func ready(_ code: UInt32, _ message: String, exports: PluginExports, sandbox: [SandboxLayerReport]) {
            channel.send(
                .workerReady(WorkerReady(errorCode: code, message: message, exports: exports.rawValue, sandbox: sandbox)),
                operation: reply, final: reply != 0)
        }

        let layers: [SandboxLayerReport]
        do {
            layers = try WorkerSandbox.enter(
                profile: start.sandboxProfile, plugin: start.plugin, pluginPath: start.libraryPath, channelFD: channel.fd.rawValue)
        } catch {
            WorkerLog.write(error.message)
            ready(error.code, error.message, exports: [], sandbox: [])
            _exit(0)
        }
        host.registerCurrentThread(started: false)

        switch PluginLibrary.load(path: start.libraryPath, plugin: start.plugin) {
        case .failure(let failure):
            WorkerLog.write(failure.message)
            ready(failure.code, failure.message, exports: failure.exports, sandbox: layers)
            _exit(0)
        case .success(let library):
            host.library = library
        }

        // Startup. Its strings stay valid for the life of the process.
        var pluginContext: UnsafeMutableRawPointer?
        let result = host.library.startup!(
            start.startupFlags, WideString.permanent(start.applicationIdentification),
            start.extraInfo.map { WideString.permanent($0) }, &pluginContext)
        if result != WSManError.noError {
            let message = "WSManPluginStartup of plug-in \(start.plugin) returned \(WSManError.name(result))"
            WorkerLog.write(message)
            ready(result, message, exports: host.library.exports, sandbox: layers)
            _exit(0)
        }
        host.pluginContext = pluginContext
        host.startupFinished.store(true, ordering: .releasing)

        guard host.startOwnThread({ host.runHousekeeper() }) else {
            channel.fatal("cannot start the release thread: \(String(cString: strerror(errno)))")
        }
        guard host.startOwnThread({
            host.registerCurrentThread()
            try? ProcessControl.setName("airlock-watch")
            channel.watchSocket()
        }) else {
            channel.fatal("cannot start the channel socket's watcher: \(String(cString: strerror(errno)))")
        }
        let readers = ReaderPool(host: host)
        readers.startSpare()
        ready(WSManError.noError, "", exports: host.library.exports, sandbox: layers)
        readers.run(onNewThread: false)
    }
}
