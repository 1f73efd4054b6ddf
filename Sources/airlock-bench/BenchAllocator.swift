import CAirlockShims

/// The benchmark's own malloc policy, an application's decision that the report states.
///
/// The client library hands each result's data over as a `[UInt8]` of its own: for a
/// stream of 64 KiB results, one malloc per result, freed when the consumer lets go of it.
/// glibc gives memory at the top of a heap back to the kernel once more than its trim
/// threshold (128 KiB by default) is free there, and each page of the next arrays is then
/// faulted in again while the kernel copies the data into it: up to 16 page faults per
/// result, which cost this machine 10-15 % of the stream's throughput. An application
/// that streams raises the threshold (`mallopt(M_TRIM_THRESHOLD)`, or
/// `GLIBC_TUNABLES=glibc.malloc.trim_threshold=...`), as airlockd does for its own frames;
/// so does the benchmark, with airlockd's values, unless run with `--default-trim`. Only
/// this process is affected.
enum BenchAllocator {
    /// Freed memory up to this much stays mapped for reuse (airlockd's value).
    static let trimThreshold: Int32 = 8 << 20
    /// Allocations from this size on are mapped on their own (airlockd's value).
    static let mmapThreshold: Int32 = 4 << 20

    static func raiseTrimThreshold() {
        _ = airlock_set_malloc_thresholds(trimThreshold, mmapThreshold)
    }
}
