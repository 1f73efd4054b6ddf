import AirlockPosix
import Glibc

/// Ends a process a test started and reaps it: SIGTERM, then SIGKILL to its whole process
/// group once `grace` has passed. Returns how it ended (`.exited(-1)` if it could not be
/// reaped).
func terminateAndReap(_ pid: pid_t, grace: Duration = .seconds(10)) async -> WaitStatus {
    _ = try? ProcessControl.kill(pid, signal: SIGTERM)
    let deadline = ContinuousClock.now + grace
    var status: WaitStatus?
    while status == nil && ContinuousClock.now < deadline {
        status = (try? ProcessControl.wait(pid: pid, noHang: true)) ?? nil
        if status == nil { try? await Task.sleep(for: .milliseconds(20)) }
    }
    if status == nil {
        _ = try? ProcessControl.killProcessGroup(pid, signal: SIGKILL)
        status = (try? ProcessControl.wait(pid: pid)) ?? nil
    }
    return status ?? .exited(-1)
}
