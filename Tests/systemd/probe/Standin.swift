import AirlockLogging
import AirlockSystemd
import Glibc
import Logging

/// A stand-in for airlockd under the real units: exercises the unit's hardening, socket
/// activation, notification, watchdog, delegated cgroups and journald fields with a real
/// Swift process, before airlockd itself exists. Single-threaded, poll(2)-driven.
struct Standin {
    let worker: [String]

    func run() -> Int32 {
        AirlockLog.bootstrap(label: "airlockd")
        let logger = Logger(label: "airlockd")
        let notifier = SystemdNotifier()

        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGHUP, SIGTERM, SIGINT, SIGCHLD] { sigaddset(&signals, signal) }
        // Blocked, then collected with sigtimedwait(2) on every turn of the loop (signalfd is
        // GNU-only and invisible to Swift's Glibc module), so poll waits at most 200 ms.
        sigprocmask(SIG_BLOCK, &signals, nil)

        var listeners = SocketActivation.listenFileDescriptors()
        let activated = !listeners.isEmpty
        if !activated { listeners = [bindFallback(path: "/run/airlock/airlockd.sock")] }

        let cgroup = ownCgroup()
        var workerCgroup: String? = nil
        if let cgroup {
            mkdir(cgroup + "/supervisor", 0o755)
            mkdir(cgroup + "/workers", 0o755)
            mkdir(cgroup + "/workers/echo", 0o755)
            if !writeFile(cgroup + "/supervisor/cgroup.procs", "\(getpid())") {
                logger.error("cannot enter the supervisor cgroup", metadata: ["cgroup": "\(cgroup)", "errno": "\(errno)"])
            } else {
                workerCgroup = cgroup + "/workers/echo"
            }
        }

        var workerPID: pid_t = 0
        var workerOutput: Int32 = -1
        if !worker.isEmpty, let (pid, output) = spawn(worker, signals: signals) {
            workerPID = pid
            workerOutput = output
            if let workerCgroup, !writeFile(workerCgroup + "/cgroup.procs", "\(pid)") {
                logger.error("cannot move the worker into its cgroup", metadata: ["worker_pid": "\(pid)", "errno": "\(errno)"])
            }
            logger.info("worker started", metadata: ["plugin": "echo", "worker_pid": "\(pid)"])
        }

        let summary = { "stand-in: \(listeners.count) socket(s)\(activated ? " (activated)" : ""), worker \(workerPID > 0 ? "running" : "none")" }
        logger.notice("ready", metadata: ["activated": "\(activated)"])
        _ = try? notifier.ready(status: summary())

        let pingInterval = notifier.watchdogInterval.map { $0 / 2 }
        var nextPing = ContinuousClock.now
        var splitter = OutputLineSplitter()
        let limiter = RateLimiter(burst: 100, interval: .seconds(10))
        var connections = 0

        while true {
            if let pingInterval, ContinuousClock.now >= nextPing {
                _ = try? notifier.watchdog()
                nextPing = ContinuousClock.now + pingInterval
            }
            var descriptors = listeners.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            descriptors.append(pollfd(fd: workerOutput, events: Int16(POLLIN), revents: 0))  // ignored when -1
            let untilPing: Int32 = pingInterval.map { _ in
                let (seconds, attoseconds) = (nextPing - ContinuousClock.now).components
                return max(0, Int32(seconds * 1000 + attoseconds / 1_000_000_000_000_000))
            } ?? 200
            let ready = poll(&descriptors, nfds_t(descriptors.count), min(untilPing, 200))
            if ready < 0 && errno != EINTR { fail("poll: \(String(cString: strerror(errno)))") }

            for (index, listener) in listeners.enumerated() where descriptors[index].revents != 0 {
                let connection = accept(listener, nil, nil)
                guard connection >= 0 else { continue }
                connections += 1
                let line = "airlockd stand-in pid=\(getpid()) worker_pid=\(workerPID) connections=\(connections)\n"
                _ = line.withCString { send(connection, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
                close(connection)
            }

            var noWait = timespec(tv_sec: 0, tv_nsec: 0)
            while case let signal = sigtimedwait(&signals, nil, &noWait), signal > 0 {
                switch signal {
                case SIGHUP:
                    logger.notice("reloading")
                    _ = try? notifier.reloading(status: "reloading")
                    _ = try? notifier.ready(status: summary() + ", reloaded")
                case SIGCHLD:
                    var status: Int32 = 0
                    while case let pid = waitpid(-1, &status, WNOHANG), pid > 0 {
                        logger.warning("worker exited", metadata: ["plugin": "echo", "worker_pid": "\(pid)", "status": "\(status)"])
                        if pid == workerPID { workerPID = 0 }
                    }
                default:
                    _ = try? notifier.stopping(status: "stopping")
                    logger.notice("stopping", metadata: ["signal": "\(signal)"])
                    if workerPID > 0 {
                        kill(workerPID, SIGTERM)
                        var status: Int32 = 0
                        waitpid(workerPID, &status, 0)
                    }
                    return 0
                }
            }

            if workerOutput >= 0, descriptors[listeners.count].revents != 0 {
                var buffer = [UInt8](repeating: 0, count: 4096)
                let count = buffer.withUnsafeMutableBytes { read(workerOutput, $0.baseAddress, $0.count) }
                if count <= 0 {
                    close(workerOutput)
                    workerOutput = -1
                    continue
                }
                for line in splitter.append(buffer[..<count]) {
                    switch limiter.admit("echo") {
                    case .log(let suppressed):
                        if suppressed > 0 { logger.warning("suppressed \(suppressed) lines", metadata: ["plugin": "echo"]) }
                        logger.info("\(line)", metadata: ["plugin": "echo", "worker_pid": "\(workerPID)", "stream": "stdout"])
                    case .suppress:
                        break
                    }
                }
            }
        }
    }

    /// The service's own cgroup directory, from `/proc/self/cgroup` (`0::/system.slice/...`).
    private func ownCgroup() -> String? {
        guard let text = readFile("/proc/self/cgroup") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("0::") {
            return "/sys/fs/cgroup" + line.dropFirst(3)
        }
        return nil
    }

    private func bindFallback(path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        unlink(path)
        guard fd >= 0, withUnixAddress(path, { bind(fd, $0, $1) }) == 0, listen(fd, 64) == 0 else {
            fail("cannot listen on \(path): \(String(cString: strerror(errno)))")
        }
        return fd
    }

    /// Starts the worker with stdout and stderr on a pipe and an empty signal mask.
    private func spawn(_ command: [String], signals: sigset_t) -> (pid_t, Int32)? {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { return nil }
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, ends[1], 1)
        posix_spawn_file_actions_adddup2(&actions, ends[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        var argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attributes)
            close(ends[1])
        }
        var pid: pid_t = 0
        guard posix_spawn(&pid, command[0], &actions, &attributes, &argv, environ) == 0 else {
            close(ends[0])
            return nil
        }
        return (pid, ends[0])
    }
}

func readFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count <= 0 { break }
        bytes += buffer[..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

func writeFile(_ path: String, _ text: String) -> Bool {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return text.withCString { write(fd, $0, strlen($0)) } == text.utf8.count
}
