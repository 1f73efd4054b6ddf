import CAirlockShims

/// glibc malloc's policy for the calling process: a decision for the program, never for a
/// library (it applies to every allocation in the process).
public enum MallocPolicy {
    /// Freed memory kept mapped by ``keepFreedMemory(trimThreshold:mmapThreshold:)`` unless
    /// told otherwise.
    public static let defaultTrimThreshold: Int32 = 8 << 20
    /// Allocations from this size on are mapped on their own, unless told otherwise.
    public static let defaultMmapThreshold: Int32 = 4 << 20

    /// Keeps up to `trimThreshold` bytes of freed memory at the top of each heap mapped
    /// for reuse, instead of glibc's 128 KiB (beyond which it gives the memory back and
    /// the next allocations fault it in again page by page), and maps allocations of
    /// `mmapThreshold` bytes or more on their own. For a program that allocates and frees
    /// buffers of tens or hundreds of KiB on a hot path. Returns false when glibc refused.
    @discardableResult
    public static func keepFreedMemory(
        trimThreshold: Int32 = defaultTrimThreshold, mmapThreshold: Int32 = defaultMmapThreshold
    ) -> Bool {
        airlock_set_malloc_thresholds(trimThreshold, mmapThreshold) != 0
    }
}
