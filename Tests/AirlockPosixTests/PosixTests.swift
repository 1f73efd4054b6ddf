import AirlockPosix
import Glibc
import Testing

/// A fresh temporary directory, removed with everything in it by `cleanup`.
func makeTemporaryDirectory() -> String {
    var template = Array("/tmp/airlock-posix-test.XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    return path
}

func removeTree(_ path: String) {
    _ = try? ProcessControl.wait(pid: try ProcessControl.spawn(executable: "/bin/rm", arguments: ["-rf", path], environment: [:], fileDescriptors: [], newSession: false))
}

@Suite struct SocketTests {
    @Test func seqPacketPairRoundTrip() throws {
        let (a, b) = try UnixSocket.makePair(.seqPacket)
        defer { try? Posix.close(a); try? Posix.close(b) }
        let message: [UInt8] = [1, 2, 3, 4, 5]
        let sent = try message.withUnsafeBytes { try Posix.send(a, $0) }
        #expect(sent == 5)
        var buffer = [UInt8](repeating: 0, count: 64)
        let result = try buffer.withUnsafeMutableBytes { try Posix.receivePacket(b, into: $0) }
        #expect(result == .packet(5))
        #expect(Array(buffer.prefix(5)) == message)
    }

    @Test func seqPacketTruncationIsReported() throws {
        let (a, b) = try UnixSocket.makePair(.seqPacket)
        defer { try? Posix.close(a); try? Posix.close(b) }
        let message = [UInt8](repeating: 7, count: 100)
        _ = try message.withUnsafeBytes { try Posix.send(a, $0) }
        var buffer = [UInt8](repeating: 0, count: 10)
        let result = try buffer.withUnsafeMutableBytes { try Posix.receivePacket(b, into: $0) }
        #expect(result == .truncated(received: 10, size: 100))
    }

    @Test func nonBlockingReceiveWouldBlockThenEndOfFile() throws {
        let (a, b) = try UnixSocket.makePair(.seqPacket, nonBlocking: true)
        defer { try? Posix.close(b) }
        var buffer = [UInt8](repeating: 0, count: 10)
        #expect(try buffer.withUnsafeMutableBytes { try Posix.receivePacket(b, into: $0) } == .wouldBlock)
        try Posix.close(a)
        #expect(try buffer.withUnsafeMutableBytes { try Posix.receivePacket(b, into: $0) } == .endOfFile)
    }

    @Test func sendToClosedPeerIsEPIPENotSIGPIPE() throws {
        let (a, b) = try UnixSocket.makePair(.stream)
        defer { try? Posix.close(a) }
        try Posix.close(b)
        let byte: [UInt8] = [1]
        #expect(throws: SystemCallError(call: "send", errno: .brokenPipe)) {
            _ = try byte.withUnsafeBytes { try Posix.send(a, $0) }
        }
    }

    @Test func peerCredentialsAreOurs() throws {
        let (a, b) = try UnixSocket.makePair(.stream)
        defer { try? Posix.close(a); try? Posix.close(b) }
        let credentials = try UnixSocket.peerCredentials(a)
        #expect(credentials.uid == getuid())
        #expect(credentials.gid == getgid())
        #expect(credentials.pid == getpid())
    }

    @Test func listenConnectAcceptAtPath() throws {
        let directory = makeTemporaryDirectory()
        defer { removeTree(directory) }
        let path = directory + "/sub/test.sock"
        let listener = try UnixSocket.listen(path: path, options: .init(createParentDirectory: true, mode: 0o660))
        var status = stat()
        #expect(stat(path, &status) == 0)
        #expect(status.st_mode & 0o777 == 0o660)
        #expect(try UnixSocket.accept(listener) == nil)
        let client = try UnixSocket.connect(path: path)
        defer { try? Posix.close(client) }
        let acceptedServer = try UnixSocket.accept(listener)
        try Posix.close(listener)   // exactly once: a second close could hit a descriptor another test opened since
        let server = try #require(acceptedServer)
        defer { try? Posix.close(server) }
        #expect(try UnixSocket.peerCredentials(server).pid == getpid())

        let payload: [UInt8] = Array("hello".utf8)
        _ = try payload.withUnsafeBytes { try Posix.writev(client, [UnsafeRawBufferPointer(rebasing: $0[0..<2]), UnsafeRawBufferPointer(rebasing: $0[2...])]) }
        #expect(try Posix.poll(server, for: .input, timeoutMilliseconds: -1).contains(.input))
        var buffer = [UInt8](repeating: 0, count: 16)
        let count = try buffer.withUnsafeMutableBytes { try Posix.read(server, into: $0) }
        #expect(count == 5)

        // A stale socket file is replaced; a regular file is not.
        let again = try UnixSocket.listen(path: path)
        try Posix.close(again)
        let regular = directory + "/plain"
        try Posix.close(try Posix.open(regular, flags: O_CREAT | O_WRONLY))
        #expect(throws: SystemCallError.self) { _ = try UnixSocket.listen(path: regular) }
        #expect(access(regular, F_OK) == 0)
    }

    @Test func connectToMissingPathNamesThePathAndErrno() throws {
        let error = #expect(throws: SystemCallError.self) {
            _ = try UnixSocket.connect(path: "/nonexistent-airlock/x.sock")
        }
        #expect(error?.description == "connect(/nonexistent-airlock/x.sock): No such file or directory (ENOENT)")
    }

    @Test func bufferSizes() throws {
        let (a, b) = try UnixSocket.makePair(.seqPacket)
        defer { try? Posix.close(a); try? Posix.close(b) }
        try UnixSocket.setBufferSize(a, .send, bytes: 65536, force: getuid() == 0)
        #expect(try UnixSocket.bufferSize(a, .send) >= 65536)
    }
}

@Suite struct ReactorTests {
    @Test func epollReportsReadinessWithUserData() throws {
        let epoll = try Epoll(maximumEvents: 4)
        let (a, b) = try UnixSocket.makePair(.stream, nonBlocking: true)
        defer { try? Posix.close(a); try? Posix.close(b) }
        try epoll.add(b, events: [.input, .readHangup], userData: 42)
        #expect(try epoll.wait(timeoutMilliseconds: 0).isEmpty)
        let byte: [UInt8] = [9]
        _ = try byte.withUnsafeBytes { try Posix.send(a, $0) }
        let ready = try epoll.wait(timeoutMilliseconds: -1)
        #expect(ready.count == 1)
        #expect(ready.first?.userData == 42)
        #expect(ready.first?.events.contains(.input) == true)
        try epoll.modify(b, events: [.output], userData: 7)
        #expect(try epoll.wait(timeoutMilliseconds: -1).first?.userData == 7)
        try epoll.remove(b)
        #expect(try epoll.wait(timeoutMilliseconds: 0).isEmpty)
    }

    @Test func eventDescriptorCounts() throws {
        let event = try EventDescriptor()
        #expect(try event.consume() == nil)
        try event.signal()
        try event.signal(2)
        #expect(try Posix.poll(event.fd, for: .input, timeoutMilliseconds: 0).contains(.input))
        #expect(try event.consume() == 3)
        #expect(try event.consume() == nil)
    }

    @Test func pipeIsCloseOnExec() throws {
        let (r, w) = try Posix.pipe(nonBlocking: true)
        defer { try? Posix.close(r); try? Posix.close(w) }
        #expect(fcntl(r.rawValue, F_GETFD) & FD_CLOEXEC != 0)
        var buffer = [UInt8](repeating: 0, count: 4)
        #expect(try buffer.withUnsafeMutableBytes { try Posix.read(r, into: $0) } == nil)
    }
}

@Suite struct ProcessTests {
    @Test func spawnAndWaitForExitCode() throws {
        let pid = try ProcessControl.spawn(executable: "/bin/sh", arguments: ["-c", "exit 3"], environment: [:], fileDescriptors: [], newSession: true)
        #expect(try ProcessControl.wait(pid: pid) == .exited(3))
    }

    @Test func killedBySIGKILLIsSignaled() throws {
        let pid = try ProcessControl.spawn(executable: "/bin/sleep", arguments: ["60"], environment: [:], fileDescriptors: [], newSession: true)
        try ProcessControl.kill(pid, signal: SIGKILL)
        #expect(try ProcessControl.wait(pid: pid) == .signaled(9, coreDumped: false))
        #expect(try ProcessControl.kill(pid, signal: 0) == false)
    }

    @Test func spawnedChildGetsDescriptorAsNumberThreeAndNothingElse() throws {
        let (parentEnd, childEnd) = try UnixSocket.makePair(.stream)
        defer { try? Posix.close(parentEnd) }
        // The child writes its own list of open descriptors (besides 0-2) to fd 3.
        let script = "ls /proc/self/fd >&3; echo \"$AIRLOCK_TEST\" >&3"
        let pid = try ProcessControl.spawn(
            executable: "/bin/sh", arguments: ["-c", script], environment: ["AIRLOCK_TEST": "ok"],
            fileDescriptors: [.init(source: childEnd, target: 3)], newSession: true)
        try Posix.close(childEnd)
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        while let count = try buffer.withUnsafeMutableBytes({ try Posix.read(parentEnd, into: $0) }), count > 0 {
            output += buffer.prefix(count)
        }
        #expect(try ProcessControl.wait(pid: pid) == .exited(0))
        let lines = String(decoding: output, as: UTF8.self).split(separator: "\n").map(String.init)
        // ls itself opens one directory descriptor (the fourth entry).
        #expect(lines.last == "ok")
        #expect(lines.contains("3"))
        #expect(lines.filter { Int($0) != nil }.count <= 5)
    }

    @Test func newSessionMakesAProcessGroup() throws {
        let pid = try ProcessControl.spawn(executable: "/bin/sleep", arguments: ["60"], environment: [:], fileDescriptors: [], newSession: true)
        #expect(getpgid(pid) == pid)
        #expect(getsid(pid) == pid)
        try ProcessControl.killProcessGroup(pid, signal: SIGTERM)
        #expect(try ProcessControl.wait(pid: pid) == .signaled(SIGTERM, coreDumped: false))
    }

    @Test func spawnOfMissingExecutableThrows() throws {
        #expect(throws: SystemCallError.self) {
            _ = try ProcessControl.spawn(executable: "/nonexistent/airlock", arguments: [], environment: [:], fileDescriptors: [], newSession: false)
        }
    }

    @Test func signalNames() {
        #expect(ProcessControl.signalName(SIGSEGV) == "SIGSEGV")
        #expect(ProcessControl.signalName(SIGKILL) == "SIGKILL")
        #expect(ProcessControl.signalName(SIGSYS) == "SIGSYS")
        #expect(ProcessControl.signalName(SIGCHLD) == "SIGCHLD")
        #expect(ProcessControl.signalName(SIGABRT) == "SIGABRT")
        #expect(ProcessControl.signalName(ProcessControl.realTimeSignals.lowerBound + 2).hasPrefix("SIGRTMIN+"))
        #expect(WaitStatus.signaled(SIGSEGV, coreDumped: true).description == "killed by SIGSEGV (core dumped)")
    }

    @Test func errnoNames() {
        #expect(SystemCallError(call: "x", errno: .resourceTemporarilyUnavailable).errnoName == "EAGAIN")
        #expect(SystemCallError(call: "unshare", errno: .notPermitted).description == "unshare: Operation not permitted (EPERM)")
    }
}

@Suite struct SystemInformationTests {
    @Test func processStatisticsOfSelf() throws {
        let statistics = try ProcessStatistics.read(pid: getpid())
        #expect(statistics.residentBytes > 0)
        #expect(statistics.threads >= 1)
        #expect((statistics.openFiles ?? 0) >= 3)
        #expect(ProcessStatistics.threadCount() >= 1)
    }

    @Test func userDatabase() throws {
        let root = try #require(UserDatabase.lookupUser(name: "root"))
        #expect(root.uid == 0)
        #expect(UserDatabase.userName(uid: 0) == "root")
        #expect(UserDatabase.groupName(gid: 0) == "root")
        #expect(UserDatabase.lookupGroup(name: "root") == 0)
        #expect(UserDatabase.groupList(user: "root", gid: 0).contains(0))
        #expect(UserDatabase.lookupUser(name: "no-such-user-airlock") == nil)
    }

    @Test func clocksAdvance() {
        let a = SystemClock.monotonicNanoseconds()
        let b = SystemClock.monotonicNanoseconds()
        #expect(b >= a)
        #expect(SystemClock.realtime().seconds > 1_600_000_000)
    }
}
