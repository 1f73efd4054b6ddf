import AirlockClient
import AirlockPosix
import ArgumentParser
import Foundation
import Glibc
import Synchronization

/// `airlockctl run --plugin NAME [--timeout SECONDS] -- COMMAND [ARGS...]`.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one command in a fresh shell of a plug-in.",
        discussion: """
            Creates a shell of the plug-in, runs COMMAND with ARGS in it, forwards standard \
            input (end of input closes the command's stdin), writes the command's stdout and \
            stderr streams to ours as they arrive, closes the shell and exits with the \
            command's exit code. The first SIGINT (Ctrl-C) sends ctrl_c to the command, the \
            second sends terminate, the third exits at once.

            Example: airlockctl run --plugin shell -- uname -a
            """)

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: ArgumentHelp("The registered plug-in to run the command with.", valueName: "name"))
    var plugin: String

    @Option(name: .long, help: ArgumentHelp("Give up after this many seconds (default: no limit).", valueName: "seconds"))
    var timeout: Double?

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command line, then its arguments (after --).", valueName: "command"))
    var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else {
            throw ValidationError("Missing the command to run: put it after '--' (airlockctl run --plugin NAME -- COMMAND [ARGS...]).")
        }
        if let timeout, !(timeout > 0) { throw ValidationError("--timeout must be a positive number of seconds.") }
    }

    func run() async throws {
        let status = await CommandRunner(
            socket: global, plugin: plugin, commandLine: command[0], arguments: Array(command.dropFirst()),
            timeout: timeout.map { Duration.milliseconds(Int64(($0 * 1000).rounded(.up))) }
        ).run()
        throw ExitCode(status)
    }
}

/// Runs one command end to end and returns the exit status for `airlockctl`.
struct CommandRunner {
    let socket: GlobalOptions
    let plugin: String
    let commandLine: String
    let arguments: [String]
    let timeout: Duration?

    func run() async -> Int32 {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        let interrupts = InterruptForwarder.install()
        let connection: AirlockConnection
        do {
            connection = try await AirlockConnection.connect(socketPath: socket.socketPath, clientName: "airlockctl")
        } catch {
            return report(error).rawValue
        }
        defer { connection.close() }

        let shell: Shell
        do {
            shell = try await connection.createShell(ShellRequest(plugin: plugin, timeout: timeout))
        } catch {
            return report(error, plugin: plugin).rawValue
        }
        let status: Int32
        var running: Command?
        do {
            let command = try await shell.run(commandLine, arguments: arguments, timeout: remaining(until: deadline))
            running = command
            interrupts.attach(command)
            StandardInputPump.start(for: command)
            status = try await relayOutput(of: command, deadline: deadline)
        } catch {
            status = report(error, plugin: plugin).rawValue
            if error.code == WSManError.operationTimedOut, let running {
                // Our deadline passed: do not leave the command running.
                try? await running.signal(.terminate, timeout: .seconds(5))
            }
        }
        interrupts.detach()
        try? await shell.close()
        return status
    }

    /// Writes the command's output to ours until it is done; returns its exit code.
    private func relayOutput(of command: Command, deadline: ContinuousClock.Instant?) async throws(AirlockError) -> Int32 {
        var exitCode: UInt32 = 0
        do {
            for try await chunk in command.outputUntilDone(deadline: deadline) {
                switch chunk.stream {
                case "stderr"?: writeAll(to: .standardError, chunk.bytes)
                case _?: writeAll(to: .standardOutput, chunk.bytes)
                case nil: break
                }
                if let code = chunk.exitCode { exitCode = code }
            }
        } catch let error as AirlockError {
            throw error
        } catch {
            throw AirlockError(code: WSManError.operationAborted, message: "receiving output failed: \(error)")
        }
        return Int32(truncatingIfNeeded: exitCode)
    }

    private func remaining(until deadline: ContinuousClock.Instant?) -> Duration? {
        guard let deadline else { return nil }
        return max(deadline - ContinuousClock.now, .milliseconds(1))
    }
}

/// Forwards standard input to a command's `stdin` from a dedicated thread: each read is
/// sent and acknowledged before the next (the plug-in API allows one outstanding Send per
/// stream), and end of input — or a closed descriptor, or `/dev/null` — sends end-of-stream.
enum StandardInputPump {
    static func start(for command: Command) {
        Thread.detachNewThread {
            pump(command)
        }
    }

    private static func pump(_ command: Command) {
        if standardInputIsAbsent() {
            try? command.sendBlocking([], endOfStream: true)
            return
        }
        let size = min(65_536, command.maximumSendSize())
        var buffer = [UInt8](repeating: 0, count: size)
        while true {
            let count: Int
            do {
                count = try buffer.withUnsafeMutableBytes { (bytes) throws(SystemCallError) -> Int in
                    try Posix.read(.standardInput, into: bytes) ?? 0
                }
            } catch {
                count = 0  // EBADF, EIO...: treat as the end of input.
            }
            if count == 0 {
                try? command.sendBlocking([], endOfStream: true)
                return
            }
            do {
                try command.sendBlocking(Array(buffer[0..<count]))
            } catch {
                return  // The command no longer takes input.
            }
        }
    }

    /// True when descriptor 0 is closed or is `/dev/null`.
    private static func standardInputIsAbsent() -> Bool {
        var input = stat()
        if fstat(0, &input) == -1 { return true }
        var null = stat()
        guard stat("/dev/null", &null) == 0 else { return false }
        return input.st_mode & S_IFMT == S_IFCHR && input.st_rdev == null.st_rdev
    }
}

/// The write end of the SIGINT self-pipe, written by the signal handler.
nonisolated(unsafe) private var interruptPipeWriter: Int32 = -1

/// Turns SIGINT into signals for the running command: the first sends ctrl_c, the second
/// terminate, the third (or any before the command started) exits with status 130.
final class InterruptForwarder: Sendable {
    private struct State {
        var interrupts = 0
        var command: Command?
    }

    private let state = Mutex(State())

    /// Installs the SIGINT handler and the thread that acts on it.
    static func install() -> InterruptForwarder {
        let forwarder = InterruptForwarder()
        guard let pipe = try? Posix.pipe() else { return forwarder }
        interruptPipeWriter = pipe.write.rawValue
        signal(SIGINT) { _ in
            var byte: UInt8 = 1
            _ = Glibc.write(interruptPipeWriter, &byte, 1)
        }
        Thread.detachNewThread {
            var byte: UInt8 = 0
            while true {
                let count = withUnsafeMutableBytes(of: &byte) { try? Posix.read(pipe.read, into: $0) }
                guard let count, count == 1 else { return }
                forwarder.interrupted()
            }
        }
        return forwarder
    }

    /// The command interrupts now go to.
    func attach(_ command: Command) {
        state.withLock { $0.command = command }
    }

    /// The command ended: interrupts exit again.
    func detach() {
        state.withLock { $0.command = nil }
    }

    private func interrupted() {
        let (count, command) = state.withLock { state -> (Int, Command?) in
            state.interrupts += 1
            return (state.interrupts, state.command)
        }
        guard let command, count < 3 else { exit(ExitStatus.interrupted) }
        try? command.signalBlocking(count == 1 ? .ctrlC : .terminate)
    }
}
