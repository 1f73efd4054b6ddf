import CAirlockShims
import Glibc

/// A mapping of shared memory (`MAP_SHARED`, read and write), unmapped on deinitialization.
///
/// Made from a new anonymous memory file (``create(name:size:)``, whose descriptor goes to
/// another process) or from such a descriptor received from one (``map(_:size:)``). Both
/// processes then see the same pages; what one stores, the other loads.
public final class SharedMemory: @unchecked Sendable {
    /// The first byte of the mapping (page-aligned).
    public let base: UnsafeMutableRawPointer
    /// The mapping's size in bytes.
    public let size: Int

    private init(base: UnsafeMutableRawPointer, size: Int) {
        self.base = base
        self.size = size
    }

    deinit {
        munmap(base, size)
    }

    /// Creates a memory file of `size` bytes (``MemoryFile/create(name:size:)``: its pages
    /// are zero and allocated when first touched) and maps it. Returns the mapping and the
    /// descriptor (close-on-exec) to hand to another process.
    ///
    /// The file's size is sealed (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`): no process
    /// holding the descriptor can shrink it under the mapping, which would make the next
    /// access to the lost pages raise `SIGBUS` in every process that maps them.
    public static func create(name: String, size: Int) throws(SystemCallError) -> (SharedMemory, FileDescriptor) {
        let fd = try MemoryFile.create(name: name, size: size)
        do throws(SystemCallError) {
            return (try map(fd, size: size), fd)
        } catch {
            _ = Glibc.close(fd.rawValue)
            throw error
        }
    }

    /// Maps `size` bytes of the memory file `fd` (which stays open: close it when done).
    /// Fails with `EINVAL` when the file is smaller than `size`, so a bad descriptor cannot
    /// give a mapping whose end raises `SIGBUS`.
    public static func map(_ fd: FileDescriptor, size: Int) throws(SystemCallError) -> SharedMemory {
        try map(fd, size: size, readOnly: false)
    }

    /// Maps `size` bytes of the memory file `fd` for reading only (`PROT_READ`): the
    /// process cannot store into ``base``. Checks the file's size as ``map(_:size:)`` does.
    public static func mapReadOnly(_ fd: FileDescriptor, size: Int) throws(SystemCallError) -> SharedMemory {
        try map(fd, size: size, readOnly: true)
    }

    private static func map(_ fd: FileDescriptor, size: Int, readOnly: Bool) throws(SystemCallError) -> SharedMemory {
        let fileSize = try MemoryFile.size(fd)
        guard size > 0, fileSize >= size else {
            throw SystemCallError(call: "mmap(\(fd.rawValue)): the file has \(fileSize) bytes, not \(size)", errno: .invalidArgument)
        }
        guard let base = readOnly ? airlock_map_shared_read_only(fd.rawValue, size) : airlock_map_shared(fd.rawValue, size) else {
            throw SystemCallError(call: "mmap(\(fd.rawValue), \(size) bytes, \(readOnly ? "PROT_READ" : "PROT_READ | PROT_WRITE"), MAP_SHARED)")
        }
        return SharedMemory(base: base, size: size)
    }
}

/// What another process's memory file is, checked before this process maps it and
/// writes into it.
public enum MemoryFile {
    /// The seals of a memory file (`F_GET_SEALS`).
    public struct Seals: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// No more seals may be added.
        public static let seal = Seals(rawValue: AIRLOCK_SEAL_SEAL)
        /// The file cannot shrink.
        public static let shrink = Seals(rawValue: AIRLOCK_SEAL_SHRINK)
        /// The file cannot grow.
        public static let grow = Seals(rawValue: AIRLOCK_SEAL_GROW)
        /// The file's contents cannot change.
        public static let write = Seals(rawValue: AIRLOCK_SEAL_WRITE)
    }

    /// Creates a memory file of `size` bytes (`memfd_create(name, MFD_CLOEXEC |
    /// MFD_ALLOW_SEALING)`, then `ftruncate`; its pages are zero and allocated when first
    /// touched) with its size sealed (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`).
    /// Returns its descriptor (close-on-exec), unmapped.
    public static func create(name: String, size: Int) throws(SystemCallError) -> FileDescriptor {
        let fd = FileDescriptor(rawValue: try retryingInterrupts("memfd_create(\(name))", airlock_memfd_create(name)))
        do throws(SystemCallError) {
            _ = try retryingInterrupts("ftruncate(memfd \(name), \(size))", ftruncate(fd.rawValue, off_t(size)))
            try addSeals(fd, [.shrink, .grow, .seal])
            return fd
        } catch {
            _ = Glibc.close(fd.rawValue)
            throw error
        }
    }

    /// Seals `fd` (`F_ADD_SEALS`).
    public static func addSeals(_ fd: FileDescriptor, _ seals: Seals) throws(SystemCallError) {
        _ = try retryingInterrupts("fcntl(\(fd.rawValue), F_ADD_SEALS)", airlock_add_seals(fd.rawValue, seals.rawValue))
    }

    /// The seals of `fd`; fails with `EINVAL` when `fd` is not a memory file.
    public static func seals(_ fd: FileDescriptor) throws(SystemCallError) -> Seals {
        Seals(rawValue: UInt32(truncatingIfNeeded: try retryingInterrupts("fcntl(\(fd.rawValue), F_GET_SEALS)", airlock_get_seals(fd.rawValue))))
    }

    /// Whether `fd` is a regular file on tmpfs, where `memfd_create` puts its files (not a
    /// huge-page memory file, whose pages may fail to come when first touched, nor a file
    /// on a disk or a network).
    public static func isOnTmpfs(_ fd: FileDescriptor) throws(SystemCallError) -> Bool {
        var status = stat()
        _ = try retryingInterrupts("fstat(\(fd.rawValue))", fstat(fd.rawValue, &status))
        guard status.st_mode & S_IFMT == S_IFREG else { return false }
        return try retryingInterrupts("fstatfs(\(fd.rawValue))", airlock_filesystem_type(fd.rawValue)) == AIRLOCK_TMPFS_MAGIC
    }

    /// The size of the file `fd` (`fstat`).
    public static func size(_ fd: FileDescriptor) throws(SystemCallError) -> Int {
        var status = stat()
        _ = try retryingInterrupts("fstat(\(fd.rawValue))", fstat(fd.rawValue, &status))
        return Int(status.st_size)
    }

    /// Frees the pages of `length` bytes at `offset` (`fallocate` with
    /// `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`); they read as zeros afterwards, in every
    /// process that maps them.
    public static func punchHole(_ fd: FileDescriptor, offset: Int, length: Int) throws(SystemCallError) {
        _ = try retryingInterrupts("fallocate(\(fd.rawValue), PUNCH_HOLE)", airlock_punch_hole(fd.rawValue, Int64(offset), Int64(length)))
    }
}

/// Futexes on 32-bit words, which may lie in memory shared between processes.
public enum Futex {
    /// Sleeps while `*word == expected`: returns when woken, at once when the word already
    /// differs, and on a signal (the caller re-checks its condition in every case).
    public static func wait(_ word: UnsafeMutablePointer<UInt32>, whileEqualTo expected: UInt32) {
        // EAGAIN (changed already), EINTR and a wake-up all mean: check again. Other errors
        // (EFAULT, EINVAL) cannot happen on a mapped, aligned word.
        _ = airlock_futex_wait(word, expected)
    }

    /// Wakes up to `count` threads sleeping on `word`, in any process.
    public static func wake(_ word: UnsafeMutablePointer<UInt32>, count: Int32 = 1) {
        _ = airlock_futex_wake(word, count)
    }
}
