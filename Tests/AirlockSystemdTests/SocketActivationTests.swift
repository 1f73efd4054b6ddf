import Glibc
import Testing

/// Socket activation needs the sockets at fds 3, 4, ... and `$LISTEN_PID` equal to the
/// process's pid, so each test starts a real process of its own (`airlock-systemd-probe
/// socket-activation`, built next to this test bundle) with the sockets at those numbers,
/// as systemd does.
struct SocketActivationTests {
    @Test func listeningUnixStreamSocketsArePassedAndOthersReported() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let stream = try UnixSocket(type: SOCK_STREAM)
        defer { stream.close() }
        try stream.bindAndListen(path: directory.path + "/airlockd.sock")
        let datagram = try UnixSocket(type: SOCK_DGRAM)
        defer { datagram.close() }

        let output = try runProbe(
            ["socket-activation"],
            descriptors: [stream.fileDescriptor, datagram.fileDescriptor],
            environment: ["LISTEN_FDS=2", "LISTEN_FDNAMES=airlockd.socket:stray", "PROBE_LISTEN_PID_SELF=1"]
        )
        #expect(output == "3 airlockd.socket listening\n4 stray other\nenv-cleared yes\n")
    }

    @Test func withoutNamesEachDescriptorIsUnknown() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let stream = try UnixSocket(type: SOCK_STREAM)
        defer { stream.close() }
        try stream.bindAndListen(path: directory.path + "/airlockd.sock")

        let output = try runProbe(
            ["socket-activation"],
            descriptors: [stream.fileDescriptor],
            environment: ["LISTEN_FDS=1", "PROBE_LISTEN_PID_SELF=1"]
        )
        #expect(output == "3 unknown listening\nenv-cleared yes\n")
    }

    @Test func descriptorsMeantForAnotherProcessAreIgnored() throws {
        let stream = try UnixSocket(type: SOCK_STREAM)
        defer { stream.close() }
        // LISTEN_PID names another process (the test runner itself).
        let output = try runProbe(
            ["socket-activation"],
            descriptors: [stream.fileDescriptor],
            environment: ["LISTEN_FDS=1", "LISTEN_PID=\(getpid())"]
        )
        #expect(output == "env-cleared yes\n")
    }

    @Test func notActivatedMeansNoDescriptors() throws {
        #expect(try runProbe(["socket-activation"], descriptors: [], environment: []) == "env-cleared yes\n")
    }
}
