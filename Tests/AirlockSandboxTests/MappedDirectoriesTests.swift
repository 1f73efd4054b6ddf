import AirlockPosix
import AirlockSandbox
import Testing

/// The folders Landlock gives out because libraries are mapped from them: shared memory
/// (the worker channel's rings) must never make the whole file system readable.
@Suite struct MappedDirectoriesTests {
    @Test func sharedMemoryAndDeletedFilesGiveOutNoFolder() {
        let maps = """
            55d0c0000000-55d0c0001000 r--p 00000000 fd:01 123 /usr/libexec/airlock/airlock-worker
            7f0000000000-7f0000200000 rw-s 00000000 00:01 9 /memfd:airlock-channel (deleted)
            7f0000200000-7f0000201000 rw-s 00000000 00:01 10 /SYSV00000000 (deleted)
            7f0000300000-7f0000301000 r--p 00000000 fd:01 11 /var/tmp/secret/old.so (deleted)
            7f0000400000-7f0000401000 r-xp 00000000 fd:01 12 /usr/lib/swift/linux/libswiftCore.so
            7f0000500000-7f0000501000 r-xp 00000000 fd:01 12 /usr/lib/swift/linux/libswiftCore.so
            7f0000600000-7f0000601000 rw-p 00000000 00:00 0 [heap]
            7ffd00000000-7ffd00001000 r--p 00000000 00:00 0 [vvar]

            """
        #expect(Paths.mappedLibraryDirectories(in: Array(maps.utf8)) == ["/usr/libexec/airlock", "/usr/lib/swift/linux"])
    }

    @Test func aMappedMemoryFileOfThisProcessIsNotAFolder() throws {
        let (memory, fd) = try SharedMemory.create(name: "airlock-channel", size: 1 << 16)
        defer { try? Posix.close(fd) }
        memory.base.storeBytes(of: 1, as: UInt8.self)
        let directories = Paths.mappedLibraryDirectories()
        #expect(!directories.isEmpty)
        #expect(!directories.contains("/"), "\(directories)")
        #expect(directories.allSatisfy { $0.hasPrefix("/") && !$0.contains("memfd") }, "\(directories)")
    }
}
