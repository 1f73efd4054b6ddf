// airlock-systemd-probe: a small real program around AirlockSystemd and AirlockLogging,
// for the tests that need a process of their own.
//
//   airlock-systemd-probe socket-activation
//       Sets LISTEN_PID to its own pid when PROBE_LISTEN_PID_SELF=1 (what systemd does
//       after fork), reads the passed descriptors and prints one line per descriptor,
//       "<fd> <name> listening|other", then "env-cleared yes|no". Used by
//       AirlockSystemdTests, which spawns it with sockets at fds 3 and 4.
//
//   airlock-systemd-probe standin [WORKER-EXECUTABLE [ARGS...]]
//       A stand-in for airlockd under the real airlockd.service/socket (Tests/systemd/
//       nspawn-test.sh, until airlockd exists): logs through AirlockLog, serves the
//       activated socket (answers each connection with one status line), sends READY=1 and
//       STATUS=, pings the watchdog at half its interval, handles SIGHUP (RELOADING=1, then
//       READY=1) and SIGTERM (STOPPING=1), moves itself into the cgroup
//       <own>/supervisor and starts the worker executable in <own>/workers/echo, logging
//       its output lines with PLUGIN=echo and WORKER_PID=.
//
//   airlock-systemd-probe connect SOCKET-PATH
//       Connects, prints what the server sends until it closes.
//
//   airlock-systemd-probe log MESSAGE
//       Logs MESSAGE at notice level with plugin=probe metadata through AirlockLog.

import AirlockLogging
import AirlockSystemd
import Glibc
import Logging

@main
enum Probe {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        switch arguments.first {
        case "socket-activation": exit(socketActivation())
        case "standin": exit(Standin(worker: Array(arguments.dropFirst())).run())
        case "connect" where arguments.count == 2: exit(connectAndPrint(path: arguments[1]))
        case "log" where arguments.count == 2:
            let destination = AirlockLog.bootstrap(label: "airlock-systemd-probe")
            Logger(label: "airlock-systemd-probe").notice(
                "\(arguments[1])", metadata: ["plugin": "probe", "destination": "\(destination)"])
            exit(0)
        default:
            fail("usage: airlock-systemd-probe socket-activation | standin [WORKER ARGS...] | connect PATH | log MESSAGE")
        }
    }

    static func socketActivation() -> Int32 {
        if getenv("PROBE_LISTEN_PID_SELF") != nil { setenv("LISTEN_PID", String(getpid()), 1) }
        do {
            for passed in try SocketActivation.passedFileDescriptors() {
                print("\(passed.fileDescriptor) \(passed.name) \(passed.isListeningUnixStream ? "listening" : "other")")
            }
        } catch {
            print("error \(error.errno)")
        }
        let cleared = getenv("LISTEN_FDS") == nil && getenv("LISTEN_PID") == nil && getenv("LISTEN_FDNAMES") == nil
        print("env-cleared \(cleared ? "yes" : "no")")
        return 0
    }

    static func connectAndPrint(path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { fail("socket: \(String(cString: strerror(errno)))") }
        guard withUnixAddress(path, { connect(fd, $0, $1) }) == 0 else {
            fail("connect \(path): \(String(cString: strerror(errno)))")
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            _ = buffer.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, count) }
        }
        close(fd)
        return 0
    }
}

func fail(_ message: String) -> Never {
    let line = "airlock-systemd-probe: \(message)\n"
    _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    exit(2)
}

func withUnixAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    precondition(bytes.count < MemoryLayout.size(ofValue: address.sun_path), "socket path too long")
    withUnsafeMutableBytes(of: &address.sun_path) { buffer in
        for (index, byte) in bytes.enumerated() { buffer[index] = byte }
        buffer[bytes.count] = 0
    }
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}
