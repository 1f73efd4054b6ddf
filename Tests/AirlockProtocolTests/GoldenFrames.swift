import AirlockProtocol

/// The frames that `proto/vectors/frames.txt` encodes, written out by hand, in the file's
/// order: the tests decode every vector into exactly this value and encode this value into
/// exactly the vector's bytes. Nothing here is derived from the encoder.
enum GoldenFrames {
    static let shellNS = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
    static let cmdURI = shellNS + "/cmd"

    static let context = RequestContext(
        senderName: "alice", authenticationMechanism: "unix-peercred", resourceURI: cmdURI,
        locale: "en-US", dataLocale: "en-US", timeoutMs: 60_000)

    static let contextNonASCII = RequestContext(
        senderName: "jürgen", authenticationMechanism: "unix-peercred", resourceURI: "urn:airlock:echo",
        locale: "de-DE", dataLocale: "ja-JP", timeoutMs: 0, httpURL: "https://gw.example:5986/wsman")

    static let all: [(name: String, frame: Frame)] = [
        // MARK: Connection level
        ("hello", Frame(operationID: 0, message: .hello(Hello(
            magic: 0x4B4C_5241, minVersion: 1, maxVersion: 1, clientName: "airlockctl 0.1")))),
        ("hello.future-versions", Frame(operationID: 0, message: .hello(Hello(
            magic: 0x4B4C_5241, minVersion: 1, maxVersion: 3, clientName: "")))),
        ("hello-ack", Frame(operationID: 0, message: .helloAck(HelloAck(
            version: 1, maxFrameSize: 512_000, maxOperations: 256, serverVersion: "airlockd 0.1.0",
            peerUID: 1000, peerUserName: "alice")))),
        ("ping", Frame(operationID: 3, message: .ping(token: 0x0123_4567_89AB_CDEF))),
        ("pong", Frame(operationID: 3, flags: .final, message: .pong(token: 0x0123_4567_89AB_CDEF))),
        ("error", Frame(operationID: 0, message: .error(ErrorReport(
            errorCode: 87, message: "malformed frame: unknown message type 0x7777")))),
        ("error.operation", Frame(operationID: 0xFFFF_FFFF_FFFF_FFFF, flags: .final, message: .error(ErrorReport(
            errorCode: 0x8033_8048, message: "frame of 600000 bytes exceeds the maximum frame size of 512000 bytes")))),

        // MARK: Client requests
        ("create-shell.minimal", Frame(operationID: 1, message: .createShell(CreateShell(
            plugin: "echo", resourceURI: "", timeoutMs: 0, idleTimeoutMs: 0,
            inputStreams: ["stdin"], outputStreams: ["stdout", "stderr"], workingDirectory: nil,
            environment: [], name: nil, options: [], optionsMustUnderstand: false,
            inboundShellInformation: .none, locale: "en-US", dataLocale: "en-US")))),
        ("create-shell.full", Frame(operationID: 7, message: .createShell(CreateShell(
            plugin: "shell", resourceURI: cmdURI, timeoutMs: 30_000, idleTimeoutMs: 7_200_000,
            inputStreams: ["stdin", "pr"], outputStreams: ["stdout", "stderr"], workingDirectory: "/home/jürgen/Süßes",
            environment: [
                EnvironmentVariable(name: "LANG", value: "de_DE.UTF-8"),
                EnvironmentVariable(name: "GREETING", value: "Привет, 世界 🚀"),
                EnvironmentVariable(name: "EMPTY", value: ""),
            ],
            name: "Ünïcødé shell",
            options: [
                WSManOption(name: "WINRS_CONSOLEMODE_STDIN", value: "TRUE", mustComply: true),
                WSManOption(name: "WINRS_SKIP_CMD_SHELL", value: "FALSE", mustComply: false),
            ],
            optionsMustUnderstand: true,
            inboundShellInformation: .text("<creationXml>é</creationXml>"),
            locale: "de-DE", dataLocale: "fr-FR")))),
        ("create-shell.empty-lists-binary", Frame(operationID: 0x1_0000_0000, message: .createShell(CreateShell(
            plugin: "", resourceURI: "urn:airlock:noop", timeoutMs: 0xFFFF_FFFF, idleTimeoutMs: 1,
            inputStreams: [], outputStreams: [], workingDirectory: "", environment: [], name: "",
            options: [], optionsMustUnderstand: false,
            inboundShellInformation: .binary([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]),
            locale: "", dataLocale: "")))),
        ("create-shell.dword", Frame(operationID: 2, message: .createShell(CreateShell(
            plugin: "echo", resourceURI: "", timeoutMs: 0, idleTimeoutMs: 0,
            inputStreams: ["stdin"], outputStreams: ["stdout"], workingDirectory: nil,
            environment: [], name: nil, options: [], optionsMustUnderstand: false,
            inboundShellInformation: .dword(0xDEAD_BEEF), locale: "en-US", dataLocale: "en-US")))),
        ("run-command", Frame(operationID: 8, message: .runCommand(RunCommand(
            shellID: 1, timeoutMs: 0, commandLine: "uname", arguments: ["-a"], options: [])))),
        ("run-command.non-ascii", Frame(operationID: 9, message: .runCommand(RunCommand(
            shellID: 0x0102_0304_0506_0708, timeoutMs: 5_000, commandLine: "printf",
            arguments: ["%s\\n", "naïve café", "日本語", "🚀", ""],
            options: [WSManOption(name: "skipCmdShell", value: "true", mustComply: false)])))),
        ("send", Frame(operationID: 10, message: .send(SendInput(
            shellID: 1, commandID: 2, timeoutMs: 0, stream: "stdin", endOfStream: false,
            data: [0x68, 0x69, 0x00, 0x0A, 0xFF])))),
        ("send.end-of-stream", Frame(operationID: 11, message: .send(SendInput(
            shellID: 1, commandID: 2, timeoutMs: 1_000, stream: "stdin", endOfStream: true, data: [])))),
        ("receive.all-streams", Frame(operationID: 12, message: .receive(ReceiveOutput(
            shellID: 1, commandID: 2, timeoutMs: 0, streams: [])))),
        ("receive.selected", Frame(operationID: 13, message: .receive(ReceiveOutput(
            shellID: 1, commandID: 0, timeoutMs: 250, streams: ["stdout", "stderr"])))),
        ("signal", Frame(operationID: 14, message: .signal(SignalRequest(
            shellID: 1, commandID: 2, timeoutMs: 0, code: shellNS + "/signal/ctrl_c")))),
        ("connect", Frame(operationID: 15, message: .connect(ConnectRequest(
            shellID: 1, commandID: 0, timeoutMs: 0, inboundConnectInformation: .none)))),
        ("connect.text", Frame(operationID: 16, message: .connect(ConnectRequest(
            shellID: 1, commandID: 2, timeoutMs: 10_000, inboundConnectInformation: .text("<connectXml/>"))))),
        ("disconnect", Frame(operationID: 17, message: .disconnect(DisconnectRequest(
            shellID: 1, idleTimeoutMs: 180_000)))),
        ("close-shell", Frame(operationID: 18, message: .closeShell(shellID: 1))),
        ("cancel", Frame(operationID: 12, message: .cancel)),
        ("assert-identity", Frame(operationID: 1, message: .assertIdentity(AssertIdentity(
            userName: "alice", authenticationMechanism: "Basic", httpURL: "http://127.0.0.1:5985/wsman",
            flags: AssertIdentity.systemAccount)))),
        ("open-result-ring", Frame(operationID: 19, message: .openResultRing(size: 4 << 20))),
        ("release-result-ring", Frame(operationID: 0, message: .releaseResultRing(position: 0x1_0040_0000))),

        // MARK: Administration requests
        ("status", Frame(operationID: 20, message: .status(plugin: ""))),
        ("status.plugin", Frame(operationID: 21, message: .status(plugin: "shell"))),
        ("list-plugins", Frame(operationID: 22, message: .listPlugins)),
        ("restart-plugin", Frame(operationID: 23, message: .restartPlugin(plugin: "echo"))),
        ("stop-plugin", Frame(operationID: 24, message: .stopPlugin(plugin: "écho"))),
        ("reload", Frame(operationID: 25, message: .reload)),

        // MARK: Server answers and events
        ("shell-created", Frame(operationID: 7, flags: .final, message: .shellCreated(ShellCreated(
            shellID: 1, plugin: "shell", resourceURI: cmdURI)))),
        ("command-created", Frame(operationID: 8, flags: .final, message: .commandCreated(commandID: 2))),
        ("receive-result.stdout", Frame(operationID: 12, message: .receiveResult(ReceiveResult(
            flags: 0, stream: "stdout", streamResult: .binary(Array("Linux\n".utf8)), commandState: nil, exitCode: 0)))),
        ("receive-result.text", Frame(operationID: 12, message: .receiveResult(ReceiveResult(
            flags: 4, stream: "stderr", streamResult: .text("Fehler: Datei nicht gefunden – ✗"),
            commandState: shellNS + "/CommandState/Running", exitCode: 0)))),
        ("receive-result.done", Frame(operationID: 12, message: .receiveResult(ReceiveResult(
            flags: 1, stream: nil, streamResult: .none, commandState: shellNS + "/CommandState/Done", exitCode: 2)))),
        ("receive-result.dword", Frame(operationID: 12, message: .receiveResult(ReceiveResult(
            flags: 2, stream: "pr", streamResult: .dword(42), commandState: nil, exitCode: 0xFFFF_FFFF)))),
        ("operation-complete", Frame(operationID: 12, flags: .final, message: .operationComplete(OperationComplete(
            errorCode: 0, extendedInformation: nil, message: "")))),
        ("operation-complete.error", Frame(operationID: 1, flags: .final, message: .operationComplete(OperationComplete(
            errorCode: 0x8033_803B, extendedInformation: "<f:WSManFault Code=\"2150858811\"/>",
            message: "no plug-in named \"nope\" and no resource URI \"\" registered; see `airlockctl plugins`")))),
        ("operation-complete.empty-extended", Frame(operationID: 2, flags: .final, message: .operationComplete(OperationComplete(
            errorCode: 995, extendedInformation: "", message: "operation cancelled by the client")))),
        ("shell-closed", Frame(operationID: 0, message: .shellClosed(ShellClosed(
            shellID: 1, errorCode: 0x8033_8083, extendedInformation: nil,
            message: "plug-in \"shell\" crashed (SIGSEGV) in WSManPluginReceive; it is quarantined")))),
        ("command-ended", Frame(operationID: 0, message: .commandEnded(CommandEnded(
            shellID: 1, commandID: 2, errorCode: 0x8033_8029, extendedInformation: "timeout",
            message: "command 2 of shell 1 passed its deadline")))),
        ("receive-result-in-ring", Frame(operationID: 12, message: .receiveResultInRing(RingReceiveResult(
            flags: 0, stream: "stdout", position: 0x1_003F_0000, length: 65_536, commandState: nil, exitCode: 0)))),
        ("receive-result-in-ring.done", Frame(operationID: 12, message: .receiveResultInRing(RingReceiveResult(
            flags: 1, stream: "stdout", position: 0x1_0040_0000, length: 16_384,
            commandState: shellNS + "/CommandState/Done", exitCode: 1)))),
        ("status-reply", Frame(operationID: 20, flags: .final, message: .statusReply(
            json: #"{"workers":[{"plugin":"écho","pid":4242,"state":"running","restarts":0}]}"#))),

        // MARK: Worker channel, supervisor to worker
        ("w-start", Frame(operationID: 0, message: .workerStart(WorkerStart(
            plugin: "shell", libraryPath: "/usr/lib/airlock/plugins/libairlock-plugin-shell.so",
            applicationIdentification: "wsman", extraInfo: "mode=strict;lang=日本語",
            startupFlags: 2, maxEnvelopeSize: 512_000, outputWindowBytes: 1_048_576, dropOutput: false,
            configuration: [
                ConfigurationValue(flag: 1, value: .dword(0)),
                ConfigurationValue(flag: 2, value: .text("airlock-shell")),
                ConfigurationValue(flag: 3, value: .dword(1)),
                ConfigurationValue(flag: 4, value: .dword(300)),
                ConfigurationValue(flag: 5, value: .text("shell")),
                ConfigurationValue(flag: 6, value: .binary([0xCA, 0xFE])),
                ConfigurationValue(flag: 7, value: .none),
            ],
            sandboxProfile: [0xFF, 0x03, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF])))),
        ("w-start.minimal", Frame(operationID: 0, message: .workerStart(WorkerStart(
            plugin: "noop", libraryPath: "libairlock-plugin-noop.so", applicationIdentification: "",
            extraInfo: nil, startupFlags: 0, maxEnvelopeSize: 4_096, outputWindowBytes: 0, dropOutput: true,
            configuration: [], sandboxProfile: [])))),
        ("w-shutdown", Frame(operationID: 0, message: .workerShutdown(WorkerShutdown(reason: 2, graceMs: 5_000)))),
        ("w-cancel", Frame(operationID: 12, message: .workerCancel)),
        ("w-credit", Frame(operationID: 12, message: .workerCredit(bytes: 65_536))),
        ("w-shell", Frame(operationID: 7, message: .workerShell(WorkerShell(
            context: contextNonASCII, shellID: 1, idleTimeoutMs: 7_200_000,
            inputStreams: ["stdin"], outputStreams: ["stdout", "stderr"], workingDirectory: "/tmp/çà",
            environment: [EnvironmentVariable(name: "A", value: "ä")], name: nil,
            options: [WSManOption(name: "o", value: "v", mustComply: true)], optionsMustUnderstand: false,
            inboundShellInformation: .binary([0x01]))))),
        ("w-shell.empty", Frame(operationID: 30, message: .workerShell(WorkerShell(
            context: context, shellID: 9, idleTimeoutMs: 0, inputStreams: [], outputStreams: [],
            workingDirectory: nil, environment: [], name: "named", options: [], optionsMustUnderstand: true,
            inboundShellInformation: .none)))),
        ("w-command", Frame(operationID: 8, message: .workerCommand(WorkerCommand(
            context: context, shellID: 1, commandID: 2, commandLine: "uname", arguments: ["-a", "ü"],
            options: [])))),
        ("w-send", Frame(operationID: 10, message: .workerSend(WorkerSend(
            context: context, shellID: 1, commandID: 2, stream: "stdin", endOfStream: true, data: [0x00, 0xFF, 0x0A])))),
        ("w-receive", Frame(operationID: 12, message: .workerReceive(WorkerReceive(
            context: context, shellID: 1, commandID: 2, streams: ["stdout"])))),
        ("w-signal", Frame(operationID: 14, message: .workerSignal(WorkerSignal(
            context: context, shellID: 1, commandID: 2, code: shellNS + "/signal/terminate")))),
        ("w-connect", Frame(operationID: 15, message: .workerConnect(WorkerConnect(
            context: context, shellID: 1, commandID: 0, inboundConnectInformation: .dword(7))))),

        // MARK: Worker channel, worker to supervisor
        ("w-ready", Frame(operationID: 0, message: .workerReady(WorkerReady(
            errorCode: 0, message: "", exports: 0x3FF, sandbox: [
                SandboxLayerReport(name: "user-namespace", state: "active"),
                SandboxLayerReport(name: "network-namespace", state: "off"),
                SandboxLayerReport(name: "landlock", state: "unavailable: kernel ABI 0 – ✗"),
            ])))),
        ("w-ready.failed", Frame(operationID: 0, message: .workerReady(WorkerReady(
            errorCode: 0x8033_809A, message: "libairlock-test-noexport.so lacks WSManPluginShell",
            exports: 0x3, sandbox: [])))),
        ("w-context", Frame(operationID: 7, message: .workerContext)),
        ("w-result", Frame(operationID: 12, message: .workerResult(ReceiveResult(
            flags: 1, stream: "stdout", streamResult: .binary([0x6F, 0x6B, 0x0A]),
            commandState: shellNS + "/CommandState/Done", exitCode: 0)))),
        ("w-complete", Frame(operationID: 12, flags: .final, message: .workerComplete(WorkerComplete(
            errorCode: 0, extendedInformation: nil)))),
        ("w-complete.error", Frame(operationID: 13, flags: .final, message: .workerComplete(WorkerComplete(
            errorCode: 0x8033_8003, extendedInformation: "<fault>ошибка</fault>")))),
        ("w-breach", Frame(operationID: 0, message: .workerBreach(
            message: "WSManPluginOperationComplete called twice for one request"))),
        ("w-shutdown-done", Frame(operationID: 0, message: .workerShutdownDone(WorkerShutdownDone(
            errorCode: 0, threadsLeft: 1)))),
        ("w-fatal", Frame(operationID: 0, message: .workerFatal(message: "seccomp denied syscall 165 (mount)"))),
        ("w-report-completion", Frame(operationID: 0, message: .workerReportCompletion(flags: 0))),
    ]
}
