import AirlockPosix
import Glibc

/// The shared memory of one supervisor–worker channel: two ``FrameRing``s, one each way.
///
/// The supervisor creates it (``create(toWorker:toSupervisor:)``) and gives the worker the
/// memory file as descriptor 4, next to the channel socket (3) and the doorbell eventfd
/// (5); the worker maps it with ``attach(_:)``. Layout (PROTOCOL.md §5.5), all integers
/// little-endian:
///
/// | offset | size | content |
/// |---|---|---|
/// | 0 | 4 | magic `0x4B4C5241` ("ARLK") |
/// | 4 | 4 | layout version, 1 |
/// | 8 | 4 | capacity of the ring to the worker (a power of two) |
/// | 12 | 4 | capacity of the ring to the supervisor (a power of two) |
/// | 64 + 64·k | 4 | control words, each on its own 64-byte line: to the worker `tail`, `head`, `consumersWaiting`, `producerWaiting` (k = 0…3), then the same to the supervisor (k = 4…7) |
/// | 4096 | capacity | the data of the ring to the worker |
/// | 4096 + its capacity | capacity | the data of the ring to the supervisor |
public final class ChannelRegion: @unchecked Sendable {
    /// "ARLK".
    public static let magic: UInt32 = 0x4B4C_5241
    /// The layout version this build writes and reads.
    public static let version: UInt32 = 1
    /// Bytes before the first ring's data.
    public static let headerSize = 4096
    /// The smallest and largest ring capacity a region may declare.
    public static let capacityRange = (64 << 10)...(1 << 30)

    /// The mapping.
    public let memory: SharedMemory
    /// Requests to the worker (the supervisor produces).
    public let toWorker: FrameRing
    /// Frames to the supervisor (the worker produces).
    public let toSupervisor: FrameRing

    private init(memory: SharedMemory, toWorkerCapacity: Int, toSupervisorCapacity: Int) {
        self.memory = memory
        let base = memory.base
        func word(_ index: Int) -> UnsafeMutablePointer<UInt32> {
            (base + 64 + 64 * index).assumingMemoryBound(to: UInt32.self)
        }
        toWorker = FrameRing(
            data: base + Self.headerSize, capacity: toWorkerCapacity,
            tail: word(0), head: word(1), consumersWaiting: word(2), producerWaiting: word(3))
        toSupervisor = FrameRing(
            data: base + Self.headerSize + toWorkerCapacity, capacity: toSupervisorCapacity,
            tail: word(4), head: word(5), consumersWaiting: word(6), producerWaiting: word(7))
    }

    /// The capacity for rings that must carry records of up to `largestRecord` bytes: a
    /// power of two of at least 1 MiB and at least four such records.
    public static func capacity(forRecordsUpTo largestRecord: Int) -> Int {
        let wanted = max(1 << 20, 4 * FrameRing.footprint(ofRecord: largestRecord))
        return min(1 << 30, 1 << (Int.bitWidth - (wanted - 1).leadingZeroBitCount))
    }

    /// Creates a zeroed region with the given capacities (powers of two within
    /// ``capacityRange``). Returns it and the memory file's descriptor (close-on-exec; the
    /// spawn hands it to the worker as descriptor 4).
    public static func create(toWorker: Int, toSupervisor: Int) throws(SystemCallError) -> (ChannelRegion, FileDescriptor) {
        precondition(isValidCapacity(toWorker) && isValidCapacity(toSupervisor), "ring capacities must be powers of two within \(capacityRange)")
        let (memory, fd) = try SharedMemory.create(name: "airlock-channel", size: headerSize + toWorker + toSupervisor)
        let base = memory.base
        base.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        base.storeBytes(of: version.littleEndian, toByteOffset: 4, as: UInt32.self)
        base.storeBytes(of: UInt32(toWorker).littleEndian, toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: UInt32(toSupervisor).littleEndian, toByteOffset: 12, as: UInt32.self)
        return (ChannelRegion(memory: memory, toWorkerCapacity: toWorker, toSupervisorCapacity: toSupervisor), fd)
    }

    /// Maps the region in the memory file `fd` (which the caller may close afterwards),
    /// checking its header; the error says what is wrong.
    public static func attach(_ fd: FileDescriptor) throws(ChannelRegionError) -> ChannelRegion {
        let header: SharedMemory
        do {
            header = try SharedMemory.map(fd, size: headerSize)
        } catch {
            throw ChannelRegionError("cannot map its header: \(error)")
        }
        let base = header.base
        let magic = UInt32(littleEndian: base.load(fromByteOffset: 0, as: UInt32.self))
        let version = UInt32(littleEndian: base.load(fromByteOffset: 4, as: UInt32.self))
        let toWorker = Int(UInt32(littleEndian: base.load(fromByteOffset: 8, as: UInt32.self)))
        let toSupervisor = Int(UInt32(littleEndian: base.load(fromByteOffset: 12, as: UInt32.self)))
        guard magic == Self.magic else {
            throw ChannelRegionError("its magic number is 0x\(String(magic, radix: 16)), not 0x\(String(Self.magic, radix: 16))")
        }
        guard version == Self.version else {
            throw ChannelRegionError("its layout version is \(version); this airlock-worker reads version \(Self.version) (the supervisor and the worker come from different builds)")
        }
        guard isValidCapacity(toWorker), isValidCapacity(toSupervisor) else {
            throw ChannelRegionError("its ring capacities (\(toWorker), \(toSupervisor) bytes) are not powers of two within \(capacityRange)")
        }
        do {
            let memory = try SharedMemory.map(fd, size: headerSize + toWorker + toSupervisor)
            return ChannelRegion(memory: memory, toWorkerCapacity: toWorker, toSupervisorCapacity: toSupervisor)
        } catch {
            throw ChannelRegionError("cannot map its rings: \(error)")
        }
    }

    private static func isValidCapacity(_ capacity: Int) -> Bool {
        capacityRange.contains(capacity) && capacity & (capacity - 1) == 0
    }
}

/// Why a memory file is not a usable ``ChannelRegion``.
public struct ChannelRegionError: Error, Sendable, CustomStringConvertible {
    /// What is wrong.
    public let message: String

    init(_ message: String) {
        self.message = message
    }

    public var description: String { "the channel's shared memory is unusable: \(message)" }
}
