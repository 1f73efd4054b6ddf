/// The arithmetic of a result ring (PROTOCOL.md §5.6), the same on both sides: where the
/// server may place the next result, and whether a `RECEIVE_RESULT_IN_RING` the client
/// got keeps the rules. Pure bookkeeping; the memory is the caller's.
public struct ResultRingCursor: Sendable, Equatable {
    /// The ring's size in bytes.
    public let size: Int
    /// The end of the last result placed (server) or accepted (client): the next
    /// result's position is at least this.
    public private(set) var end: UInt64 = 0
    /// Every position before this may be written again (the last `RELEASE_RESULT_RING`).
    public private(set) var released: UInt64 = 0

    /// The smallest ring the protocol allows, and the granularity of every ring's size.
    public static let minimumSize = 65_536
    public static let sizeGranularity = 4096

    public init(size: Int) {
        precondition(size >= Self.minimumSize && size % Self.sizeGranularity == 0, "a result ring's size must be a multiple of 4096 of at least 64 KiB")
        self.size = size
    }

    /// Bytes placed but not released.
    public var inUse: Int { Int(end &- released) }

    /// Server side: the position for `count` bytes (contiguous in the file; the rest of
    /// the ring is skipped when they would cross its end), or nil when the ring has no room
    /// for them until more is released. Placing moves ``end``.
    public mutating func place(_ count: Int) -> UInt64? {
        guard let position = position(for: count) else { return nil }
        end = position + UInt64(count)
        return position
    }

    /// Server side: whether ``place(_:)`` would find room for `count` bytes now.
    public func hasRoom(for count: Int) -> Bool {
        position(for: count) != nil
    }

    /// Where `count` bytes would go, or nil when they do not fit until more is released.
    private func position(for count: Int) -> UInt64? {
        guard count > 0, count <= size else { return nil }
        let offset = Int(end % UInt64(size))
        let position = offset + count <= size ? end : end + UInt64(size - offset)
        guard position + UInt64(count) <= released + UInt64(size) else { return nil }
        return position
    }

    /// Server side: applies a `RELEASE_RESULT_RING`. Throws when `position` goes back or
    /// passes the end of what was placed.
    public mutating func release(to position: UInt64) throws(ProtocolError) {
        guard position >= released, position <= end else {
            throw .malformed("RELEASE_RESULT_RING position \(position) is outside \(released)...\(end): it must not go back nor pass the end of the last result placed in the ring")
        }
        released = position
    }

    /// Client side: checks a `RECEIVE_RESULT_IN_RING` of `length` bytes at `position`
    /// against rules 1–3 of PROTOCOL.md §5.6 and accepts it (moving ``end``). Returns the
    /// bytes' offset in the file.
    public mutating func accept(position: UInt64, length: UInt32) throws(ProtocolError) -> Int {
        let count = UInt64(length)
        guard position >= end else {
            throw .malformed("RECEIVE_RESULT_IN_RING position \(position) is before the end (\(end)) of the previous result in the ring")
        }
        let offset = Int(position % UInt64(size))
        guard UInt64(offset) + count <= UInt64(size) else {
            throw .malformed("RECEIVE_RESULT_IN_RING of \(length) bytes at offset \(offset) crosses the end of a \(size)-byte ring")
        }
        let (last, overflow) = position.addingReportingOverflow(count)
        guard !overflow, last <= released + UInt64(size) else {
            throw .malformed("RECEIVE_RESULT_IN_RING of \(length) bytes at position \(position) overwrites bytes not released yet (released up to \(released), ring of \(size) bytes)")
        }
        end = last
        return offset
    }

    /// Client side: notes that everything accepted so far is read, and returns the
    /// position to release when at least `batch` bytes wait for a release (nil otherwise).
    public mutating func releaseRead(batch: Int) -> UInt64? {
        guard end &- released >= UInt64(max(batch, 1)) else { return nil }
        released = end
        return end
    }
}
