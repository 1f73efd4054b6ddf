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

    /// Creates a memory file of `size` bytes (`memfd_create(name, MFD_CLOEXEC)`, then
    /// `ftruncate`; its pages are zero and allocated when first touched) and maps it.
    /// Returns the mapping and the descriptor (close-on-exec) to hand to another process.
    public static func create(name: String, size: Int) throws(SystemCallError) -> (SharedMemory, FileDescriptor) {
        let fd = FileDescriptor(rawValue: try retryingInterrupts("memfd_create(\(name))", airlock_memfd_create(name)))
        do throws(SystemCallError) {
            _ = try retryingInterrupts("ftruncate(memfd \(name), \(size))", ftruncate(fd.rawValue, off_t(size)))
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
        var status = stat()
        _ = try retryingInterrupts("fstat(\(fd.rawValue))", fstat(fd.rawValue, &status))
        guard size > 0, Int(status.st_size) >= size else {
            throw SystemCallError(call: "mmap(\(fd.rawValue)): the file has \(status.st_size) bytes, not \(size)", errno: .invalidArgument)
        }
        guard let base = airlock_map_shared(fd.rawValue, size) else {
            throw SystemCallError(call: "mmap(\(fd.rawValue), \(size) bytes, MAP_SHARED)")
        }
        return SharedMemory(base: base, size: size)
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
