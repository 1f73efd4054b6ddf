import AirlockSandbox
import Testing

@Suite struct SandboxProfileTests {
    @Test func defaultsAreSecure() {
        let profile = SandboxProfile()
        #expect(profile.layers == .all)
        #expect(profile.memoryBytes == 1024 * 1024 * 1024)
        #expect(profile.maxTasks == 64)
        #expect(profile.maxOpenFiles == 256)
        #expect(profile.allowNetwork == false)
        #expect(profile.runAsUID == nil && profile.runAsGID == nil)
    }

    @Test func roundTrip() throws {
        let profile = SandboxProfile(
            layers: [.userNamespace, .landlock, .seccomp], runAsUID: 65534, runAsGID: nil,
            memoryBytes: 123_456_789_012, maxTasks: 7, maxOpenFiles: 99, allowNetwork: true,
            stateDirectory: "/var/lib/airlock/echo", readPaths: ["/a", "/b ü"], writePaths: ["/w"],
            cgroupPath: "/sys/fs/cgroup/x/workers/echo", supplementaryGroups: [65534, 27, 4_000_000_000])
        #expect(try SandboxProfile(decoding: profile.encoded()) == profile)
        #expect(try SandboxProfile(decoding: SandboxProfile().encoded()) == SandboxProfile())
    }

    /// PROTOCOL.md §8, byte by byte.
    @Test func encodingMatchesTheSpecification() {
        let profile = SandboxProfile(layers: [.userNamespace, .noNewPrivileges], runAsUID: nil, runAsGID: 5,
                                     memoryBytes: 0x0102_0304_0506_0708, maxTasks: 2, maxOpenFiles: 3,
                                     allowNetwork: true, stateDirectory: "s", readPaths: ["r"], writePaths: [],
                                     cgroupPath: "")
        let expected: [UInt8] = [
            0x01, 0x02, 0x00, 0x00,                          // layers: bits 0 and 9
            0xFF, 0xFF, 0xFF, 0xFF,                          // runAsUID unchanged
            0x05, 0x00, 0x00, 0x00,                          // runAsGID
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // memoryBytes
            0x02, 0x00, 0x00, 0x00,                          // maxTasks
            0x03, 0x00, 0x00, 0x00,                          // maxOpenFiles
            0x01,                                            // allowNetwork
            0x01, 0x00, 0x00, 0x00, 0x73,                    // "s"
            0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x72,  // ["r"]
            0x00, 0x00, 0x00, 0x00,                          // []
            0x00, 0x00, 0x00, 0x00,                          // ""
            0x00, 0x00, 0x00, 0x00,                          // supplementaryGroups []
        ]
        #expect(profile.encoded() == expected)
    }

    @Test func strictDecoding() throws {
        let good = SandboxProfile(stateDirectory: "/s").encoded()
        #expect(throws: SandboxProfileDecodingError.self) { try SandboxProfile(decoding: Array(good.dropLast())) }
        #expect(throws: SandboxProfileDecodingError.self) { try SandboxProfile(decoding: good + [0]) }
        var undefinedBit = good
        undefinedBit[1] |= 0x04   // bit 10
        #expect(throws: SandboxProfileDecodingError.self) { try SandboxProfile(decoding: undefinedBit) }
        var badBool = good
        badBool[28] = 2
        #expect(throws: SandboxProfileDecodingError.self) { try SandboxProfile(decoding: badBool) }
        var nul = good
        nul[nul.count - 4 - 4 - 4 - 4 - 1] = 0   // the last byte of "/s"
        #expect(throws: SandboxProfileDecodingError.self) { try SandboxProfile(decoding: nul) }
        var hugeList = good
        hugeList.replaceSubrange((good.count - 16)..<(good.count - 12), with: [0xFF, 0xFF, 0xFF, 0x7F])
        #expect(throws: SandboxProfileDecodingError.self) { try SandboxProfile(decoding: hugeList) }
        // supplementaryGroups: a count the remaining bytes cannot hold, and a partial group.
        var hugeGroups = good
        hugeGroups.replaceSubrange((good.count - 4)..<good.count, with: [0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00])
        #expect(throws: SandboxProfileDecodingError.self) { try SandboxProfile(decoding: hugeGroups) }
        let withGroups = SandboxProfile(runAsUID: 65534, runAsGID: 65534, supplementaryGroups: [65534, 27]).encoded()
        #expect(try SandboxProfile(decoding: withGroups).supplementaryGroups == [65534, 27])
        #expect(throws: SandboxProfileDecodingError.self) { try SandboxProfile(decoding: Array(withGroups.dropLast(2))) }
    }

    @Test func denyListNamesTheDangerousCalls() {
        let denied = Set(Sandbox.deniedSystemCalls)
        for name in ["ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "bpf", "perf_event_open",
                     "kexec_load", "init_module", "finit_module", "delete_module", "keyctl", "add_key", "request_key",
                     "unshare", "setns", "personality", "userfaultfd", "io_uring_setup", "open_by_handle_at"] {
            #expect(denied.contains(name), "\(name) is not denied")
        }
        #expect(!denied.contains("read") && !denied.contains("clone"))
    }
}
