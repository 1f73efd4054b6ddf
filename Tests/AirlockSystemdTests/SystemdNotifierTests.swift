import AirlockSystemd
import Glibc
import Testing

/// These tests change the process environment (NOTIFY_SOCKET, WATCHDOG_*), so they run one
/// at a time, each with its own socket in its own temporary directory.
@Suite(.serialized)
struct SystemdNotifierTests {
    /// Runs `body` with `$NOTIFY_SOCKET` pointing at a fresh datagram socket.
    private func withNotifySocket(_ body: (NotifySocketListener) throws -> Void) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let listener = try NotifySocketListener(path: directory.path + "/notify")
        defer { listener.close() }
        try withEnvironment(["NOTIFY_SOCKET": listener.path]) { try body(listener) }
    }

    @Test func readySendsReadyAndStatus() throws {
        try withNotifySocket { listener in
            let notifier = SystemdNotifier()
            #expect(notifier.isEnabled)
            let sent = try notifier.ready(status: "2 plug-ins, 0 shells")
            #expect(sent)
            #expect(listener.receive() == "READY=1\nSTATUS=2 plug-ins, 0 shells")
            #expect(listener.receive() == nil)
        }
    }

    @Test func statusWatchdogAndStopping() throws {
        try withNotifySocket { listener in
            let notifier = SystemdNotifier()
            try notifier.status("reloading plug-in echo")
            #expect(listener.receive() == "STATUS=reloading plug-in echo")
            try notifier.watchdog()
            #expect(listener.receive() == "WATCHDOG=1")
            try notifier.stopping(status: "stopping 3 workers")
            #expect(listener.receive() == "STOPPING=1\nSTATUS=stopping 3 workers")
        }
    }

    @Test func reloadingCarriesTheMonotonicClock() throws {
        try withNotifySocket { listener in
            let before = monotonicMicroseconds()
            try SystemdNotifier().reloading(status: "reloading configuration")
            let after = monotonicMicroseconds()
            let message = try #require(listener.receive())
            let lines = message.split(separator: "\n").map(String.init)
            #expect(lines.count == 3)
            #expect(lines.first == "RELOADING=1")
            #expect(lines.last == "STATUS=reloading configuration")
            let stamp = try #require(lines.dropFirst().first)
            #expect(stamp.hasPrefix("MONOTONIC_USEC="))
            let microseconds = try #require(UInt64(stamp.dropFirst("MONOTONIC_USEC=".count)))
            #expect(microseconds >= before && microseconds <= after)
        }
    }

    @Test func reloadingWithoutStatus() throws {
        try withNotifySocket { listener in
            try SystemdNotifier().reloading()
            let lines = try #require(listener.receive()).split(separator: "\n")
            #expect(lines.count == 2)
            #expect(lines.first == "RELOADING=1")
            #expect(lines.last?.hasPrefix("MONOTONIC_USEC=") == true)
        }
    }

    @Test func newlinesInAStatusCannotStartAnotherAssignment() throws {
        try withNotifySocket { listener in
            try SystemdNotifier().status("one\nREADY=1")
            #expect(listener.receive() == "STATUS=one READY=1")
        }
    }

    @Test func extendTimeoutInMicroseconds() throws {
        try withNotifySocket { listener in
            try SystemdNotifier().extendTimeout(by: .milliseconds(2500))
            #expect(listener.receive() == "EXTEND_TIMEOUT_USEC=2500000")
        }
    }

    @Test func withoutNotifySocketNothingIsSent() throws {
        try withEnvironment(["NOTIFY_SOCKET": nil]) {
            let notifier = SystemdNotifier()
            #expect(!notifier.isEnabled)
            let sentReady = try notifier.ready(status: "ready")
            let sentWatchdog = try notifier.watchdog()
            #expect(!sentReady && !sentWatchdog)
        }
    }

    @Test func aMissingSocketIsAnError() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        withEnvironment(["NOTIFY_SOCKET": directory.path + "/nobody-listens"]) {
            #expect(throws: SystemdNotifyError.self) { try SystemdNotifier().watchdog() }
        }
    }

    @Test func watchdogIntervalFromTheEnvironment() {
        let pid = String(getpid())
        withEnvironment(["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid]) {
            #expect(SystemdNotifier().watchdogInterval == .seconds(30))
        }
        // Meant for another process (the watchdog belongs to the main pid only).
        withEnvironment(["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": String(getpid() + 1)]) {
            #expect(SystemdNotifier().watchdogInterval == nil)
        }
        withEnvironment(["WATCHDOG_USEC": nil, "WATCHDOG_PID": nil]) {
            #expect(SystemdNotifier().watchdogInterval == nil)
        }
    }
}
