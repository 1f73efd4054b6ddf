import AirlockPosix
import CAirlockShims
import Glibc

/// What is wrong with a ring: its indices or a record are not what the producer may write.
///
/// The supervisor treats a worker's ring as untrusted input (the plug-in shares the
/// worker's memory and may scribble on it): every value it reads from the ring is checked,
/// and a bad one ends that worker with this message, never the supervisor.
public struct RingError: Error, Sendable, CustomStringConvertible {
    /// What was wrong, in a sentence.
    public let message: String

    init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// One direction of a ``ChannelRegion``: a single-producer ring of length-prefixed records
/// in shared memory, with the words the two sides use to wake each other.
///
/// A record is a 4-byte little-endian length, 4 zero bytes and the bytes, padded to a
/// multiple of 8; it may wrap around the end of the data area. `tail` (written by the
/// producer) and `head` (written by the consumer) count bytes modulo 2^32; the capacity is
/// a power of two, so `position & (capacity - 1)` is the offset.
///
/// Each side keeps its own position privately and only publishes it: a value the other
/// side overwrites cannot move it. What it loads from the other side is checked before use.
public struct FrameRing: @unchecked Sendable {
    /// The data area.
    let data: UnsafeMutableRawPointer
    /// Bytes in the data area (a power of two).
    public let capacity: Int
    /// End of the published records (written by the producer).
    let tail: UnsafeMutablePointer<UInt32>
    /// End of the consumed records (written by the consumer).
    let head: UnsafeMutablePointer<UInt32>
    /// How many consumer threads sleep on `tail` (a futex), so the producer knows to wake one.
    let consumersWaiting: UnsafeMutablePointer<UInt32>
    /// Nonzero while the producer waits for space, so the consumer knows to wake it.
    let producerWaiting: UnsafeMutablePointer<UInt32>

    /// Bytes a record of `count` bytes takes in the ring.
    @inline(__always)
    public static func footprint(ofRecord count: Int) -> Int {
        (8 + count + 7) & ~7
    }

    @inline(__always)
    func copyIn(_ bytes: UnsafeRawBufferPointer, at position: UInt32) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        let offset = Int(position) & (capacity - 1)
        let first = min(bytes.count, capacity - offset)
        memcpy(data + offset, source, first)
        if first < bytes.count { memcpy(data, source + first, bytes.count - first) }
    }

    @inline(__always)
    func copyOut(_ count: Int, at position: UInt32, into destination: UnsafeMutableRawPointer) {
        let offset = Int(position) & (capacity - 1)
        let first = min(count, capacity - offset)
        memcpy(destination, data + offset, first)
        if first < count { memcpy(destination + first, data, count - first) }
    }

    /// Sleeps until the producer publishes past `tail`, which the caller saw as the end
    /// (returns at once if it already has). Any number of consumer threads may wait; each
    /// publication wakes one.
    public func waitForRecords(after tail: UInt32) {
        _ = airlock_add_u32(consumersWaiting, 1)
        if airlock_load_acquire_u32(self.tail) == tail {
            Futex.wait(self.tail, whileEqualTo: tail)
        }
        _ = airlock_subtract_u32(consumersWaiting, 1)
    }
}

/// The producing side of a ``FrameRing``: one writer at a time (the caller serializes).
public struct RingProducer: ~Copyable, @unchecked Sendable {
    /// The ring.
    public let ring: FrameRing
    /// Where the next record goes: kept here, published to `ring.tail`.
    private var tail: UInt32 = 0
    /// Where the last record written began.
    private var lastRecord: UInt32 = 0

    /// A producer at the start of a fresh ring.
    public init(_ ring: FrameRing) {
        self.ring = ring
    }

    /// Free bytes when the consumer's published head is `head`, or an error when that
    /// head is impossible.
    @inline(__always)
    private func freeBytes(head: UInt32) throws(RingError) -> Int {
        let used = tail &- head
        guard Int(used) <= ring.capacity else {
            throw RingError("the consumer's head is \(used) bytes behind the tail, more than the ring's \(ring.capacity) bytes")
        }
        return ring.capacity - Int(used)
    }

    /// The footprint of a record of `count` bytes; an error when it is larger than the
    /// whole ring (it could never be written).
    @inline(__always)
    private func footprint(ofRecord count: Int) throws(RingError) -> Int {
        let footprint = FrameRing.footprint(ofRecord: count)
        guard footprint <= ring.capacity else {
            throw RingError("a \(count)-byte record cannot fit the ring's \(ring.capacity) bytes")
        }
        return footprint
    }

    /// Appends one record and publishes it; false when the ring has no room for it now
    /// (nothing written). A record larger than the whole ring throws: it could never be
    /// written.
    @inline(__always)
    public mutating func write(_ bytes: UnsafeRawBufferPointer) throws(RingError) -> Bool {
        guard let footprint = try reserve(bytes.count) else { return false }
        ring.copyIn(bytes, at: tail &+ 8)
        publish(footprint)
        return true
    }

    /// ``write(_:)`` of one record made of three parts (a header, data, a tail), each
    /// copied once.
    public mutating func write(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, _ third: UnsafeRawBufferPointer) throws(RingError) -> Bool {
        guard let footprint = try reserve(first.count + second.count + third.count) else { return false }
        ring.copyIn(first, at: tail &+ 8)
        ring.copyIn(second, at: tail &+ 8 &+ UInt32(first.count))
        ring.copyIn(third, at: tail &+ 8 &+ UInt32(first.count + second.count))
        publish(footprint)
        return true
    }

    /// Writes the header of a record of `count` bytes at the tail and returns its
    /// footprint, or nil when it does not fit now.
    @inline(__always)
    private func reserve(_ count: Int) throws(RingError) -> Int? {
        let footprint = try footprint(ofRecord: count)
        guard try freeBytes(head: airlock_load_acquire_u32(ring.head)) >= footprint else { return nil }
        // The header never wraps: records start at multiples of 8 and the capacity is one.
        let offset = Int(tail) & (ring.capacity - 1)
        ring.data.storeBytes(of: UInt32(count).littleEndian, toByteOffset: offset, as: UInt32.self)
        ring.data.storeBytes(of: 0, toByteOffset: offset + 4, as: UInt32.self)
        return footprint
    }

    @inline(__always)
    private mutating func publish(_ footprint: Int) {
        lastRecord = tail
        tail &+= UInt32(footprint)
        airlock_store_release_u32(ring.tail, tail)
        // Orders the publication before the loads of the consumer's words that decide on a
        // wake-up (the consumer does the converse: stores, fence, loads).
        airlock_fence()
    }

    /// Whether a consumer thread sleeps on the ring (wake it with ``wakeConsumer()``).
    public var consumersAreWaiting: Bool {
        airlock_load_relaxed_u32(ring.consumersWaiting) != 0
    }

    /// Whether the consumer had read everything before the last record: it may be asleep
    /// (for a consumer that waits on something else, such as an eventfd in an epoll set).
    public var consumerHadCaughtUp: Bool {
        airlock_load_relaxed_u32(ring.head) == lastRecord
    }

    /// Wakes one consumer thread sleeping in ``FrameRing/waitForRecords(after:)``.
    public func wakeConsumer() {
        Futex.wake(ring.tail, count: 1)
    }

    /// Blocks until `bytes` more bytes of record fit (a record of `bytes` bytes), telling
    /// the consumer through `producerWaiting` to wake this thread when it frees space.
    public func waitForSpace(forRecord bytes: Int) throws(RingError) {
        let footprint = try footprint(ofRecord: bytes)
        defer { airlock_store_relaxed_u32(ring.producerWaiting, 0) }
        while try freeBytes(head: airlock_load_acquire_u32(ring.head)) < footprint {
            airlock_store_relaxed_u32(ring.producerWaiting, 1)
            airlock_fence()
            // Looked at again after the flag is visible, and slept on that same value: a
            // head published since either shows here or wakes the sleep.
            let head = airlock_load_acquire_u32(ring.head)
            if try freeBytes(head: head) >= footprint { return }
            Futex.wait(ring.head, whileEqualTo: head)
        }
    }

    /// Tells the consumer that this producer has records it could not write for lack of
    /// space, so it signals when it frees some (see ``RingConsumer/takeProducerWaiting()``).
    /// Check for space again after this: the consumer may have freed it just before.
    public func announceWaitingForSpace() {
        airlock_store_relaxed_u32(ring.producerWaiting, 1)
        airlock_fence()
    }

}

/// The consuming side of a ``FrameRing``: one reader at a time (the caller serializes).
public struct RingConsumer: ~Copyable, @unchecked Sendable {
    /// The ring.
    public let ring: FrameRing
    /// Where the next record begins: kept here, published to `ring.head`.
    private var head: UInt32 = 0

    /// A consumer at the start of a fresh ring.
    public init(_ ring: FrameRing) {
        self.ring = ring
    }

    /// What the last ``read(into:)`` found.
    public enum ReadResult: Sendable {
        /// A record of this many bytes, now at the start of the buffer.
        case record(Int)
        /// No record; `tail` is the end the producer had published (to wait beyond).
        case empty(tail: UInt32)
        /// A record of this many bytes, more than the buffer holds: skipped.
        case oversized(Int)
    }

    /// Copies the next record into `buffer` and moves past it (publish the move with
    /// ``publish()``). Everything read from the ring is checked first; the copy is what
    /// the caller reads, so a producer changing the ring meanwhile cannot change it.
    public mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(RingError) -> ReadResult {
        guard let (count, start) = try peek() else { return .empty(tail: head) }
        skip(recordOf: count)
        if count > buffer.count { return .oversized(count) }
        ring.copyOut(count, at: start, into: buffer.baseAddress!)
        return .record(count)
    }

    /// The next record, checked (every value read from the ring), but neither copied nor
    /// consumed: its byte count and where it begins, for ``copy(_:ofRecordAt:into:)``,
    /// ``contiguousBytes(_:ofRecordAt:)`` and ``skip(recordOf:)``. Nil when the ring is empty.
    public func peek() throws(RingError) -> (count: Int, start: UInt32)? {
        let tail = airlock_load_acquire_u32(ring.tail)
        let available = tail &- head
        if available == 0 { return nil }
        guard Int(available) <= ring.capacity, available >= 8 else {
            throw RingError("the producer's tail is \(available) bytes ahead of the head, not a whole record within the ring's \(ring.capacity) bytes")
        }
        let offset = Int(head) & (ring.capacity - 1)
        let count = Int(UInt32(littleEndian: airlock_load_relaxed_u32(ring.data.advanced(by: offset).assumingMemoryBound(to: UInt32.self))))
        guard FrameRing.footprint(ofRecord: count) <= Int(available) else {
            throw RingError("a record claims \(count) bytes but only \(Int(available) - 8) are published after its header")
        }
        return (count, head &+ 8)
    }

    /// Copies bytes `range` of the record whose bytes begin at `start` (from ``peek()``)
    /// to `destination + range.lowerBound`.
    public func copy(_ range: Range<Int>, ofRecordAt start: UInt32, into destination: UnsafeMutableRawPointer) {
        guard !range.isEmpty else { return }
        ring.copyOut(range.count, at: start &+ UInt32(range.lowerBound), into: destination + range.lowerBound)
    }

    /// The ring's own memory holding bytes `range` of the record whose bytes begin at
    /// `start`, when they do not wrap around its end (else nil). The producer may still
    /// write to it: use it only for bytes whose value does not matter to the reader.
    public func contiguousBytes(_ range: Range<Int>, ofRecordAt start: UInt32) -> UnsafeRawBufferPointer? {
        let offset = Int(start &+ UInt32(range.lowerBound)) & (ring.capacity - 1)
        guard offset + range.count <= ring.capacity else { return nil }
        return UnsafeRawBufferPointer(start: ring.data + offset, count: range.count)
    }

    /// Moves past the record ``peek()`` returned (publish the move with ``publish()``).
    public mutating func skip(recordOf count: Int) {
        head &+= UInt32(FrameRing.footprint(ofRecord: count))
    }

    /// Publishes what was read, so the producer may reuse the space.
    @inline(__always)
    public func publish() {
        airlock_store_release_u32(ring.head, head)
        airlock_fence()
    }

    /// Whether the producer published records beyond what was read.
    public var hasRecords: Bool {
        airlock_load_acquire_u32(ring.tail) != head
    }

    /// Whether the producer waits for space (it sleeps on the head: ``wakeProducer()``).
    public var producerIsWaiting: Bool {
        airlock_load_relaxed_u32(ring.producerWaiting) != 0
    }

    /// Clears and returns the producer's waiting flag (for a producer woken by a signal on
    /// a descriptor rather than on the head).
    public func takeProducerWaiting() -> Bool {
        airlock_load_relaxed_u32(ring.producerWaiting) != 0 && airlock_exchange_u32(ring.producerWaiting, 0) != 0
    }

    /// Wakes the producer sleeping in ``RingProducer/waitForSpace(forRecord:)``.
    public func wakeProducer() {
        Futex.wake(ring.head, count: 1)
    }
}
