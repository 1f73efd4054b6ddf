import AirlockPosix
import AirlockSandbox
import CAirlockShims
import Glibc
import Testing

/// Real kernel checks of the layers that work in a multi-threaded process (the test runner):
/// seccomp and Landlock apply to the calling thread, which runs the whole exit test body.
/// The namespace layers need a single-threaded process; the worker's end-to-end tests cover them.
#if arch(x86_64)
let ptraceNumber = 101
#else
let ptraceNumber = 117
#endif

@Suite struct SandboxEnforcementTests {
    @Test func deniedSystemCallIsReportedByNameAndKillsWithSIGSYS() async throws {
        let directory = String(cString: mkdtemp(strdup("/tmp/airlock-sandbox-test.XXXXXX")))
        defer { _ = unlink(directory + "/channel"); _ = rmdir(directory) }
        let channelPath = directory + "/channel"
        await #expect(processExitsWith: .signal(SIGSYS)) { [channelPath = channelPath as String] in
            let fd = open(channelPath, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
            let profile = SandboxProfile(layers: [.seccomp, .noNewPrivileges])
            _ = try Sandbox.enter(profile, pluginPath: "/usr/lib/none.so", channelFD: fd)
            _ = airlock_raw_syscall3(ptraceNumber, 0, 0, 0)   // ptrace(PTRACE_TRACEME)
            exit(0)
        }
        let frame = try Posix.readFile(channelPath)
        // u32 length, u16 W_FATAL (0x0387), u16 flags 0, u64 operation 0, str message.
        #expect(frame.count > 20)
        #expect(Array(frame[4..<8]) == [0x87, 0x03, 0x00, 0x00])
        #expect(Int(frame[0]) + Int(frame[1]) << 8 == frame.count - 4)
        let message = String(decoding: frame[20...], as: UTF8.self)
        #expect(message == "seccomp: denied system call ptrace (\(ptraceNumber))")
    }

    @Test func landlockConfinesFileAccessAndTCP() async throws {
        let state = String(cString: mkdtemp(strdup("/var/tmp/airlock-sandbox-state.XXXXXX")))
        let outside = String(cString: mkdtemp(strdup("/var/tmp/airlock-sandbox-outside.XXXXXX")))
        defer {
            _ = unlink(state + "/file"); _ = rmdir(state)
            _ = unlink(outside + "/file"); _ = rmdir(outside)
        }
        await #expect(processExitsWith: .success) { [state = state as String, outside = outside as String] in
            let profile = SandboxProfile(layers: [.landlock, .noNewPrivileges], stateDirectory: state)
            let states = try Sandbox.enter(profile, pluginPath: "/usr/lib/none.so", channelFD: 2)
            guard states.first(where: { $0.name == "landlock" })?.state == "active" else { exit(10) }
            // Writable: the state directory. Not readable or writable: anything else in /var/tmp.
            let inside = open(state + "/file", O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
            guard inside >= 0 else { exit(11) }
            guard open(outside + "/file", O_CREAT | O_WRONLY | O_CLOEXEC, 0o600) == -1, errno == EACCES else { exit(12) }
            guard open(outside, O_RDONLY | O_DIRECTORY | O_CLOEXEC) == -1, errno == EACCES else { exit(13) }
            guard open("/etc/passwd", O_RDONLY | O_CLOEXEC) >= 0 else { exit(14) }
            // TCP connect is denied even to loopback.
            let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(9).bigEndian
            address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == -1, errno == EACCES else { exit(15) }
            exit(0)
        }
    }

    @Test func everyLayerIsReportedAndOffLayersSayOff() async throws {
        await #expect(processExitsWith: .success) {
            let states = try Sandbox.enter(SandboxProfile(layers: []), pluginPath: "/usr/lib/none.so", channelFD: 2)
            guard states.map(\.name) == Sandbox.layerNames else { exit(1) }
            guard states.allSatisfy({ $0.state == "off" }) else { exit(2) }
            exit(0)
        }
    }
}
