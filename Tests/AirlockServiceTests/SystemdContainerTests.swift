import Glibc
import Testing

/// Airlock as a Linux service under a real systemd 252 (issue 6): `Tests/systemd/nspawn-test.sh`
/// boots Debian bookworm in systemd-nspawn, installs this build's airlockd, airlock-worker,
/// airlockctl, the example plug-ins and the units from `deploy/`, and checks socket
/// activation, READY=1 and STATUS=, a plug-in run through airlockctl, journald's structured
/// fields, the watchdog restart, workers in the delegated cgroup, reload and stop.
///
/// The root file system is built once with debootstrap from apt's Debian mirror (about a
/// minute) into /var/cache/airlock/nspawn-rootfs and reused; every boot starts from it clean.
/// The script holds a lock, so concurrent `swift test` runs take turns.
@Suite("Airlock under a real systemd")
struct SystemdContainerTests {
    static let toolsPresent = commandExists("systemd-nspawn") && commandExists("debootstrap")

    @Test(
        "nspawn-test.sh: every check passes with this build's airlockd in a booted systemd container",
        .enabled(if: runsAsRoot, "needs root: it boots a container with systemd-nspawn"),
        .enabled(if: toolsPresent, "needs systemd-nspawn and debootstrap (apt-get install systemd-container debootstrap, or deploy/setup-debian.sh)"),
        .timeLimit(.minutes(30))
    )
    func everyCheckPassesInAContainer() throws {
        let products = try #require(productsDirectory(), "cannot locate the build products (readlink /proc/self/exe)")
        for product in ["airlockd", "airlock-worker", "airlockctl", "libairlock-plugin-echo.so"] {
            try #require(access("\(products)/\(product)", R_OK) == 0, "\(product) is not built in \(products)")
        }

        // A cold cache adds debootstrap (about a minute with a near mirror); a run waiting
        // for another one's lock adds that run's time.
        let run = try ScriptRun.bash(repositoryDirectory() + "/Tests/systemd/nspawn-test.sh", [products], timeLimitSeconds: 1500)

        let testedAirlockd = run.output.contains("== mode: airlockd")
        #expect(testedAirlockd, "the script did not test the real airlockd:\n\(run.tail())")
        let tally = try #require(run.tally, "no 'N passed, M failed' line (exit status \(run.exitStatus)):\n\(run.tail())")
        #expect(tally.failed == 0 && run.exitStatus == 0, "\(tally.passed) passed, \(tally.failed) failed (exit status \(run.exitStatus)):\n\(run.tail())")
        #expect(tally.passed >= 20, "only \(tally.passed) checks ran:\n\(run.tail())")
    }
}

/// The unit files in `deploy/` as `deploy/verify.sh` checks them on the host:
/// `systemd-analyze verify`, `systemd-analyze security --offline=yes` at an exposure of 3.0
/// or lower, sysusers.d and tmpfiles.d on an empty root, and the example configuration.
@Suite("deploy/ unit files")
struct DeployVerificationTests {
    static let systemdAnalyzePresent = commandExists("systemd-analyze") && commandExists("systemd-sysusers")

    @Test(
        "verify.sh: systemd-analyze verify, security exposure <= 3.0, sysusers, tmpfiles, configuration",
        .enabled(if: systemdAnalyzePresent, "needs systemd-analyze and systemd-sysusers (apt-get install systemd)"),
        .timeLimit(.minutes(5))
    )
    func unitFilesVerify() throws {
        let run = try ScriptRun.bash(repositoryDirectory() + "/deploy/verify.sh", timeLimitSeconds: 240)
        let tally = try #require(run.tally, "no 'N passed, M failed' line (exit status \(run.exitStatus)):\n\(run.tail())")
        #expect(tally.failed == 0 && run.exitStatus == 0, "\(tally.passed) passed, \(tally.failed) failed (exit status \(run.exitStatus)):\n\(run.tail())")
        #expect(tally.passed >= 5, "only \(tally.passed) checks ran:\n\(run.tail())")
    }
}
