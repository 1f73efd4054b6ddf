import CAirlockShims
import Glibc
import SystemPackage

/// Buffers for receiving several `SOCK_SEQPACKET` (or datagram) packets with one system
/// call (``Posix/receivePackets(_:into:flags:)``, `recvmmsg`).
///
/// One receive returns as many packets as are queued, up to ``slots``; receiving fewer
/// than ``slots`` means the queue was empty at that moment, so a reader on a
/// level-triggered descriptor needs no extra receive that fails with `EAGAIN`.
///
/// The buffers are one anonymous allocation of `slots × capacity` bytes; pages are only
/// backed by memory once a packet that large has used them.
public final class PacketBatch {
    /// The most slots a batch may have.
    public static let maximumSlots = Int(AIRLOCK_RECEIVE_PACKETS_MAX)

    /// Packets one receive may return.
    public let slots: Int
    /// Bytes per packet buffer; a larger packet is reported as truncated.
    public let capacity: Int
    /// Packets the last receive returned.
    public private(set) var count = 0

    private let storage: UnsafeMutableRawPointer
    private let buffers: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    private let sizes: UnsafeMutablePointer<Int>
    private let truncated: UnsafeMutablePointer<Int32>

    /// `slots` buffers (1 to ``maximumSlots``) of `capacity` bytes each.
    public init(slots: Int, capacity: Int) {
        precondition(slots >= 1 && slots <= Self.maximumSlots && capacity > 0)
        self.slots = slots
        self.capacity = capacity
        storage = .allocate(byteCount: slots * capacity, alignment: 16)
        buffers = .allocate(capacity: slots)
        sizes = .allocate(capacity: slots)
        truncated = .allocate(capacity: slots)
        for slot in 0..<slots { buffers[slot] = storage + slot * capacity }
    }

    deinit {
        storage.deallocate()
        buffers.deallocate()
        sizes.deallocate()
        truncated.deallocate()
    }

    /// What the `index`th packet of the last receive was.
    public func result(_ index: Int) -> Posix.PacketResult {
        precondition(index >= 0 && index < count)
        let size = sizes[index]
        if truncated[index] != 0 { return .truncated(received: Swift.min(size, capacity), size: size) }
        return size == 0 ? .endOfFile : .packet(size)
    }

    /// The bytes of the `index`th packet of the last receive (valid until the next receive).
    public func bytes(_ index: Int) -> UnsafeRawBufferPointer {
        precondition(index >= 0 && index < count)
        return UnsafeRawBufferPointer(start: buffers[index], count: Swift.min(sizes[index], capacity))
    }

    fileprivate func receive(_ fd: FileDescriptor, flags: Int32) -> Int32 {
        let received = airlock_receive_packets(fd.rawValue, buffers, capacity, UInt32(slots), sizes, truncated, flags)
        count = received > 0 ? Int(received) : 0
        return received
    }
}

extension Posix {
    /// `recvmmsg`: receives up to `batch.slots` packets into `batch` with one system call.
    /// Returns how many arrived (read each with ``PacketBatch/result(_:)`` and
    /// ``PacketBatch/bytes(_:)``), or `nil` when the descriptor is non-blocking and nothing
    /// is queued. A zero-size packet is end of file on `SOCK_SEQPACKET`.
    public static func receivePackets(_ fd: FileDescriptor, into batch: PacketBatch, flags: MessageFlags = []) throws(SystemCallError) -> Int? {
        guard let received = try retryingInterruptsUnlessWouldBlock("recvmmsg", batch.receive(fd, flags: flags.rawValue)) else { return nil }
        return Int(received)
    }
}
