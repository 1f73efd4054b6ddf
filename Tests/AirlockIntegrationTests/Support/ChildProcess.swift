import AirlockPosix
import Foundation
import Glibc
import Synchronization

/// A failure of the test harness itself, with a message that says what to look at.
struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A child process with captured standard output and error, run by the tests (airlockctl,
/// helpers). A dedicated thread (never a Swift concurrency thread) drains its pipes and
/// reaps it, so waiting for it never blocks the cooperative pool.
final class ChildProcess: Sendable {
    /// How a finished child ended and what it wrote.
    struct Outcome: Sendable {
        var status: WaitStatus
        var stdout: [UInt8]
        var stderr: [UInt8]

        /// The exit code, or nil when a signal killed it.
        var exitCode: Int32? {
            if case .exited(let code) = status { return code }
            return nil
        }

        var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
        var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    }

    /// What the child reads on descriptor 0.
    enum Input: Sendable {
        /// `/dev/null`.
        case null
        /// These bytes, then end of file.
        case bytes([UInt8])
    }

    private struct State {
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var outcome: Outcome?
        var waiters: [CheckedContinuation<Outcome, Never>] = []
    }

    let pid: pid_t
    let executable: String
    private let state = Mutex(State())

    private init(pid: pid_t, executable: String) {
        self.pid = pid
        self.executable = executable
    }

    /// Starts `executable` with our environment plus `environment`.
    static func start(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], input: Input = .null
    ) throws -> ChildProcess {
        ignoreBrokenPipes
        var childEnvironment = ProcessInfo.processInfo.environment
        childEnvironment.merge(environment) { $1 }
        let output = try Posix.pipe()
        let errors = try Posix.pipe()
        let inputPipe: (read: FileDescriptor, write: FileDescriptor)?
        let inputSource: FileDescriptor
        switch input {
        case .null:
            inputPipe = nil
            inputSource = try Posix.open("/dev/null", flags: O_RDONLY)
        case .bytes:
            let pipe = try Posix.pipe()
            inputPipe = pipe
            inputSource = pipe.read
        }
        let pid: pid_t
        do {
            pid = try ProcessControl.spawn(
                executable: executable, arguments: arguments, environment: childEnvironment,
                fileDescriptors: [
                    .init(source: inputSource, target: 0), .init(source: output.write, target: 1), .init(source: errors.write, target: 2),
                ],
                newSession: false)
        } catch {
            for fd in [output.read, output.write, errors.read, errors.write, inputSource] { try? Posix.close(fd) }
            if let inputPipe { try? Posix.close(inputPipe.write) }
            throw error
        }
        for fd in [output.write, errors.write, inputSource] { try? Posix.close(fd) }
        let child = ChildProcess(pid: pid, executable: executable)
        if let inputPipe, case .bytes(let bytes) = input {
            Thread.detachNewThread {
                bytes.withUnsafeBytes { _ = try? Posix.writeAll(inputPipe.write, $0) }
                try? Posix.close(inputPipe.write)
            }
        }
        Thread.detachNewThread {
            child.drainAndReap(output: output.read, errors: errors.read)
        }
        return child
    }

    /// Writing input to a child that has exited must fail with `EPIPE`, not kill the tests.
    private static let ignoreBrokenPipes: Void = {
        _ = Glibc.signal(SIGPIPE, SIG_IGN)
    }()

    /// Sends `signal` to the child (no-op once it is gone).
    func signal(_ signal: Int32) {
        _ = try? ProcessControl.kill(pid, signal: signal)
    }

    /// Waits for the child to exit and its pipes to close.
    func finish() async -> Outcome {
        await withCheckedContinuation { continuation in
            let done: Outcome? = state.withLock { state in
                if let outcome = state.outcome { return outcome }
                state.waiters.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// Waits until the child's standard output contains `text`; throws when the child ends
    /// first or `timeout` passes.
    func waitForOutput(containing text: String, timeout: Duration = .seconds(30)) async throws {
        let needle = Array(text.utf8)
        let deadline = ContinuousClock.now + timeout
        while true {
            let (found, ended, sofar) = state.withLock { state in
                (Self.contains(state.stdout, needle), state.outcome != nil, state.stdout)
            }
            if found { return }
            if ended || ContinuousClock.now > deadline {
                throw HarnessError("\(executable) \(ended ? "ended" : "did not print") \"\(text)\" (stdout so far: \(String(decoding: sofar, as: UTF8.self)))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty else { return true }
        guard haystack.count >= needle.count else { return false }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if Array(haystack[start..<(start + needle.count)]) == needle { return true }
        }
        return false
    }

    /// The drain thread: reads both pipes to end of file, then reaps the child.
    private func drainAndReap(output: FileDescriptor, errors: FileDescriptor) {
        var open: [(fd: FileDescriptor, isError: Bool)] = [(output, false), (errors, true)]
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while !open.isEmpty {
            var entries = open.map { Posix.PollEntry(fd: $0.fd, events: [.input]) }
            guard (try? Posix.poll(&entries, timeoutMilliseconds: -1)) != nil else { break }
            var index = 0
            while index < open.count {
                if entries[index].returnedEvents.isEmpty {
                    index += 1
                    continue
                }
                let count = buffer.withUnsafeMutableBytes { (try? Posix.read(open[index].fd, into: $0)) ?? 0 }
                if count == 0 {
                    try? Posix.close(open[index].fd)
                    open.remove(at: index)
                    entries.remove(at: index)
                    continue
                }
                let chunk = buffer[0..<count]
                let isError = open[index].isError
                state.withLock { state in
                    if isError { state.stderr += chunk } else { state.stdout += chunk }
                }
                index += 1
            }
        }
        let status = (try? ProcessControl.wait(pid: pid)) ?? nil ?? .exited(-1)
        let waiters = state.withLock { state -> [CheckedContinuation<Outcome, Never>] in
            state.outcome = Outcome(status: status, stdout: state.stdout, stderr: state.stderr)
            defer { state.waiters = [] }
            return state.waiters
        }
        let outcome = state.withLock { $0.outcome! }
        for waiter in waiters { waiter.resume(returning: outcome) }
    }
}
