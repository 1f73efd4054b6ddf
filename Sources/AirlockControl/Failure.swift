import AirlockClient
import AirlockPosix
import ArgumentParser

/// `airlockctl`'s exit statuses besides 0 and a command's own code.
enum ExitStatus {
    /// `EX_UNAVAILABLE`: airlockd cannot be reached or the connection was lost.
    static let unavailable: Int32 = 69
    /// airlockd or the plug-in failed the operation.
    static let operationFailed: Int32 = 125
    /// Interrupted (SIGINT) before the command started.
    static let interrupted: Int32 = 130
}

/// Prints `airlockctl: <what went wrong>` on standard error and returns the exit status
/// for `error`.
///
/// - Parameter plugin: the plug-in the operation was for, named in the message.
func report(_ error: AirlockError, plugin: String? = nil) -> ExitCode {
    switch error.kind {
    case .unreachable:
        printError("\(error.message) (is airlockd running? start it with 'airlockd' or set --socket)")
        return ExitCode(ExitStatus.unavailable)
    case .connectionLost, .protocolViolation:
        printError(error.message)
        return ExitCode(ExitStatus.unavailable)
    case .operationFailed, .cancelled:
        printError((plugin.map { "plug-in '\($0)': " } ?? "") + error.description)
        return ExitCode(ExitStatus.operationFailed)
    }
}

/// Connects to the socket of `options`, or reports why not and exits.
func connect(_ options: GlobalOptions) async throws -> AirlockConnection {
    do {
        return try await AirlockConnection.connect(socketPath: options.socketPath, clientName: "airlockctl")
    } catch {
        throw report(error)
    }
}

/// Writes `airlockctl: message` and a newline to standard error.
func printError(_ message: String) {
    writeAll(to: .standardError, Array("airlockctl: \(message)\n".utf8))
}

/// Writes `text` to standard output.
func printOutput(_ text: String) {
    writeAll(to: .standardOutput, Array(text.utf8))
}

/// Writes every byte to `fd`; write errors (a closed pipe) are ignored.
func writeAll(to fd: FileDescriptor, _ bytes: [UInt8]) {
    bytes.withUnsafeBytes { buffer in
        _ = try? Posix.writeAll(fd, buffer)
    }
}
