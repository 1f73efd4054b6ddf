/// Frame flags (PROTOCOL.md §2).
public struct FrameFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// This frame ends its operation.
    public static let final = FrameFlags(rawValue: 1)
}

/// Protocol constants.
public enum ProtocolLimits {
    /// The only protocol version this implementation speaks.
    public static let version: UInt16 = 1
    /// Size of the fixed frame header, length prefix included.
    public static let headerSize = 16
    /// The default maximum frame size: WinRM's `MaxEnvelopeSizekb` default of 500.
    public static let defaultMaxFrameSize = 512_000
    /// The maximum frame size before the handshake completes.
    public static let handshakeMaxFrameSize = 4096
    /// Seconds a connection may stay in the middle of a frame.
    public static let partialFrameTimeoutSeconds = 10
}

/// One frame: an operation id, flags and a message.
public struct Frame: Sendable, Equatable {
    public var operationID: UInt64
    public var flags: FrameFlags
    public var message: Message

    public init(operationID: UInt64, flags: FrameFlags = [], message: Message) {
        self.operationID = operationID
        self.flags = flags
        self.message = message
    }

    /// Appends the whole frame, length prefix included, to `bytes`.
    public func encode(into bytes: inout [UInt8]) {
        var w = ByteWriter(appendingTo: bytes)
        bytes = []
        let start = w.bytes.count
        w.u32(0)
        w.u16(message.type.rawValue)
        w.u16(flags.rawValue)
        w.u64(operationID)
        message.encodePayload(to: &w)
        w.patchU32(at: start, UInt32(w.bytes.count - start - 4))
        bytes = w.bytes
    }

    /// The encoded frame.
    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(256)  // most frames fit: no reallocation while encoding
        encode(into: &bytes)
        return bytes
    }

    /// Decodes exactly one frame occupying `bytes[range]` (one SEQPACKET packet, or a
    /// frame the ``FrameDecoder`` cut out of a stream).
    public static func decode(_ bytes: [UInt8], range: Range<Int>? = nil, maxFrameSize: Int) throws(ProtocolError) -> Frame {
        let range = range ?? bytes.indices
        if range.count < ProtocolLimits.headerSize {
            throw ProtocolError.malformed("a frame needs at least \(ProtocolLimits.headerSize) bytes, got \(range.count)")
        }
        var r = ByteReader(bytes, range: range)
        let length = Int(try r.u32("length"))
        if length < 12 {
            throw ProtocolError.malformed("length \(length) is below the minimum of 12")
        }
        if length + 4 > maxFrameSize {
            throw ProtocolError.oversized(length + 4, limit: maxFrameSize)
        }
        if length + 4 != range.count {
            throw ProtocolError.malformed("length prefix says \(length + 4) bytes but the frame has \(range.count)")
        }
        let rawType = try r.u16("type")
        guard let type = MessageType(rawValue: rawType) else {
            throw ProtocolError.malformed("unknown message type 0x\(String(rawType, radix: 16, uppercase: true))")
        }
        let rawFlags = try r.u16("flags")
        if rawFlags & ~FrameFlags.final.rawValue != 0 {
            throw ProtocolError.malformed("undefined flag bits 0x\(String(rawFlags, radix: 16)) in \(type.wireName)")
        }
        let operationID = try r.u64("operationID")
        let message = try Message.decode(type: type, from: &r)
        return Frame(operationID: operationID, flags: FrameFlags(rawValue: rawFlags), message: message)
    }
}

/// Cuts frames out of a byte stream, never buffering more than one maximum-size frame
/// beyond what it has already handed out.
public struct FrameDecoder: Sendable {
    /// The largest frame accepted, length prefix included.
    public var maxFrameSize: Int
    private var buffer: [UInt8] = []
    private var readIndex = 0

    public init(maxFrameSize: Int) {
        self.maxFrameSize = maxFrameSize
    }

    /// True while part of a frame has arrived but not all of it.
    public var isMidFrame: Bool { readIndex < buffer.count }

    /// Bytes received and not yet decoded.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// How many bytes the caller may read next without exceeding one frame's worth of
    /// buffering (at least 1).
    public var readCapacity: Int {
        let pending = bufferedByteCount
        if pending >= 4 {
            let length = Int(peekLength())
            return max(1, min(length + 4, maxFrameSize) - pending + 65_536)
        }
        return 65_536
    }

    /// Appends received bytes.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        compactIfNeeded()
        buffer.append(contentsOf: bytes)
    }

    /// Appends received bytes.
    public mutating func append(_ bytes: [UInt8]) {
        compactIfNeeded()
        buffer.append(contentsOf: bytes)
    }

    private mutating func compactIfNeeded() {
        if readIndex > 0 && (readIndex == buffer.count || readIndex > 65_536) {
            buffer.removeSubrange(0..<readIndex)
            readIndex = 0
        }
    }

    private func peekLength() -> UInt32 {
        UInt32(buffer[readIndex]) | UInt32(buffer[readIndex + 1]) << 8
            | UInt32(buffer[readIndex + 2]) << 16 | UInt32(buffer[readIndex + 3]) << 24
    }

    /// The next complete frame, or nil when more bytes are needed. Throws as soon as a
    /// length prefix is out of bounds, before the body arrives.
    public mutating func next() throws(ProtocolError) -> Frame? {
        guard bufferedByteCount >= 4 else { return nil }
        let length = Int(peekLength())
        if length < 12 {
            throw ProtocolError.malformed("length \(length) is below the minimum of 12")
        }
        if length + 4 > maxFrameSize {
            throw ProtocolError.oversized(length + 4, limit: maxFrameSize)
        }
        guard bufferedByteCount >= length + 4 else { return nil }
        let range = readIndex..<(readIndex + length + 4)
        readIndex += length + 4
        let frame = try Frame.decode(buffer, range: range, maxFrameSize: maxFrameSize)
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 262_144)
            readIndex = 0
        }
        return frame
    }
}
